/*
 * The hub's program flash: parameters and credentials come from here and nowhere else.
 *
 * Layout (written by rig/sim/image.py, programmed at 0x1D000000, PIC32MZ program flash):
 *   "RIGHUB01" | u32 LE total length | entries | 0x00
 *   entry = u8 key length | key | u16 LE value length | value
 * The image's sha256 is that of the Intel HEX file it was shipped as. The HEX text is a canonical
 * rendering of these bytes (16-byte data records, one extended-linear-address record per 64 KB,
 * upper-case, "\n" line ends), so the hub re-renders it from flash and hashes it: the banner proves
 * which file is in the part without the file having to contain its own hash.
 */
#include "hub.h"

#include <mbedtls/sha256.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FLASH_BASE 0x1D000000u
#define MAGIC "RIGHUB01"

static unsigned char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 65536, n = 0;
    unsigned char *buf = malloc(cap);
    size_t r;
    while (buf && (r = fread(buf + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) {
            cap *= 2;
            unsigned char *grown = realloc(buf, cap);
            if (!grown) {
                free(buf);
                buf = NULL;
            }
            buf = grown;
        }
    }
    fclose(f);
    *len = n;
    return buf;
}

static void hex_line(mbedtls_sha256_context *sha, unsigned count, unsigned addr, unsigned type,
                     const unsigned char *data)
{
    char line[80];
    unsigned sum = count + (addr >> 8) + (addr & 0xff) + type;
    int pos = snprintf(line, sizeof line, ":%02X%04X%02X", count, addr & 0xffff, type);
    for (unsigned i = 0; i < count; i++) {
        pos += snprintf(line + pos, sizeof line - (size_t)pos, "%02X", data[i]);
        sum += data[i];
    }
    pos += snprintf(line + pos, sizeof line - (size_t)pos, "%02X\n", (unsigned)((0x100 - (sum & 0xff)) & 0xff));
    mbedtls_sha256_update_ret(sha, (const unsigned char *)line, (size_t)pos);
}

static void image_sha256(const unsigned char *data, size_t len, char out[65])
{
    mbedtls_sha256_context sha;
    unsigned char digest[32];
    mbedtls_sha256_init(&sha);
    mbedtls_sha256_starts_ret(&sha, 0);
    unsigned upper = 0xffffffffu;
    for (size_t off = 0; off < len; off += 16) {
        unsigned addr = FLASH_BASE + (unsigned)off;
        if ((addr >> 16) != upper) {
            upper = addr >> 16;
            unsigned char ela[2] = {(unsigned char)(upper >> 8), (unsigned char)upper};
            hex_line(&sha, 2, 0, 4, ela);
        }
        size_t n = len - off < 16 ? len - off : 16;
        hex_line(&sha, (unsigned)n, addr & 0xffff, 0, data + off);
    }
    hex_line(&sha, 0, 0, 1, NULL);
    mbedtls_sha256_finish_ret(&sha, digest);
    mbedtls_sha256_free(&sha);
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", digest[i]);
}

static char *dup_value(const unsigned char *v, size_t n)
{
    char *s = malloc(n + 1);
    if (s) {
        memcpy(s, v, n);
        s[n] = '\0';
    }
    return s;
}

static void copy_text(char *dst, size_t cap, const unsigned char *v, size_t n)
{
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, v, n);
    dst[n] = '\0';
}

int flash_load(const char *path, hub_image *img)
{
    size_t len = 0;
    unsigned char *flash = read_file(path, &len);
    memset(img, 0, sizeof *img);
    if (!flash || len < 13 || memcmp(flash, MAGIC, 8) != 0) {
        free(flash);
        return 1;
    }
    size_t total = (size_t)flash[8] | (size_t)flash[9] << 8 | (size_t)flash[10] << 16 | (size_t)flash[11] << 24;
    if (total > len || total < 13) {
        uart_printf("boot: image header says %zu bytes but flash holds %zu: damaged image, halted", total, len);
        free(flash);
        return -1;
    }
    image_sha256(flash, total, img->image_sha256);
    img->port = 8883;
    size_t p = 12;
    while (p < total && flash[p] != 0) {
        size_t klen = flash[p];
        if (p + 1 + klen + 2 > total)
            break;
        char key[256];
        copy_text(key, sizeof key, flash + p + 1, klen);
        size_t vlen = (size_t)flash[p + 1 + klen] | (size_t)flash[p + 2 + klen] << 8;
        const unsigned char *v = flash + p + 3 + klen;
        if (p + 3 + klen + vlen > total)
            break;
        char text[64];
        copy_text(text, sizeof text, v, vlen);
        if (!strcmp(key, "firmware_id"))
            copy_text(img->firmware_id, sizeof img->firmware_id, v, vlen);
        else if (!strcmp(key, "client_id"))
            copy_text(img->client_id, sizeof img->client_id, v, vlen);
        else if (!strcmp(key, "endpoint"))
            copy_text(img->endpoint, sizeof img->endpoint, v, vlen);
        else if (!strcmp(key, "port"))
            img->port = atoi(text);
        else if (!strcmp(key, "tcp_rx_buffer"))
            img->tcp_rx_buffer = atoi(text);
        else if (!strcmp(key, "tcp_tx_buffer"))
            img->tcp_tx_buffer = atoi(text);
        else if (!strcmp(key, "mbedtls_in_content_len"))
            img->mbedtls_in_content_len = atoi(text);
        else if (!strcmp(key, "mbedtls_out_content_len"))
            img->mbedtls_out_content_len = atoi(text);
        else if (!strcmp(key, "debug_threshold"))
            img->debug_threshold = atoi(text);
        else if (!strcmp(key, "read_timeout_ms"))
            img->read_timeout_ms = atoi(text);
        else if (!strcmp(key, "recv_glue"))
            img->recv_glue_all_or_nothing = !strcmp(text, "all_or_nothing");
        else if (!strcmp(key, "ca_root"))
            img->ca_root = dup_value(v, vlen);
        else if (!strcmp(key, "device_cert"))
            img->device_cert = dup_value(v, vlen);
        else if (!strcmp(key, "device_key"))
            img->device_key = dup_value(v, vlen);
        p += 3 + klen + vlen;
    }
    free(flash);
    if (!img->ca_root || !img->device_cert || !img->device_key || !img->endpoint[0] || !img->client_id[0] ||
        img->tcp_rx_buffer <= 0 || img->tcp_tx_buffer <= 0) {
        uart_printf("boot: image %.12s… lacks credentials or parameters: damaged image, halted",
                    img->image_sha256);
        return -1;
    }
    return 0;
}
