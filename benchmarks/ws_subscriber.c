/* ws_subscriber.c: the load side of benchmarks/bench_lab.py. Holds CONNS graphql-transport-ws
 * subscriptions (plain WebSocket, no compression) on one epoll loop and reports, for every
 * message it has received on all of them, when the copies arrived: one JSON line per message
 * {"text", "count", "t_first", "t_p50", "t_p99", "t_last"} (CLOCK_MONOTONIC seconds, the
 * clock behind Python's time.perf_counter on Linux), so the driver subtracts its own send time.
 * It is in C so that receiving costs far less CPU per delivery than the server spends on it.
 * Prints "ready" once every subscription is sent and acknowledged by the server's first
 * message (connection_ack); ends on "stop" or end of input on stdin.
 * usage: ws_subscriber HOST PORT PATH CONNS QUERY */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { ST_CONNECTING, ST_HANDSHAKE, ST_INIT, ST_SUBSCRIBED };

typedef struct {
    int fd;
    int state;
    char *buf;
    size_t len, cap;
} conn_t;

typedef struct {
    char text[64];
    int count;
    double *times;
} msg_t;

static int epfd, nconns, ready_count, opened;
static conn_t *conns;
static const char *host, *path, *query;
static int port;
static msg_t *msgs;
static int nmsgs, capmsgs;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
    fprintf(stderr, "ws_subscriber: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void send_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t r = send(fd, data, len, MSG_NOSIGNAL);
        if (r < 0) {
            if (errno == EAGAIN || errno == EINTR) {
                continue; /* tiny control messages only: spin rather than queue */
            }
            die("send");
        }
        data += r;
        len -= (size_t)r;
    }
}

/* A client text frame: masked (with a zero key, which leaves the payload as it is). */
static void send_text(int fd, const char *text)
{
    size_t n = strlen(text);
    char hdr[8];
    size_t h = 0;
    hdr[h++] = (char)0x81;
    if (n < 126) {
        hdr[h++] = (char)(0x80 | n);
    } else {
        hdr[h++] = (char)(0x80 | 126);
        hdr[h++] = (char)(n >> 8);
        hdr[h++] = (char)n;
    }
    memset(hdr + h, 0, 4);
    h += 4;
    char *frame = malloc(h + n);
    memcpy(frame, hdr, h);
    memcpy(frame + h, text, n);
    send_all(fd, frame, h + n);
    free(frame);
}

static void send_pong(int fd, const unsigned char *data, size_t n)
{
    char frame[6 + 125];
    frame[0] = (char)0x8A;
    frame[1] = (char)(0x80 | n);
    memset(frame + 2, 0, 4);
    memcpy(frame + 6, data, n);
    send_all(fd, frame, 6 + n);
}

static void open_one(int i)
{
    conn_t *c = &conns[i];
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (c->fd < 0) {
        die("socket");
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, host, &sa.sin_addr);
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) < 0 && errno != EINPROGRESS) {
        die("connect");
    }
    c->state = ST_CONNECTING;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev);
}

