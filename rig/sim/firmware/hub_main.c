/*
 * Virtual hub entry point: `hub --flash FLASH_FILE --lan 127.0.0.1:PORT`.
 *
 * Boot: a blank flash prints the boot ROM line and idles (like a part with no application). A
 * programmed flash prints the banner (firmware id, `image sha256: <64 hex>`, build parameters,
 * Mbed TLS version), brings the LAN link up, then runs connection attempts forever:
 * TCP open through the router -> TLS handshake (hub_tls.c) -> MQTT CONNECT/CONNACK, one PUBLISH,
 * keep-alive until the connection ends -> back-off -> again. The application's own diagnostic
 * lines have the incident firmware's shape: `MM/DD HH:MM:SS.mmm I <module>  <text>`.
 */
#include "hub.h"

#include <mbedtls/ssl.h>
#include <mbedtls/version.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define BACKOFF_MS 5000
#define KEEPALIVE_S 60

static struct timespec boot_time;

uint64_t hub_millis(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (uint64_t)(now.tv_sec - boot_time.tv_sec) * 1000u + (uint64_t)((now.tv_nsec - boot_time.tv_nsec) / 1000000);
}

void uart_raw_line(const char *text)
{
    size_t n = strlen(text);
    while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == '\r'))
        n--;
    fwrite(text, 1, n, stdout);
    fputs("\r\n", stdout);
    fflush(stdout);
}

void uart_printf(const char *fmt, ...)
{
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    uart_raw_line(line);
}

