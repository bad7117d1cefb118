/*
 * The hub's Mbed TLS client: configuration from the image, the BIO glue over the TCP model, and the
 * debug callback that writes Mbed TLS's lines to the UART.
 *
 * Debug line format (decided for the bench, see shared/domain/sim-notes.md §1): "%s:%04d: %s" with
 * the basename of the library's source file, e.g. `ssl_cli.c:4272: client state: 12`. Debian's
 * library is built with MBEDTLS_THREADING_C, which prefixes every message with the context pointer
 * (`0x7ffd…: `); a PIC32 build has no threading, so the callback strips that prefix.
 *
 * Glue (variant `recv_glue`): `partial` returns whatever the RX FIFO holds (up to len);
 * `all_or_nothing` returns WANT_READ until the FIFO holds all len bytes (the TheThingsProducts style).
 * Either waits up to read_timeout_ms for data, then returns WANT_READ: the firmware's wrapper calls
 * mbedtls_ssl_handshake() again, which is why a stall shows the same block every 5 s and never an
 * f_recv line (Mbed TLS does not log WANT_READ).
 *
 * IN buffer size: the system library is compiled with MBEDTLS_SSL_IN_CONTENT_LEN 16384 and it cannot be
 * changed at run time. A real build with a smaller value rejects a longer record in
 * ssl_parse_record_header right after reading its 5-byte header: "bad message length",
 * MBEDTLS_ERR_SSL_INVALID_RECORD (-0x7200) (2.16 ssl_tls.c; bench.md §6). The glue performs that same
 * check at the same point of the stream: it watches the record headers it hands to Mbed TLS and, when
 * a record is longer than the image's mbedtls_in_content_len, logs "bad message length" through the
 * debug callback and returns -0x7200 instead of the body, so the library fails with its own error.
 */
#include "hub.h"

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/debug.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/net_sockets.h>
#include <mbedtls/ssl.h>
#include <mbedtls/ssl_internal.h>
#include <mbedtls/version.h>
#include <mbedtls/x509_crt.h>
#include <stdio.h>
#include <string.h>

typedef struct {
    hub_tcp *sock;
    const hub_image *img;
    mbedtls_ssl_context *ssl;
    /* record tracker for the IN_CONTENT_LEN check */
    unsigned char hdr[5];
    int hdr_have;
    long body_left;
    int oversize;
    int seen_ccs;
} glue;

static int last_state_logged = -1;
static mbedtls_ssl_context *dbg_ssl;

