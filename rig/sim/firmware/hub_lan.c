/*
 * The hub's Ethernet and its TCP socket model (Microchip TCP/IP stack, bench.md §2).
 *
 * LAN link: one loopback TCP connection to the bench router carrying frames
 *   u8 type | u16 BE body length | body
 * hub -> router:  'O' OPEN  conn u16, port u16, window u16, mss u16, iss u32, host
 *                 'K' ACK   conn u16, ack u32, window u16, kind u8
 *                           kind 1: the answer to one segment; kind 0: a window update
 *                 'D' DATA  conn u16, seq u32, payload
 *                 'F' FIN   conn u16
 * router -> hub:  'A' OPENED conn u16, irs u32
 *                 'S' SEG   conn u16, seq u32, payload           (one TCP segment toward the hub)
 *                 'F' FIN   conn u16
 *                 'R' RST   conn u16, reason
 * The router, not the kernel, decides segment sizes; the hub answers with the free space of its RX
 * FIFO as its window, exactly what a Harmony socket advertises.
 *
 * Determinism: the hub takes a frame off the link only when the glue needs data and the FIFO
 * cannot satisfy it, one frame at a time, so the FIFO state at each segment depends on the segment
 * sequence alone, never on scheduling.
 */
#include "hub.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define HUB_MSS 1460 /* Harmony 3 advertises MTU - 40 whatever the buffer size */

struct hub_tcp {
    uint16_t conn;
    int opened;
    int fin;
    int rst;
    char reason[160];
    uint32_t rcv_nxt;
    uint32_t snd_nxt;
    unsigned char *ring;
    int size;  /* tcp_rx_buffer */
    int head;  /* ring index of the oldest unread byte */
    int count; /* unread bytes */
    int last_window;
    int tx_size;
    /* the stack's single "rest to be re-sent" tracker: set when a segment is truncated */
    int pending_rest;
    uint32_t rest_seq;
    int overruns;
    long first_corruption; /* stream offset (from the first byte of the connection), -1 if none */
    uint32_t stream_base;
};

static int lan_fd = -1;
static unsigned char inbuf[70000];
static size_t inlen;
static uint16_t next_conn = 1;
static hub_tcp *current;

static void put16(unsigned char *p, unsigned v) { p[0] = (unsigned char)(v >> 8); p[1] = (unsigned char)v; }
static void put32(unsigned char *p, uint32_t v) { put16(p, v >> 16); put16(p + 2, v & 0xffff); }
static unsigned get16(const unsigned char *p) { return (unsigned)p[0] << 8 | p[1]; }
static uint32_t get32(const unsigned char *p) { return (uint32_t)get16(p) << 16 | get16(p + 2); }

int lan_is_up(void) { return lan_fd >= 0; }

void lan_close(void)
{
    if (lan_fd >= 0)
        close(lan_fd);
    lan_fd = -1;
    inlen = 0;
    if (current) {
        current->rst = 1;
        snprintf(current->reason, sizeof current->reason, "LAN link lost");
    }
}

