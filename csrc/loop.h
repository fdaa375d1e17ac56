/* loop.h: the Loop and Handle types as other C files see them. The loop owns a uv_loop_t,
 * a ring buffer of ready handles and a binary heap of timers; transports (stream.c, ...)
 * need uvc_loop_acquire() at the top of every libuv callback because the loop releases the
 * GIL while it blocks in the poll phase. */
#ifndef UVCORE_LOOP_H
#define UVCORE_LOOP_H

#include "uvcore.h"

/* Arguments of up to this many are stored in the handle itself; more go in a tuple. */
#define UVC_HANDLE_INLINE_ARGS 3

typedef struct UvcHandle {
    PyObject_HEAD
    PyObject *callback;
    PyObject **argv;         /* nargs strong references: inline_args or argtuple's items */
    Py_ssize_t nargs;
    PyObject *argtuple;      /* only for more than UVC_HANDLE_INLINE_ARGS arguments */
    PyObject *inline_args[UVC_HANDLE_INLINE_ARGS];
    PyObject *context;       /* contextvars.Context */
    PyObject *loop;
    PyObject *source_traceback; /* list from traceback.extract_stack in debug mode, or NULL */
    PyObject *weakreflist;
    uvc_state *st;           /* the module state: the freelist lives there */
    int cancelled;
    int own_context;         /* context is our private copy (see handle.c on GC tracking) */
    /* TimerHandle only */
    double when;
    unsigned long long seq;  /* FIFO among timers with the same deadline */
    int scheduled;           /* in the loop's timer heap */
} UvcHandle;

typedef struct UvcLoop {
    PyObject_HEAD
    uvc_state *st;
    PyObject *module;
    uv_loop_t *uv;
    uv_timer_t *timer;        /* armed to the earliest TimerHandle deadline */
    uv_async_t *wakeup;       /* call_soon_threadsafe and stop() from other threads */
    uv_prepare_t *prepare;    /* releases the GIL just before a blocking poll */
    uv_check_t *check;        /* takes the GIL back right after the poll */
    PyThreadState *released;  /* non-NULL while the GIL is released by the loop */
    unsigned long io_callbacks; /* libuv callbacks that reached Python (uvc_loop_acquire) */

    UvcHandle **ready;        /* ring buffer of strong references */
    Py_ssize_t ready_head, ready_len, ready_cap;

    UvcHandle **timers;       /* binary min-heap on (when, seq), strong references */
    Py_ssize_t timers_len, timers_cap, timers_cancelled;
    unsigned long long timer_seq;

    PyObject *pollers;        /* dict fd -> UvcPoller capsule-ish object (poll.c) */
    PyObject *pollers_started; /* list of pollers whose fd libuv adds to epoll at the next poll */
    PyObject *task_factory;
    PyObject *pending_exc;    /* BaseException raised inside a libuv callback */
    PyObject *signal_wakeup;  /* Python callable fed with bytes from the signal wakeup fd */
    PyObject *weakreflist;
    PyObject *dict;

    struct UvcDnsRequest *dns_pending; /* dns.c: lookups in flight, cancelled by close() */
    struct UvcFanoutSink *fanout_dirty; /* wsfanout.c: sinks holding frames (strong refs),
                                         * written at the end of the iteration */
    uv_poll_t *sigpoll;       /* reads the signal.set_wakeup_fd socketpair */
    int sig_rfd;
    int sig_started;          /* sigpoll started since the last poll: check sig_rfd first */
    dev_t sig_dev;            /* the file sig_rfd was when the poll started */
    ino_t sig_ino;

    unsigned long thread_id;  /* thread running the loop, 0 when not running */
    int running, stopping, closed, debug, blocking;
    int timed;                /* time ready callbacks for telemetry (loop_metrics.c) */
    int idle_time;            /* libuv's idle-time accounting is on (loop_metrics.c) */
    double slow_callback_duration;
    /* Counted always (one increment each), read by loop_metrics.c for telemetry. */
    unsigned long long iterations, callbacks_run;
} UvcLoop;

/* Take the GIL back if the loop released it for a blocking poll. Every libuv callback that
 * touches Python objects calls this first. */
static inline void uvc_loop_acquire(UvcLoop *loop)
{
    loop->io_callbacks++;
    if (loop->released != NULL) {
        PyThreadState *ts = loop->released;
        loop->released = NULL;
        PyEval_RestoreThread(ts);
    }
}

/* A BaseException that is not an Exception (KeyboardInterrupt, SystemExit) raised inside a
 * libuv callback: stash it and stop uv_run so run_forever re-raises it. Other exceptions go
 * to the loop's exception handler with `message`. Consumes the current exception. */
void uvc_loop_handle_callback_error(UvcLoop *loop, const char *message, PyObject *extra_key,
                                    PyObject *extra_value);