static void debug_cb(void *ctx, int level, const char *file, int line, const char *str)
{
    (void)ctx;
    (void)level;
    const char *base = strrchr(file, '/');
    base = base ? base + 1 : file;
    /* THREADING_C prefix "0x<ptr>: " */
    if (str[0] == '0' && str[1] == 'x') {
        const char *p = str + 2;
        while ((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f'))
            p++;
        if (p[0] == ':' && p[1] == ' ')
            str = p + 2;
    }
    if (dbg_ssl && !strncmp(str, "client state: ", 14) && dbg_ssl->state != last_state_logged) {
        last_state_logged = dbg_ssl->state;
        app_log("SysLog", "[DIAG] IOT TLS handshake step (%llu) Data: %d/0", (unsigned long long)(hub_millis() / 10),
                dbg_ssl->state);
    }
    char text[2048];
    snprintf(text, sizeof text, "%s:%04d: %s", base, line, str);
    uart_raw_line(text);
}

static void track_records(glue *g, const unsigned char *buf, int n)
{
    for (int i = 0; i < n; i++) {
        if (g->body_left > 0) {
            long take = n - i < g->body_left ? n - i : g->body_left;
            g->body_left -= take;
            i += (int)take - 1;
            continue;
        }
        g->hdr[g->hdr_have++] = buf[i];
        if (g->hdr_have == 5) {
            g->hdr_have = 0;
            g->body_left = (long)g->hdr[3] << 8 | g->hdr[4];
            /* The 2.16 check compares the record with the IN buffer: IN_CONTENT_LEN for plaintext
             * (the handshake before the server's ChangeCipherSpec), plus the room the library keeps
             * for encryption expansion (IV, MAC, padding; MBEDTLS_SSL_PAYLOAD_OVERHEAD) otherwise. */
            long limit = g->img->mbedtls_in_content_len;
            if (g->seen_ccs)
                limit += MBEDTLS_SSL_PAYLOAD_OVERHEAD;
            if (g->hdr[0] == MBEDTLS_SSL_MSG_CHANGE_CIPHER_SPEC)
                g->seen_ccs = 1;
            if (g->body_left > limit)
                g->oversize = 1;
        }
    }
}

static int glue_recv(void *ctx, unsigned char *buf, size_t len)
{
    glue *g = ctx;
    if (g->oversize) {
        mbedtls_debug_print_msg(g->ssl, 1, __FILE__, __LINE__, "bad message length");
        return MBEDTLS_ERR_SSL_INVALID_RECORD;
    }
    int want = g->img->recv_glue_all_or_nothing ? (int)len : 1;
    if (tcp_rx_count(g->sock) < want)
        tcp_wait(g->sock, want, g->img->read_timeout_ms > 0 ? g->img->read_timeout_ms : 3600000);
    int have = tcp_rx_count(g->sock);
    if (have < want) {
        if (have == 0 && tcp_eof(g->sock))
            return 0;
        if (tcp_reset(g->sock))
            return MBEDTLS_ERR_NET_CONN_RESET;
        return MBEDTLS_ERR_SSL_WANT_READ;
    }
    /* Never hand over more than the rest of the current record header: the size check needs it. */
    int n = tcp_read(g->sock, buf, (int)len);
    track_records(g, buf, n);
    return n;
}

static int glue_send(void *ctx, const unsigned char *buf, size_t len)
{
    glue *g = ctx;
    int n = tcp_write(g->sock, buf, (int)len);
    if (n < 0)
        return MBEDTLS_ERR_NET_CONN_RESET;
    return n;
}

static const int ciphersuites[] = {MBEDTLS_TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
                                   MBEDTLS_TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, 0};

static void pem_error(const char *what, int ret)
{
    char msg[128];
    mbedtls_strerror(ret, msg, sizeof msg);
    app_log("IotConn", "%s in the image does not parse: -0x%04x %s", what, (unsigned)-ret, msg);
}

/*
 * One TLS session over `sock`: handshake (re-entered on every read timeout, given up after 60 s),
 * then MQTT (see hub_main.c via the returned context). Returns 0 when the handshake completed and
 * the session ended, <0 (Mbed TLS error) when it failed, 1 when it timed out. *state_out gets the
 * last handshake state.
 */
int tls_session(const hub_image *img, hub_tcp *sock, int *state_out);
int mqtt_session(mbedtls_ssl_context *ssl, const hub_image *img);

int tls_session(const hub_image *img, hub_tcp *sock, int *state_out)
{
    mbedtls_ssl_context ssl;
    mbedtls_ssl_config conf;
    mbedtls_x509_crt ca, own;
    mbedtls_pk_context key;
    mbedtls_entropy_context entropy;
    mbedtls_ctr_drbg_context drbg;
    int ret;
    mbedtls_ssl_init(&ssl);
    mbedtls_ssl_config_init(&conf);
    mbedtls_x509_crt_init(&ca);
    mbedtls_x509_crt_init(&own);
    mbedtls_pk_init(&key);
    mbedtls_entropy_init(&entropy);
    mbedtls_ctr_drbg_init(&drbg);
    glue g = {.sock = sock, .img = img, .ssl = &ssl};
    int result = -1;

    if ((ret = mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &entropy, (const unsigned char *)img->client_id,
                                     strlen(img->client_id))) != 0)
        goto done;
    if ((ret = mbedtls_x509_crt_parse(&ca, (const unsigned char *)img->ca_root, strlen(img->ca_root) + 1)) != 0) {
        pem_error("CA root", ret);
        goto done;
    }
    if ((ret = mbedtls_x509_crt_parse(&own, (const unsigned char *)img->device_cert, strlen(img->device_cert) + 1)) !=
        0) {
        pem_error("device certificate", ret);
        goto done;
    }
    if ((ret = mbedtls_pk_parse_key(&key, (const unsigned char *)img->device_key, strlen(img->device_key) + 1, NULL,
                                    0)) != 0) {
        pem_error("device key", ret);
        goto done;
    }
    mbedtls_ssl_config_defaults(&conf, MBEDTLS_SSL_IS_CLIENT, MBEDTLS_SSL_TRANSPORT_STREAM, MBEDTLS_SSL_PRESET_DEFAULT);
    mbedtls_ssl_conf_min_version(&conf, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3);
    mbedtls_ssl_conf_max_version(&conf, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3);
    mbedtls_ssl_conf_authmode(&conf, MBEDTLS_SSL_VERIFY_REQUIRED);
    mbedtls_ssl_conf_ca_chain(&conf, &ca, NULL);
    mbedtls_ssl_conf_own_cert(&conf, &own, &key);
    mbedtls_ssl_conf_ciphersuites(&conf, ciphersuites);
    mbedtls_ssl_conf_rng(&conf, mbedtls_ctr_drbg_random, &drbg);
    mbedtls_ssl_conf_dbg(&conf, debug_cb, NULL);
    mbedtls_ssl_conf_session_tickets(&conf, MBEDTLS_SSL_SESSION_TICKETS_DISABLED);
    mbedtls_debug_set_threshold(img->debug_threshold);
    if ((ret = mbedtls_ssl_setup(&ssl, &conf)) != 0)
        goto done;
    mbedtls_ssl_set_hostname(&ssl, img->endpoint);
    mbedtls_ssl_set_bio(&ssl, &g, glue_send, glue_recv, NULL);
    dbg_ssl = &ssl;
    last_state_logged = -1;

    uint64_t start = hub_millis();
    for (;;) {
        ret = mbedtls_ssl_handshake(&ssl);
        if (ret == 0)
            break;
        if (ret != MBEDTLS_ERR_SSL_WANT_READ && ret != MBEDTLS_ERR_SSL_WANT_WRITE)
            break;
        if (hub_millis() - start >= 60000) {
            app_log("SysLog", "[DIAG] IOT TLS handshake timeout (%llu) Data: %d/60",
                    (unsigned long long)(hub_millis() / 10), ssl.state);
            *state_out = ssl.state;
            result = 1;
            goto done;
        }
    }
    *state_out = ssl.state;
    if (ret != 0) {
        char msg[160];
        mbedtls_strerror(ret, msg, sizeof msg);
        app_log("IotConn", "TLS handshake failed in state %d: mbedtls_ssl_handshake returned -0x%04x (%s)", ssl.state,
                (unsigned)-ret, msg);
        result = ret;
        goto done;
    }
    app_log("IotConn", "TLS handshake complete in %llu ms: %s, %s", (unsigned long long)(hub_millis() - start),
            mbedtls_ssl_get_version(&ssl), mbedtls_ssl_get_ciphersuite(&ssl));
    mqtt_session(&ssl, img);
    mbedtls_ssl_close_notify(&ssl);
    result = 0;
done:
    dbg_ssl = NULL;
    {
        int overruns, corrupt;
        tcp_stats(sock, &overruns, &corrupt);
        app_log("TcpIp", "socket RX FIFO %d B: %d segment(s) truncated (larger than the free space)%s", img->tcp_rx_buffer,
                overruns, overruns ? ", retransmission requested" : "");
    }
    mbedtls_ssl_free(&ssl);
    mbedtls_ssl_config_free(&conf);
    mbedtls_x509_crt_free(&ca);
    mbedtls_x509_crt_free(&own);
    mbedtls_pk_free(&key);
    mbedtls_ctr_drbg_free(&drbg);
    mbedtls_entropy_free(&entropy);
    return result;
}
