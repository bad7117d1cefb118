/*
 * A tiny Mbed TLS (system library, 2.28) TLS 1.2 client that prints the library's real debug
 * output on stdout, so the log parser is tested against what the library actually writes.
 *
 * It behaves like the hub's firmware: non-blocking socket, mbedtls_ssl_handshake() called again
 * on WANT_READ every poll interval (each call prints `=> handshake … <= handshake`), and an overall
 * timeout after which it gives up. Application lines are printed as `[APP] …`.
 *
 *   tlsclient -p PORT -a CA.pem [-c CERT.pem -k KEY.pem] [-d LEVEL] [-f FORMAT] [-t TIMEOUT_MS]
 *             [-r POLL_MS] [-s SUITE_NAME] [-n SERVER_NAME]
 *
 * FORMAT: 0 "%s:%04d: %s" (sample programs), 1 "%s:%d: |%d| %s" (ssl_client2), 2 message only.
 * Exit: 0 handshake completed, 1 handshake failed, 2 timeout (still waiting), 3 usage/setup error.
 */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/debug.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/net_sockets.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>

static int debug_format = 0;

static void debug_callback(void *ctx, int level, const char *file, int line, const char *str)
{
    const char *base = strrchr(file, '/');
    (void)ctx;
    base = base ? base + 1 : file;
    if (debug_format == 0)
        printf("%s:%04d: %s", base, line, str);
    else if (debug_format == 1)
        printf("%s:%d: |%d| %s", base, line, level, str);
    else
        printf("%s", str);
    fflush(stdout);
}

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

int main(int argc, char **argv)
{
    const char *port = NULL, *ca = NULL, *cert = NULL, *key = NULL, *suite = NULL;
    const char *server_name = "localhost";
    int level = 2, timeout_ms = 3000, poll_ms = 100, opt, ret, exit_code = 3;
    int suites[2] = {0, 0};
    char error_text[128];
    mbedtls_net_context net;
    mbedtls_ssl_context ssl;
    mbedtls_ssl_config conf;
    mbedtls_x509_crt ca_chain, own_cert;
    mbedtls_pk_context own_key;
    mbedtls_entropy_context entropy;
    mbedtls_ctr_drbg_context drbg;

    while ((opt = getopt(argc, argv, "p:a:c:k:d:f:t:r:s:n:")) != -1) {
        switch (opt) {
        case 'p': port = optarg; break;
        case 'a': ca = optarg; break;
        case 'c': cert = optarg; break;
        case 'k': key = optarg; break;
        case 'd': level = atoi(optarg); break;
        case 'f': debug_format = atoi(optarg); break;
        case 't': timeout_ms = atoi(optarg); break;
        case 'r': poll_ms = atoi(optarg); break;
        case 's': suite = optarg; break;
        case 'n': server_name = optarg; break;
        default: return 3;
        }
    }
    if (port == NULL || ca == NULL) {
        fprintf(stderr, "usage: tlsclient -p PORT -a CA.pem [-c CERT -k KEY] [-d N] [-f N] [-t MS] [-r MS]\n");
        return 3;
    }
    mbedtls_net_init(&net);
    mbedtls_ssl_init(&ssl);
    mbedtls_ssl_config_init(&conf);
    mbedtls_x509_crt_init(&ca_chain);
    mbedtls_x509_crt_init(&own_cert);
    mbedtls_pk_init(&own_key);
    mbedtls_entropy_init(&entropy);
    mbedtls_ctr_drbg_init(&drbg);
    mbedtls_debug_set_threshold(level);

    if ((ret = mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &entropy, NULL, 0)) != 0 ||
        (ret = mbedtls_x509_crt_parse_file(&ca_chain, ca)) != 0 ||
        (cert && (ret = mbedtls_x509_crt_parse_file(&own_cert, cert)) != 0) ||
        (key && (ret = mbedtls_pk_parse_keyfile(&own_key, key, NULL)) != 0) ||
        (ret = mbedtls_ssl_config_defaults(&conf, MBEDTLS_SSL_IS_CLIENT, MBEDTLS_SSL_TRANSPORT_STREAM,
                                           MBEDTLS_SSL_PRESET_DEFAULT)) != 0) {
        mbedtls_strerror(ret, error_text, sizeof error_text);
        fprintf(stderr, "setup failed: -0x%04x %s\n", (unsigned)-ret, error_text);
        return 3;
    }
    mbedtls_ssl_conf_min_version(&conf, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3);
    mbedtls_ssl_conf_max_version(&conf, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3);
    mbedtls_ssl_conf_authmode(&conf, MBEDTLS_SSL_VERIFY_REQUIRED);
    mbedtls_ssl_conf_ca_chain(&conf, &ca_chain, NULL);
    mbedtls_ssl_conf_rng(&conf, mbedtls_ctr_drbg_random, &drbg);
    mbedtls_ssl_conf_dbg(&conf, debug_callback, NULL);
    if (cert && key && mbedtls_ssl_conf_own_cert(&conf, &own_cert, &own_key) != 0)
        return 3;
    if (suite) {
        suites[0] = mbedtls_ssl_get_ciphersuite_id(suite);
        if (suites[0] == 0) {
            fprintf(stderr, "unknown ciphersuite %s\n", suite);
            return 3;
        }
        mbedtls_ssl_conf_ciphersuites(&conf, suites);
    }
    if (mbedtls_ssl_setup(&ssl, &conf) != 0 || mbedtls_ssl_set_hostname(&ssl, server_name) != 0)
        return 3;

    printf("[APP] connecting to 127.0.0.1:%s\n", port);
    if ((ret = mbedtls_net_connect(&net, "127.0.0.1", port, MBEDTLS_NET_PROTO_TCP)) != 0) {
        printf("[APP] connect failed -0x%04x\n", (unsigned)-ret);
        return 3;
    }
    mbedtls_net_set_nonblock(&net);
    mbedtls_ssl_set_bio(&ssl, &net, mbedtls_net_send, mbedtls_net_recv, NULL);

    long deadline = now_ms() + timeout_ms;
    for (;;) {
        ret = mbedtls_ssl_handshake(&ssl);
        if (ret == 0) {
            printf("[APP] handshake ok: %s\n", mbedtls_ssl_get_ciphersuite(&ssl));
            exit_code = 0;
            break;
        }
        if (ret != MBEDTLS_ERR_SSL_WANT_READ && ret != MBEDTLS_ERR_SSL_WANT_WRITE) {
            mbedtls_strerror(ret, error_text, sizeof error_text);
            printf("[APP] handshake failed: -0x%04x %s\n", (unsigned)-ret, error_text);
            exit_code = 1;
            break;
        }
        if (now_ms() >= deadline) {
            printf("[APP] handshake timeout after %d ms\n", timeout_ms);
            exit_code = 2;
            break;
        }
        struct pollfd pfd = {.fd = net.fd, .events = POLLIN};
        poll(&pfd, 1, poll_ms);
    }
    fflush(stdout);
    mbedtls_net_free(&net);
    mbedtls_ssl_free(&ssl);
    mbedtls_ssl_config_free(&conf);
    mbedtls_x509_crt_free(&ca_chain);
    mbedtls_x509_crt_free(&own_cert);
    mbedtls_pk_free(&own_key);
    mbedtls_ctr_drbg_free(&drbg);
    mbedtls_entropy_free(&entropy);
    return exit_code;
}
