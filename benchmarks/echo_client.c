/* echo_client.c: the load generator of benchmarks/bench_net.py's TCP echo workloads.
 * Keeps one message of SIZE bytes in flight on each of CONNS connections (epoll, non-blocking)
 * and prints {"count", "seconds", "total"} as JSON: messages echoed back per measured window.
 * It is in C so that the client costs far less CPU per message than any server under test;
 * bench_net.py compiles it with cc on first use and falls back to a Python client without one.
 * usage: echo_client PORT SIZE CONNS DURATION_S WARMUP_S */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

typedef struct {
    int fd;
    size_t sent;
    size_t left;
} conn_t;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int epfd;
static char *payload;
static size_t size;

static void want(conn_t *c, unsigned events) {
    struct epoll_event ev = {.events = events, .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

/* Send what the socket takes; wait for EPOLLOUT only when it is full. */
static int send_more(conn_t *c) {
    while (c->sent < size) {
        ssize_t n = send(c->fd, payload + c->sent, size - c->sent, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                want(c, EPOLLIN | EPOLLOUT);
                return 0;
            }
            if (errno == EINTR) continue;
            perror("send");
            return -1;
        }
        c->sent += (size_t)n;
    }
    want(c, EPOLLIN);
    return 0;
}

static int start_message(conn_t *c) {
    c->sent = 0;
    c->left = size;
    return send_more(c);
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: %s PORT SIZE CONNS DURATION WARMUP\n", argv[0]);
        return 2;
    }
    int port = atoi(argv[1]);
    size = (size_t)atol(argv[2]);
    int nconns = atoi(argv[3]);
    double duration = atof(argv[4]), warmup = atof(argv[5]);
    payload = malloc(size);
    size_t rbufsize = size > 65536 ? size : 65536;
    char *rbuf = malloc(rbufsize);
    conn_t *conns = calloc((size_t)nconns, sizeof(conn_t));
    if (!payload || !rbuf || !conns) return 1;
    memset(payload, 'x', size);
    epfd = epoll_create1(0);

    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
    for (int i = 0; i < nconns; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        int one = 1;
        if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
            perror("connect");
            return 1;
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0) {
            perror("fcntl");
            return 1;
        }
        conns[i].fd = fd;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &conns[i]};
        epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
    }
    for (int i = 0; i < nconns; i++)
        if (start_message(&conns[i]) < 0) return 1;

    struct epoll_event events[256];
    double t_start = now(), t_measure = t_start + warmup, t_end = t_measure + duration;
    long count = 0, total = 0;
    int counting = 0;
    double t = t_start;
    while (t < t_end) {
        int n = epoll_wait(epfd, events, 256, 500);
        if (n < 0 && errno != EINTR) {
            perror("epoll_wait");
            return 1;
        }
        for (int i = 0; i < n; i++) {
            conn_t *c = events[i].data.ptr;
            if (events[i].events & EPOLLOUT && send_more(c) < 0) return 1;
            if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                ssize_t r = recv(c->fd, rbuf, rbufsize, 0);
                if (r < 0) {
                    if (errno == EAGAIN || errno == EINTR) continue;
                    perror("recv");
                    return 1;
                }
                if (r == 0) {
                    fprintf(stderr, "server closed the connection\n");
                    return 1;
                }
                if ((size_t)r >= c->left) {
                    total++;
                    if (counting) count++;
                    if (start_message(c) < 0) return 1;
                } else {
                    c->left -= (size_t)r;
                }
            }
        }
        t = now();
        if (!counting && t >= t_measure) {
            counting = 1;
            count = 0;
            t_measure = t;
        }
    }
    printf("{\"count\": %ld, \"seconds\": %.6f, \"total\": %ld}\n", count, now() - t_measure, total);
    for (int i = 0; i < nconns; i++) close(conns[i].fd);
    return 0;
}
