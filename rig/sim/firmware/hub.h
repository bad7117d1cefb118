/*
 * The virtual hub: a PIC32-like device program for the simulated bench.
 *
 * One process = one powered board. stdout is the UART console (text lines ending in \r\n),
 * the flash file is what the programmer wrote, and the "Ethernet" is a framed link to the bench
 * router (see hub_lan.c): the router delivers TCP *segments* and the hub answers with ACKs that
 * carry its advertised window, so the TCP receive path can model the Microchip stack's RX FIFO.
 *
 * Files: hub_main.c (boot, banner, connection attempts, MQTT), hub_flash.c (image parsing, image
 * sha256), hub_lan.c (LAN link + TCP socket model with the RX FIFO and its defect),
 * hub_tls.c (Mbed TLS setup, the BIO glue, the debug callback).
 */
#ifndef RIG_HUB_H
#define RIG_HUB_H

#include <stddef.h>
#include <stdint.h>

/* ------------------------------------------------------------------ console (UART) */
void uart_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void uart_raw_line(const char *text); /* writes text (may end in \n) as one \r\n line */
void app_log(const char *module, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
uint64_t hub_millis(void); /* monotonic ms since boot */

/* ------------------------------------------------------------------ flash image */
typedef struct {
    char firmware_id[64];
    char image_sha256[65];
    int tcp_rx_buffer;
    int tcp_tx_buffer;
    int mbedtls_in_content_len;
    int mbedtls_out_content_len;
    int debug_threshold;
    int read_timeout_ms;
    int recv_glue_all_or_nothing;
    char client_id[130];
    char endpoint[256];
    int port;
    /* PEM blobs, NUL-terminated, allocated */
    char *ca_root;
    char *device_cert;
    char *device_key;
} hub_image;

/* 0: image loaded; 1: blank/erased flash; -1: damaged image (message printed). */
int flash_load(const char *path, hub_image *img);

/* ------------------------------------------------------------------ LAN link + TCP model */
typedef struct hub_tcp hub_tcp;

int lan_connect(const char *host, int port);      /* 0 ok, -1 not reachable */
int lan_is_up(void);
void lan_close(void);

/* Open a TCP connection through the router: returns a socket or NULL (reason in errbuf). */
hub_tcp *tcp_open(const char *host, int port, int rx_size, int tx_size, int timeout_ms, char *errbuf,
                  size_t errlen);
void tcp_close(hub_tcp *s);
/* Bytes waiting in the RX FIFO. */
int tcp_rx_count(const hub_tcp *s);
/* Service the link for at most timeout_ms or until the RX FIFO holds >= want bytes (or EOF/RST). */
void tcp_wait(hub_tcp *s, int want, int timeout_ms);
/* Take up to len bytes out of the RX FIFO (never blocks). */
int tcp_read(hub_tcp *s, unsigned char *buf, int len);
/* Queue data to the peer: returns bytes accepted (up to the TX FIFO size) or -1 if closed. */
int tcp_write(hub_tcp *s, const unsigned char *buf, int len);
int tcp_eof(const hub_tcp *s);   /* peer closed and FIFO empty */
int tcp_reset(const hub_tcp *s); /* connection reset / link lost */
/* Overrun statistics for the diagnostic line printed after each attempt. */
void tcp_stats(const hub_tcp *s, int *overruns, int *corrupted_at_first);

/* ------------------------------------------------------------------ TLS */
int tls_session(const hub_image *img, hub_tcp *sock, int *state_out);

#endif