int lan_connect(const char *host, int port)
{
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
        return -1;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    int flags = fcntl(fd, F_GETFL, 0);
    fcntl(fd, F_SETFL, flags | O_NONBLOCK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    struct pollfd pfd = {fd, POLLOUT, 0};
    int err = 0;
    socklen_t elen = sizeof err;
    if (poll(&pfd, 1, 2000) != 1 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0 || err) {
        close(fd);
        return -1;
    }
    fcntl(fd, F_SETFL, flags);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    lan_fd = fd;
    inlen = 0;
    return 0;
}

static int send_frame(char type, const unsigned char *body, size_t len)
{
    if (lan_fd < 0)
        return -1;
    unsigned char hdr[3] = {(unsigned char)type, 0, 0};
    put16(hdr + 1, (unsigned)len);
    struct pollfd pfd = {lan_fd, POLLOUT, 0};
    const unsigned char *parts[2] = {hdr, body};
    size_t lens[2] = {3, len};
    for (int i = 0; i < 2; i++) {
        size_t off = 0;
        while (off < lens[i]) {
            if (poll(&pfd, 1, 2000) != 1) {
                lan_close();
                return -1;
            }
            ssize_t w = send(lan_fd, parts[i] + off, lens[i] - off, MSG_NOSIGNAL);
            if (w <= 0) {
                lan_close();
                return -1;
            }
            off += (size_t)w;
        }
    }
    return 0;
}

static void send_ack(hub_tcp *s, int kind)
{
    unsigned char b[9];
    int window = s->size - s->count;
    put16(b, s->conn);
    put32(b + 2, s->rcv_nxt);
    put16(b + 6, (unsigned)(window > 65535 ? 65535 : window));
    b[8] = (unsigned char)kind;
    s->last_window = window;
    send_frame('K', b, sizeof b);
}

/*
 * Store bytes into the ring at the tail. With `defect`, the two bytes that belong right after a wrap
 * of the ring are not written (they keep the previous lap's data); returns the stream offset of the
 * first such byte, or -1.
 */
static long ring_store(hub_tcp *s, const unsigned char *data, int n, int defect, long stream_off)
{
    int tail = (s->head + s->count) % s->size;
    long stale = -1;
    for (int i = 0; i < n; i++) {
        int idx = (tail + i) % s->size;
        if (defect && tail + i >= s->size && tail + i - s->size < 2) {
            if (stale < 0)
                stale = stream_off + i;
            continue;
        }
        s->ring[idx] = data[i];
    }
    s->count += n;
    return stale;
}

static void on_segment(hub_tcp *s, uint32_t seq, const unsigned char *data, int len)
{
    int32_t ahead = (int32_t)(seq - s->rcv_nxt);
    if (ahead > 0 || s->fin) { /* out of order: Harmony would hold it in its data-ahead space; never sent here */
        send_ack(s, 1);
        return;
    }
    if (-ahead >= len) { /* all old: duplicate */
        send_ack(s, 1);
        return;
    }
    data += -ahead;
    len -= -ahead;
    seq = s->rcv_nxt;
    int free_space = s->size - s->count;
    int store = len < free_space ? len : free_space;
    /*
     * THE MODELLED DEFECT (the HughesNet Gen5 incident).
     * What is modelled: Harmony's receive path truncates a segment larger than the free space of the
     * socket's RX FIFO ("Truncate packets that would overflow our TCP RX FIFO and request a
     * retransmit", tcp.c) and remembers where the missing rest begins. When that rest arrives and its
     * copy into the ring has to wrap around the end of the buffer, the two bytes that belong right
     * after the wrap are not written: they keep what the ring held one lap earlier. Two bytes of the
     * stream are wrong; TCP does not notice (its checksum covered the segment, not the FIFO).
     * What is known from the incident (shared/incident/forum-thread.txt): a 1024-byte RX FIFO, a
     * HughesNet Gen5 modem (split-TCP PEP) whose segments are larger than that FIFO, reads that
     * looked odd (1393 bytes, then 2, then the rest of AWS's first flight), two corrupted bytes in
     * the middle of it, AWS going silent after the client's Finished, and a 1460-byte FIFO curing it.
     * What is assumed: the exact code path (the re-sent rest + the ring wrap) and that the bytes
     * keep stale contents. With a 1393-byte PEP segment, a 1024-byte FIFO and AWS's 5.4 KB
     * coalesced first flight, the only re-sent rest that wraps is the one at stream offset 3810,
     * which wraps at 4096: inside the cross-signed root certificate, which the client parses but
     * never verifies (it trusts the root itself). The transcript differs, the server rejects the
     * client's CertificateVerify, and AWS says nothing: the stall in client state 12. A FIFO of
     * 1460 bytes or more never truncates a 1393-byte segment, so nothing is ever corrupted.
     */
    int is_rest = s->pending_rest && seq == s->rest_seq;
    long stream_off = (long)(seq - s->stream_base);
    long stale = ring_store(s, data, store, is_rest, stream_off);
    if (stale >= 0) {
        if (s->first_corruption < 0)
            s->first_corruption = stale;
        /* the model's own trace (stderr, not the UART: real firmware could not know this) */
        fprintf(stderr, "rx-fifo: re-sent rest at stream offset %ld wrapped the %d-byte ring: stream bytes %ld-%ld keep stale data\n",
                stream_off, s->size, stale, stale + 1);
        fflush(stderr);
    }
    if (is_rest)
        s->pending_rest = 0;
    if (store < len) {
        s->overruns++;
        s->pending_rest = 1;
        s->rest_seq = seq + (uint32_t)store;
    }
    s->rcv_nxt += (uint32_t)store;
    send_ack(s, 1);
}

static void dispatch(char type, const unsigned char *b, size_t len)
{
    if (len < 2 || !current || get16(b) != current->conn)
        return; /* a frame of an earlier connection */
    hub_tcp *s = current;
    switch (type) {
    case 'A':
        if (len >= 6) {
            s->rcv_nxt = get32(b + 2) + 1;
            s->stream_base = s->rcv_nxt;
            s->opened = 1;
        }
        break;
    case 'S':
        if (len >= 6 && s->opened)
            on_segment(s, get32(b + 2), b + 6, (int)len - 6);
        break;
    case 'F':
        s->fin = 1;
        break;
    case 'R': {
        size_t n = len - 2 < sizeof s->reason - 1 ? len - 2 : sizeof s->reason - 1;
        memcpy(s->reason, b + 2, n);
        s->reason[n] = '\0';
        s->rst = 1;
        break;
    }
    default:
        break;
    }
}

/* Take one frame off the link, waiting at most timeout_ms. 1 = handled, 0 = timeout, -1 = link down. */
static int pump_one(int timeout_ms)
{
    uint64_t deadline = hub_millis() + (uint64_t)(timeout_ms < 0 ? 0 : timeout_ms);
    for (;;) {
        if (inlen >= 3) {
            size_t blen = get16(inbuf + 1);
            if (inlen >= 3 + blen) {
                unsigned char body[65536];
                char type = (char)inbuf[0];
                memcpy(body, inbuf + 3, blen);
                memmove(inbuf, inbuf + 3 + blen, inlen - 3 - blen);
                inlen -= 3 + blen;
                dispatch(type, body, blen);
                return 1;
            }
        }
        if (lan_fd < 0)
            return -1;
        uint64_t now = hub_millis();
        int wait = now >= deadline ? 0 : (int)(deadline - now);
        struct pollfd pfd = {lan_fd, POLLIN, 0};
        int r = poll(&pfd, 1, wait);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return 0;
        ssize_t n = recv(lan_fd, inbuf + inlen, sizeof inbuf - inlen, 0);
        if (n <= 0) {
            lan_close();
            return -1;
        }
        inlen += (size_t)n;
    }
}

hub_tcp *tcp_open(const char *host, int port, int rx_size, int tx_size, int timeout_ms, char *errbuf,
                  size_t errlen)
{
    if (lan_fd < 0) {
        snprintf(errbuf, errlen, "LAN link down");
        return NULL;
    }
    hub_tcp *s = calloc(1, sizeof *s);
    s->ring = calloc((size_t)rx_size, 1);
    s->size = rx_size;
    s->tx_size = tx_size;
    s->conn = next_conn++;
    s->first_corruption = -1;
    s->snd_nxt = 0x1000u * s->conn + 1; /* iss + 1 */
    current = s;
    size_t hlen = strlen(host);
    unsigned char b[14 + 256];
    if (hlen > 255)
        hlen = 255;
    put16(b, s->conn);
    put16(b + 2, (unsigned)port);
    put16(b + 4, (unsigned)(rx_size > 65535 ? 65535 : rx_size));
    put16(b + 6, HUB_MSS);
    put32(b + 8, s->snd_nxt - 1);
    memcpy(b + 12, host, hlen);
    s->last_window = rx_size;
    send_frame('O', b, 12 + hlen);
    uint64_t deadline = hub_millis() + (uint64_t)timeout_ms;
    while (!s->opened && !s->rst && lan_fd >= 0) {
        uint64_t now = hub_millis();
        if (now >= deadline)
            break;
        pump_one((int)(deadline - now));
    }
    if (!s->opened) {
        snprintf(errbuf, errlen, "%s", s->rst ? s->reason : lan_fd < 0 ? "LAN link lost" : "no answer (SYN timeout)");
        tcp_close(s);
        return NULL;
    }
    return s;
}

void tcp_close(hub_tcp *s)
{
    if (!s)
        return;
    if (s->opened && !s->rst) {
        unsigned char b[2];
        put16(b, s->conn);
        send_frame('F', b, 2);
    }
    if (current == s)
        current = NULL;
    free(s->ring);
    free(s);
}

int tcp_rx_count(const hub_tcp *s) { return s->count; }
int tcp_eof(const hub_tcp *s) { return s->fin && s->count == 0; }
int tcp_reset(const hub_tcp *s) { return s->rst || lan_fd < 0; }

void tcp_stats(const hub_tcp *s, int *overruns, int *corrupted_at_first)
{
    *overruns = s->overruns;
    *corrupted_at_first = (int)s->first_corruption;
}

void tcp_wait(hub_tcp *s, int want, int timeout_ms)
{
    uint64_t deadline = hub_millis() + (uint64_t)(timeout_ms < 0 ? 0 : timeout_ms);
    while (s->count < want && !s->fin && !s->rst && lan_fd >= 0) {
        uint64_t now = hub_millis();
        if (now >= deadline)
            return;
        if (pump_one((int)(deadline - now)) < 0)
            return;
    }
}

int tcp_read(hub_tcp *s, unsigned char *buf, int len)
{
    int n = len < s->count ? len : s->count;
    for (int i = 0; i < n; i++)
        buf[i] = s->ring[(s->head + i) % s->size];
    s->head = (s->head + n) % s->size;
    s->count -= n;
    /* receiver silly-window avoidance, as Harmony: update when all free or grown by min(MSS, size/2) */
    int window = s->size - s->count;
    int threshold = HUB_MSS < s->size / 2 ? HUB_MSS : s->size / 2;
    if (n > 0 && !s->rst && (window == s->size || window - s->last_window >= threshold))
        send_ack(s, 0);
    return n;
}

int tcp_write(hub_tcp *s, const unsigned char *buf, int len)
{
    if (s->rst || lan_fd < 0)
        return -1;
    int n = len < s->tx_size ? len : s->tx_size;
    int off = 0;
    while (off < n) {
        int chunk = n - off < HUB_MSS ? n - off : HUB_MSS;
        unsigned char b[6 + HUB_MSS];
        put16(b, s->conn);
        put32(b + 2, s->snd_nxt);
        memcpy(b + 6, buf + off, (size_t)chunk);
        if (send_frame('D', b, 6 + (size_t)chunk) < 0)
            return -1;
        s->snd_nxt += (uint32_t)chunk;
        off += chunk;
    }
    return n;
}