/* call_exception_handler(context) on the loop; swallows (and reports) its errors. */
void uvc_loop_report(PyObject *loop, PyObject *context);
int uvc_loop_check_closed(UvcLoop *loop);
/* Queue a handle to run in the next iteration; steals nothing (increfs). */
int uvc_loop_push_ready(UvcLoop *loop, UvcHandle *h);
double uvc_loop_time(void);
/* A TimerHandle in the loop's heap was cancelled (handle.c). */
void uvc_loop_timer_cancelled(UvcLoop *loop, UvcHandle *h);

/* loop_metrics.c: Loop._metrics(), Loop._set_telemetry(timed, idle_time) */
PyObject *uvc_loop_metrics(UvcLoop *loop, PyObject *unused);
PyObject *uvc_loop_set_telemetry(UvcLoop *loop, PyObject *args);

/* handle.c */
/* A new handle, tracked by the GC like any object. */
UvcHandle *uvc_handle_new(uvc_state *st, PyTypeObject *tp, PyObject *loop, PyObject *callback,
                          PyObject *const *args, Py_ssize_t nargs, PyObject *context);
/* A new handle for the loop's ready queue or timer heap, NOT tracked by the GC: the queue
 * reports its references (uvc_handle_traverse_queued) and uvc_handle_release() tracks it
 * when it leaves the queue while something else still holds it. */
UvcHandle *uvc_handle_new_queued(uvc_state *st, PyTypeObject *tp, PyObject *loop,
                                 PyObject *callback, PyObject *const *args, Py_ssize_t nargs,
                                 PyObject *context);
/* The queue drops its reference to h (see uvc_handle_new_queued). */
void uvc_handle_release(UvcHandle *h);
/* Called by the loop's tp_traverse for each queued handle. */
int uvc_handle_traverse_queued(UvcHandle *h, visitproc visit, void *arg);
/* The arguments as a new tuple. */
PyObject *uvc_handle_args_tuple(UvcHandle *h);
/* Run a handle's callback in its context: 0 done (errors went to the handler), -1 when a
 * KeyboardInterrupt/SystemExit must propagate (exception set). */
int uvc_handle_run(UvcHandle *h);
extern PyType_Spec uvc_handle_spec, uvc_timer_handle_spec;

/* poll.c */
extern PyType_Spec uvc_poller_spec;
PyObject *uvc_poll_add(UvcLoop *loop, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
                       int writer);
PyObject *uvc_poll_remove(UvcLoop *loop, PyObject *fd, int writer);
void uvc_poll_close_all(UvcLoop *loop);
/* Before a transport or the signal wake-up takes fd (a new file): drop the poller a closed
 * file left on that number. 0, or -1 with an exception. */
int uvc_poll_release_fd(UvcLoop *loop, int fd);
/* Right before libuv's poll: drop the pollers started since the last poll whose fd was
 * closed (libuv aborts on a closed fd) or reused. Reports its own errors. */
void uvc_poll_check_started(UvcLoop *loop);

/* fdcheck.c: the file an fd refers to (fstat); -1 with errno when it cannot be read. */
int uvc_fd_identity(int fd, dev_t *dev, ino_t *ino);
/* 1 when fd is closed or now refers to another file than (dev, ino). */
int uvc_fd_is_stale(int fd, dev_t dev, ino_t ino);
/* Make libuv let go of a watcher without touching its fd again (no epoll_ctl, no close):
 * out of the watcher and pending queues and the fd table, fd set to -1. */
void uvc_fdcheck_forget(uv_loop_t *uv, uv__io_t *w);
/* The watcher in libuv's fd table for fd, or NULL. */
uv__io_t *uvc_fdcheck_slot(uv_loop_t *uv, int fd);
/* The watchers libuv hands to epoll_ctl at its next poll: the first after `after` (NULL:
 * the first), or NULL at the end. */
uv__io_t *uvc_fdcheck_next_queued(uv_loop_t *uv, uv__io_t *after);

/* stream.c: right before libuv's poll, a transport whose socket was closed under it (or
 * whose number a new file took) loses its fd to libuv and its connection (EBADF). */
void uvc_stream_check_queued(UvcLoop *loop);
/* The same for the transport holding fd's slot, before a new owner takes the number. */
void uvc_stream_release_fd(UvcLoop *loop, int fd);
/* udp.c: the same two for datagram transports. */
void uvc_udp_check_queued(UvcLoop *loop);
void uvc_udp_release_fd(UvcLoop *loop, int fd);

/* stream.c: close the transports and servers still open on this loop; loop.c
 * calls it before closing its uv loop so their handles close cleanly. */
void uvc_stream_close_all(UvcLoop *loop);
PyObject *uvc_stream_find_fd(UvcLoop *loop, int fd); /* stream.c; borrowed or NULL */

/* dns.c: withdraw the queued getaddrinfo/getnameinfo requests (loop.close()). */
void uvc_dns_cancel_all(UvcLoop *loop);

#endif