static msg_t *find_msg(const char *text, size_t n)
{
    for (int i = nmsgs - 1; i >= 0; i--) {
        if (strlen(msgs[i].text) == n && memcmp(msgs[i].text, text, n) == 0) {
            return &msgs[i];
        }
    }
    if (nmsgs == capmsgs) {
        capmsgs = capmsgs ? capmsgs * 2 : 64;
        msgs = realloc(msgs, capmsgs * sizeof(msg_t));
    }
    msg_t *m = &msgs[nmsgs++];
    memset(m, 0, sizeof *m);
    memcpy(m->text, text, n < sizeof m->text - 1 ? n : sizeof m->text - 1);
    m->times = malloc(sizeof(double) * nconns);
    return m;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void on_message(conn_t *c, const char *data, size_t n, double t)
{
    if (c->state == ST_INIT) {
        if (memmem(data, n, "connection_ack", 14) == NULL) {
            fprintf(stderr, "ws_subscriber: expected connection_ack, got %.*s\n", (int)n, data);
            exit(1);
        }
        char sub[4096];
        snprintf(sub, sizeof sub, "{\"id\":\"1\",\"type\":\"subscribe\",\"payload\":{\"query\":\"%s\"}}", query);
        send_text(c->fd, sub);
        c->state = ST_SUBSCRIBED;
        if (++ready_count == nconns) {
            printf("ready\n");
            fflush(stdout);
        }
        return;
    }
    if (memmem(data, n, "\"type\":\"ping\"", 13) != NULL) {
        send_text(c->fd, "{\"type\":\"pong\"}");
        return;
    }
    const char *key = memmem(data, n, "\"text\":\"", 8);
    if (key == NULL) {
        if (memmem(data, n, "\"type\":\"next\"", 13) == NULL) {
            fprintf(stderr, "ws_subscriber: unexpected message %.*s\n", (int)(n > 300 ? 300 : n), data);
            exit(1);
        }
        return;
    }
    key += 8;
    const char *end = memchr(key, '"', (size_t)(data + n - key));
    if (end == NULL) {
        return;
    }
    msg_t *m = find_msg(key, (size_t)(end - key));
    m->times[m->count++] = t;
    if (m->count == nconns) {
        qsort(m->times, (size_t)m->count, sizeof(double), cmp_double);
        int p50 = (int)(0.50 * m->count), p99 = (int)(0.99 * m->count);
        printf("{\"text\":\"%s\",\"count\":%d,\"t_first\":%.6f,\"t_p50\":%.6f,\"t_p99\":%.6f,\"t_last\":%.6f}\n",
               m->text, m->count, m->times[0], m->times[p50 < m->count ? p50 : m->count - 1],
               m->times[p99 < m->count ? p99 : m->count - 1], m->times[m->count - 1]);
        fflush(stdout);
        free(m->times);
        *m = msgs[--nmsgs];
    }
}

/* Frames from the server: never masked, never fragmented here, no compression. */
static void on_frames(conn_t *c, double t)
{
    size_t off = 0;
    while (c->len - off >= 2) {
        unsigned char *p = (unsigned char *)c->buf + off;
        int opcode = p[0] & 0x0F;
        uint64_t n = p[1] & 0x7F;
        size_t h = 2;
        if (n == 126) {
            if (c->len - off < 4) break;
            n = ((uint64_t)p[2] << 8) | p[3];
            h = 4;
        } else if (n == 127) {
            if (c->len - off < 10) break;
            n = 0;
            for (int i = 0; i < 8; i++) n = (n << 8) | p[2 + i];
            h = 10;
        }
        if (c->len - off < h + n) break;
        if (opcode == 1) {
            on_message(c, (char *)p + h, (size_t)n, t);
        } else if (opcode == 9) {
            send_pong(c->fd, p + h, (size_t)n);
        } else if (opcode == 8) {
            unsigned code = n >= 2 ? (unsigned)(p[h] << 8 | p[h + 1]) : 0;
            fprintf(stderr, "ws_subscriber: the server closed a connection (code %u: %.*s)\n", code,
                    n > 2 ? (int)(n - 2) : 0, (char *)p + h + 2);
            exit(1);
        }
        off += h + (size_t)n;
    }
    memmove(c->buf, c->buf + off, c->len - off);
    c->len -= off;
}

static void on_readable(conn_t *c)
{
    for (;;) {
        if (c->cap - c->len < 65536) {
            c->cap = c->cap * 2 + 65536;
            c->buf = realloc(c->buf, c->cap);
        }
        size_t avail = c->cap - c->len;
        ssize_t r = recv(c->fd, c->buf + c->len, avail, 0);
        if (r < 0) {
            if (errno == EAGAIN) return;
            if (errno == EINTR) continue;
            die("recv");
        }
        if (r == 0) {
            fprintf(stderr, "ws_subscriber: the server closed a connection (EOF)\n");
            exit(1);
        }
        c->len += (size_t)r;
        double t = now();
        if (c->state == ST_HANDSHAKE) {
            char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
            if (end == NULL) continue;
            if (strncmp(c->buf, "HTTP/1.1 101", 12) != 0) {
                fprintf(stderr, "ws_subscriber: handshake refused: %.*s\n", (int)(end - c->buf), c->buf);
                exit(1);
            }
            size_t hl = (size_t)(end + 4 - c->buf);
            memmove(c->buf, c->buf + hl, c->len - hl);
            c->len -= hl;
            c->state = ST_INIT;
            send_text(c->fd, "{\"type\":\"connection_init\",\"payload\":{}}");
            if (opened < nconns) open_one(opened++); /* one more handshake in flight */
        }
        on_frames(c, t);
        if ((size_t)r < avail) return; /* a short read drained the socket */
    }
}

static void on_writable(conn_t *c)
{
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) {
        errno = err;
        die("connect");
    }
    char req[1024];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                     "Sec-WebSocket-Protocol: graphql-transport-ws\r\n\r\n",
                     path, host, port);
    send_all(c->fd, req, (size_t)n);
    c->state = ST_HANDSHAKE;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: ws_subscriber HOST PORT PATH CONNS QUERY\n");
        return 2;
    }
    host = argv[1];
    port = atoi(argv[2]);
    path = argv[3];
    nconns = atoi(argv[4]);
    query = argv[5];
    epfd = epoll_create1(0);
    conns = calloc((size_t)nconns, sizeof(conn_t));
    struct epoll_event sev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(epfd, EPOLL_CTL_ADD, 0, &sev);
    int inflight = nconns < 64 ? nconns : 64; /* handshakes in flight at once */
    for (opened = 0; opened < inflight; opened++) {
        open_one(opened);
    }
    struct epoll_event evs[512];
    for (;;) {
        int k = epoll_wait(epfd, evs, 512, -1);
        if (k < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        for (int i = 0; i < k; i++) {
            conn_t *c = evs[i].data.ptr;
            if (c == NULL) {
                char line[256];
                if (fgets(line, sizeof line, stdin) == NULL || strncmp(line, "stop", 4) == 0) {
                    return 0;
                }
                continue;
            }
            if (c->state == ST_CONNECTING && (evs[i].events & (EPOLLOUT | EPOLLERR))) {
                on_writable(c);
            } else if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
                on_readable(c);
            }
        }
    }
}