void app_log(const char *module, const char *fmt, ...)
{
    char text[1024], stamp[32];
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    strftime(stamp, sizeof stamp, "%m/%d %H:%M:%S", &tm);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    uart_printf("%s.%03ld I %-10s %s", stamp, (long)(tv.tv_usec / 1000), module, text);
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

/* ------------------------------------------------------------------ MQTT 3.1.1 over the TLS session */

static int ssl_write_all(mbedtls_ssl_context *ssl, const unsigned char *buf, size_t len)
{
    size_t off = 0;
    while (off < len) {
        int r = mbedtls_ssl_write(ssl, buf + off, len - off);
        if (r == MBEDTLS_ERR_SSL_WANT_READ || r == MBEDTLS_ERR_SSL_WANT_WRITE)
            continue;
        if (r < 0)
            return r;
        off += (size_t)r;
    }
    return 0;
}

/* Read one MQTT packet; returns its type byte, 0 on timeout (read_timeout), <0 on error/close. */
static int mqtt_read(mbedtls_ssl_context *ssl, unsigned char *body, size_t cap, size_t *blen, int tries)
{
    unsigned char b;
    int r;
    for (int t = 0;; t++) {
        r = mbedtls_ssl_read(ssl, &b, 1);
        if (r == 1)
            break;
        if (r == MBEDTLS_ERR_SSL_WANT_READ && t < tries)
            continue;
        if (r == MBEDTLS_ERR_SSL_WANT_READ)
            return 0;
        return r < 0 ? r : -1;
    }
    size_t len = 0;
    int shift = 0;
    unsigned char c;
    do {
        do
            r = mbedtls_ssl_read(ssl, &c, 1);
        while (r == MBEDTLS_ERR_SSL_WANT_READ);
        if (r != 1)
            return -1;
        len |= (size_t)(c & 0x7f) << shift;
        shift += 7;
    } while (c & 0x80);
    size_t got = 0;
    while (got < len) {
        r = mbedtls_ssl_read(ssl, body + (got < cap ? got : 0), got < cap ? (len - got < cap - got ? len - got : cap - got) : 1);
        if (r == MBEDTLS_ERR_SSL_WANT_READ)
            continue;
        if (r <= 0)
            return -1;
        got += (size_t)r;
    }
    *blen = len < cap ? len : cap;
    return b;
}

static size_t put_str(unsigned char *p, const char *s)
{
    size_t n = strlen(s);
    p[0] = (unsigned char)(n >> 8);
    p[1] = (unsigned char)n;
    memcpy(p + 2, s, n);
    return n + 2;
}

static size_t with_header(unsigned char *out, unsigned char type, const unsigned char *body, size_t len)
{
    size_t p = 0;
    out[p++] = type;
    size_t l = len;
    do {
        unsigned char d = l % 128;
        l /= 128;
        out[p++] = (unsigned char)(d | (l ? 0x80 : 0));
    } while (l);
    memcpy(out + p, body, len);
    return p + len;
}

int mqtt_session(mbedtls_ssl_context *ssl, const hub_image *img);
int mqtt_session(mbedtls_ssl_context *ssl, const hub_image *img)
{
    unsigned char body[1024], pkt[1100], in[512];
    size_t n = 0, blen = 0;
    n += put_str(body + n, "MQTT");
    body[n++] = 4;    /* 3.1.1 */
    body[n++] = 0x02; /* clean session */
    body[n++] = 0;
    body[n++] = KEEPALIVE_S;
    n += put_str(body + n, img->client_id);
    app_log("IotConn", "MQTT CONNECT client id %s, keep-alive %d s", img->client_id, KEEPALIVE_S);
    if (ssl_write_all(ssl, pkt, with_header(pkt, 0x10, body, n)) != 0)
        return -1;
    int t = mqtt_read(ssl, in, sizeof in, &blen, 12);
    if (t <= 0 || (t & 0xf0) != 0x20 || blen < 2) {
        app_log("IotConn", "MQTT CONNACK not received (%d)", t);
        return -1;
    }
    if (in[1] != 0) {
        app_log("IotConn", "MQTT CONNACK refused (rc=%d)", in[1]);
        return -1;
    }
    app_log("IotConn", "MQTT CONNACK accepted (rc=0), session present %d", in[0] & 1);
    char topic[200], payload[300];
    snprintf(topic, sizeof topic, "dt/hub/%s/boot", img->client_id);
    snprintf(payload, sizeof payload, "{\"clientId\":\"%s\",\"firmware\":\"%s\",\"image\":\"%s\"}", img->client_id,
             img->firmware_id, img->image_sha256);
    n = put_str(body, topic);
    body[n++] = 0;
    body[n++] = 1; /* packet id 1, QoS 1 */
    memcpy(body + n, payload, strlen(payload));
    n += strlen(payload);
    if (ssl_write_all(ssl, pkt, with_header(pkt, 0x32, body, n)) != 0)
        return -1;
    t = mqtt_read(ssl, in, sizeof in, &blen, 12);
    if ((t & 0xf0) == 0x40)
        app_log("IotConn", "MQTT PUBACK for %s (packet id 1)", topic);
    else
        app_log("IotConn", "MQTT PUBLISH %s not acknowledged (%d)", topic, t);
    /* stay connected: PINGREQ every keep-alive/2 */
    uint64_t last_ping = hub_millis();
    for (;;) {
        t = mqtt_read(ssl, in, sizeof in, &blen, 0);
        if (t < 0) {
            app_log("IotConn", "MQTT connection closed (%d)", t);
            return t;
        }
        if (hub_millis() - last_ping >= KEEPALIVE_S * 500) {
            unsigned char ping[2] = {0xc0, 0};
            if (ssl_write_all(ssl, ping, 2) != 0)
                return -1;
            last_ping = hub_millis();
        }
    }
}

/* ------------------------------------------------------------------ boot */

static void usage(void)
{
    fprintf(stderr, "usage: hub --flash FLASH_FILE --lan HOST:PORT [--reset-cause POR|MCLR|WDTO|SWR|BOR]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *flash = NULL, *lan = NULL, *reset_cause = "POR"; /* RCON as the boot ROM reads it */
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--flash") && i + 1 < argc)
            flash = argv[++i];
        else if (!strcmp(argv[i], "--lan") && i + 1 < argc)
            lan = argv[++i];
        else if (!strcmp(argv[i], "--reset-cause") && i + 1 < argc)
            reset_cause = argv[++i];
        else
            usage();
    }
    if (!flash || !lan)
        usage();
    char lan_host[64];
    int lan_port = 0;
    if (sscanf(lan, "%63[^:]:%d", lan_host, &lan_port) != 2)
        usage();
    signal(SIGPIPE, SIG_IGN);
    clock_gettime(CLOCK_MONOTONIC, &boot_time);

    uart_raw_line("");
    uart_printf("PIC32MZ boot ROM: reset cause %s, checking program flash at 0x1D000000", reset_cause);
    hub_image img;
    int loaded = flash_load(flash, &img);
    if (loaded != 0) {
        if (loaded > 0)
            uart_printf("PIC32MZ boot ROM: program flash blank (erased), no application - halted");
        for (;;)
            pause();
    }
    char version[64];
    mbedtls_version_get_string_full(version);
    uart_printf("==== water-treatment hub firmware %s ====", img.firmware_id);
    uart_printf("image sha256: %s", img.image_sha256);
    uart_printf("build: tcp_rx_buffer=%d tcp_tx_buffer=%d mbedtls_in_content_len=%d mbedtls_out_content_len=%d "
                "debug_threshold=%d read_timeout_ms=%d recv_glue=%s",
                img.tcp_rx_buffer, img.tcp_tx_buffer, img.mbedtls_in_content_len, img.mbedtls_out_content_len,
                img.debug_threshold, img.read_timeout_ms, img.recv_glue_all_or_nothing ? "all_or_nothing" : "partial");
    uart_printf("%s (system library), debug threshold %d", version, img.debug_threshold);
    uart_printf("iot: client id %s, endpoint %s:%d", img.client_id, img.endpoint, img.port);

    int link_reported = 0;
    for (;;) {
        if (!lan_is_up()) {
            if (lan_connect(lan_host, lan_port) != 0) {
                if (!link_reported)
                    app_log("Ethernet", "link down (no router at %s:%d), retrying", lan_host, lan_port);
                link_reported = 1;
                sleep_ms(1000);
                continue;
            }
            link_reported = 0;
            app_log("Ethernet", "link up, 100 Mbit/s full duplex");
        }
        char err[200];
        app_log("IotConn", "TCP connect %s:%d", img.endpoint, img.port);
        hub_tcp *sock = tcp_open(img.endpoint, img.port, img.tcp_rx_buffer, img.tcp_tx_buffer, 10000, err, sizeof err);
        if (!sock) {
            app_log("IotConn", "TCP connect failed: %s; retry in %d s", err, BACKOFF_MS / 1000);
            sleep_ms(BACKOFF_MS);
            continue;
        }
        app_log("IotConn", "TCP connected, RX FIFO %d B, TX FIFO %d B", img.tcp_rx_buffer, img.tcp_tx_buffer);
        int state = 0;
        int r = tls_session(&img, sock, &state);
        tcp_close(sock);
        if (r == 1)
            app_log("IotConn", "TLS handshake given up after 60 s in state %d; retry in %d s", state, BACKOFF_MS / 1000);
        else if (r < 0)
            app_log("IotConn", "connection attempt failed; retry in %d s", BACKOFF_MS / 1000);
        else
            app_log("IotConn", "session ended; reconnect in %d s", BACKOFF_MS / 1000);
        sleep_ms(BACKOFF_MS);
    }
}
