/* stream.c: StreamTransport, the asyncio.Transport shared by TCP and Unix sockets and pipes
 * (connect_read_pipe/connect_write_pipe, subprocess stdio). Reads go straight from libuv's read callback to protocol.data_received (or to a
 * BufferedProtocol's buffer); writes try uv_try_write first and queue the rest as one uv_write
 * of several buffers. tcp.c/unix.c open the handle; server.c accepts into one; the Python
 * layer (python/uvcore/_net.py) creates sockets, resolves names and does TLS. */
#include "stream.h"
#include "wsfanout.h"

#include <pythread.h>
#include <sys/socket.h>
#include <unistd.h>

#define UVC_READ_BUFFER_SIZE (256 * 1024)
#define UVC_LOG_THRESHOLD_FOR_CONNLOST_WRITES 5
/* A read at least this big makes the next read go straight into a new bytes object of
 * UVC_DIRECT_READ_SIZE (see stream_on_alloc). That size stays below glibc's default mmap
 * threshold (128 KiB), so the object comes from the heap and shrinks in place: a bigger one
 * would be a fresh mmap, with page faults, for every read. */
#define UVC_DIRECT_READ_MIN (32 * 1024)
#define UVC_DIRECT_READ_SIZE (120 * 1024)

struct UvcStream {
    PyObject_HEAD
    PyObject *extra;          /* asyncio.BaseTransport's `_extra` slot: a dict, or NULL */
    uvc_state *st;
    PyObject *module;
    UvcLoop *loop;
    PyObject *protocol;       /* NULL once connection_lost ran */
    PyObject *context;        /* contextvars.Context the protocol callbacks run in */
    PyObject *server;         /* uvcore Server that accepted us (its _attach/_detach), or NULL */
    PyObject *sock;           /* socket.socket on our fd, or NULL; detached before uv_close.
                               * For pipes: the owner of the pipe object, closed instead */
    PyObject *empty_waiter;   /* Future for "write queue empty" while sendfile runs, or NULL */
    PyObject *alloc_exc;      /* get_buffer() failed in the alloc callback: raised on read */
    PyObject *rbytes;         /* bytes the next read goes into directly, between the alloc
                               * and read callbacks only, or NULL */
    Py_ssize_t last_read;     /* size of the last successful read */
    PyObject *weakreflist;
    PyObject *dict;           /* instance attributes: see uvc_instance_dict_init */
    dev_t dev;                /* the file our fd was at start: user code may close the */
    ino_t ino;                /* socket under us and a new file reuse the number */
    UvcFanoutSink *fanout;    /* the connection's WebSocket fan-out queue (borrowed: the sink
                               * holds us and clears this when it detaches), or NULL */
    UvcLink link;
    Py_buffer rbuf;           /* a BufferedProtocol's buffer between alloc and read callbacks */
    Py_ssize_t high, low;     /* write buffer limits */
    Py_ssize_t writes;        /* uv_write requests in flight */
    Py_ssize_t conn_lost;
    struct sockaddr_storage addrs[2]; /* [0] sockname, [1] peername, taken at start (raw:
                                       * converted on request, still there after close) */
    socklen_t addr_lens[2];
    int kind;
    unsigned opened : 1;         /* the handle is initialised: it holds a reference to us */
    unsigned handle_closing : 1; /* uv_close was called */
    unsigned started : 1;        /* connection_made ran: reading may start */
    unsigned has_identity : 1;   /* dev/ino hold the file of our fd */
    unsigned fd_lost : 1;        /* the fd was closed under us: libuv let go of it */
    unsigned reading : 1;        /* uv_read_start is in effect */
    unsigned closing : 1;        /* close() or a fatal error */
    unsigned paused : 1;         /* pause_reading() */
    unsigned eof_received : 1;
    unsigned eof : 1;            /* write_eof() called */
    unsigned buffered : 1;       /* the protocol is a BufferedProtocol */
    unsigned rbuf_held : 1;
    unsigned protocol_paused : 1; /* pause_writing() was called */
    unsigned pipe_mode : 2;      /* UVC_PIPE_READ/UVC_PIPE_WRITE for pipe transports, else 0 */
    UvcStreamHandle uv;
};

/* A pipe transport is one-way, as asyncio's: a read pipe closes after EOF whatever
 * eof_received() returns, a write pipe never reads and its write_eof() is close(). */
enum { UVC_PIPE_READ = 1, UVC_PIPE_WRITE = 2 };

typedef struct {
    uv_write_t req;
    Py_ssize_t nobjs;
    PyObject *objs[1];        /* strong references to the buffers' owners (more follow) */
} UvcWriteReq;

/* ---- registry of live handles ------------------------------------------------------------ */

void uvc_link_add(uvc_state *st, UvcLink *link, UvcLoop *loop, void (*close)(UvcLink *))
{
    UvcLink *head = st->stream_extra;
    link->loop = loop;
    link->close = close;
    link->prev = NULL;
    link->next = head;
    if (head != NULL) {
        head->prev = link;
    }
    st->stream_extra = link;
}

void uvc_link_remove(uvc_state *st, UvcLink *link)
{
    if (link->close == NULL) {
        return; /* not linked */
    }
    if (link->prev != NULL) {
        link->prev->next = link->next;
    } else {
        st->stream_extra = link->next;
    }
    if (link->next != NULL) {
        link->next->prev = link->prev;
    }
    link->prev = link->next = NULL;
    link->close = NULL;
}

/* Called by loop.c before it closes its uv loop: close every transport and listener still
 * open on it so their close callbacks run (releasing them) while the loop still exists. */
void uvc_stream_close_all(UvcLoop *loop)
{
    UvcLink *link = loop->st->stream_extra;
    while (link != NULL) {
        UvcLink *next = link->next;
        if (link->loop == loop) {
            link->close(link);
        }
        link = next;
    }
}

static void stream_link_close(UvcLink *link);

/* The open stream transport of this loop whose fd is fd, or NULL (borrowed). For
 * remove_reader/remove_writer, which asyncio refuses on a transport's fd; a walk over the
 * registry, done only when the fd has no watcher of the loop's own. */
PyObject *uvc_stream_find_fd(UvcLoop *loop, int fd)
{
    for (UvcLink *link = loop->st->stream_extra; link != NULL; link = link->next) {
        if (link->loop != loop || link->close != stream_link_close) {
            continue;
        }
        UvcStream *t = (UvcStream *)((char *)link - offsetof(UvcStream, link));
        uv_os_fd_t tfd;
        if (t->opened && !t->handle_closing && uv_fileno(&t->uv.handle, &tfd) == 0 && tfd == fd) {
            return (PyObject *)t;
        }
    }
    return NULL;
}

/* ---- small helpers ----------------------------------------------------------------------- */

PyObject *uvc_oserror_from_uv(int err)
{
    PyObject *args = Py_BuildValue("(is)", -err, uv_strerror(err));
    if (args == NULL) {
        return NULL;
    }
    PyObject *exc = PyObject_Call(PyExc_OSError, args, NULL); /* picks the errno subclass */
    Py_DECREF(args);
    return exc;
}

void uvc_set_uv_error(int err)
{
    PyObject *exc = uvc_oserror_from_uv(err);
    if (exc != NULL) {
        PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
        Py_DECREF(exc);
    }
}

PyObject *uvc_sockaddr_to_py(const struct sockaddr *sa, socklen_t len)
{
    if (sa->sa_family == AF_INET || sa->sa_family == AF_INET6) {
        return uvc_inet_addr_to_py(sa);
    }
    if (sa->sa_family == AF_UNIX) {
        return uvc_unix_addr_to_py(sa, len);
    }
    Py_RETURN_NONE;
}

uv_stream_t *uvc_stream_uv(UvcStream *t) { return &t->uv.stream; }

int uvc_stream_check_thread(UvcLoop *loop)
{
    unsigned long tid = loop->thread_id;
    if (tid != 0 && tid != PyThread_get_thread_ident()) {
        PyErr_SetString(PyExc_RuntimeError,
                        "Non-thread-safe operation invoked on an event loop other than the "
                        "current one");
        return -1;
    }
    return 0;
}

static int stream_fd(UvcStream *t)
{
    uv_os_fd_t fd;
    if (!t->opened || t->handle_closing || uv_fileno(&t->uv.handle, &fd) < 0) {
        return -1;
    }
    return fd;
}

/* Call protocol.<name>(arg) inside the transport's context. New reference or NULL. */
static PyObject *stream_call_protocol(UvcStream *t, PyObject *name, PyObject *arg)
{
    PyObject *proto = t->protocol;
    if (proto == NULL) {
        Py_RETURN_NONE;
    }
    Py_INCREF(proto);
    int entered = t->context != NULL && PyContext_Enter(t->context) == 0;
    if (!entered) {
        PyErr_Clear(); /* already entered (a callback inside one of ours): run in place */
    }
    PyObject *args[2] = {proto, arg};
    PyObject *res = PyObject_VectorcallMethod(name, args, arg != NULL ? 2 : 1, NULL);
    if (entered) {
        PyObject *exc = PyErr_GetRaisedException_compat();
        if (PyContext_Exit(t->context) < 0) {
            PyErr_WriteUnraisable(t->context);
        }
        PyErr_SetRaisedException_compat(exc);
    }
    Py_DECREF(proto);
    return res;
}

static PyObject *stream_context_dict(UvcStream *t, const char *message, PyObject *exc)
{
    return Py_BuildValue("{s:s,s:O,s:O,s:O}", "message", message, "exception", exc, "transport",
                         (PyObject *)t, "protocol", t->protocol ? t->protocol : Py_None);
}

/* Report an error (a dict like asyncio's) to the loop's exception handler. Consumes exc. */
static void stream_report(UvcStream *t, const char *message, PyObject *exc)
{
    PyObject *ctx = stream_context_dict(t, message, exc);
    if (ctx != NULL) {
        uvc_loop_report((PyObject *)t->loop, ctx);
        Py_DECREF(ctx);
    } else {
        PyErr_WriteUnraisable((PyObject *)t);
    }
    Py_DECREF(exc);
}

/* logging.getLogger("asyncio").<level>(fmt, t, message, exc_info=exc); errors swallowed. */
/* logger.warning(line) on the "asyncio" logger, as asyncio logs writes to a lost connection */
static void stream_log_line(const char *line)
{
    PyObject *saved = PyErr_GetRaisedException_compat();
    PyObject *logging = PyImport_ImportModule("logging");
    PyObject *logger = logging ? PyObject_CallMethod(logging, "getLogger", "s", "asyncio") : NULL;
    PyObject *r = logger ? PyObject_CallMethod(logger, "warning", "s", line) : NULL;
    if (r == NULL) {
        PyErr_Clear();
    }
    Py_XDECREF(r);
    Py_XDECREF(logger);
    Py_XDECREF(logging);
    PyErr_SetRaisedException_compat(saved);
}

static void stream_log(UvcStream *t, const char *level, const char *fmt, const char *message,
                       PyObject *exc)
{
    PyObject *saved = PyErr_GetRaisedException_compat();
    PyObject *logging = PyImport_ImportModule("logging");
    PyObject *logger = logging ? PyObject_CallMethod(logging, "getLogger", "s", "asyncio") : NULL;
    PyObject *meth = logger ? PyObject_GetAttrString(logger, level) : NULL;
    PyObject *args = message ? Py_BuildValue("(sOs)", fmt, (PyObject *)t, message)
                             : Py_BuildValue("(sO)", fmt, (PyObject *)t);
    PyObject *kw = exc ? Py_BuildValue("{s:O}", "exc_info", exc) : NULL;
    PyObject *r = (meth && args && (kw || !exc)) ? PyObject_Call(meth, args, kw) : NULL;
    if (r == NULL) {
        PyErr_Clear();
    }
    Py_XDECREF(r);
    Py_XDECREF(kw);
    Py_XDECREF(args);
    Py_XDECREF(meth);
    Py_XDECREF(logger);
    Py_XDECREF(logging);
    PyErr_SetRaisedException_compat(saved);
}

/* Resolve the sendfile empty-write-queue waiter (exc NULL: with None). */
static void stream_wake_empty_waiter(UvcStream *t, PyObject *exc)
{
    PyObject *fut = t->empty_waiter;
    if (fut == NULL) {
        return;
    }
    PyObject *done = PyObject_CallMethod(fut, "done", NULL);
    int is_done = done ? PyObject_IsTrue(done) : -1;
    Py_XDECREF(done);
    PyObject *r = NULL;
    if (is_done == 0) {
        r = exc ? PyObject_CallMethod(fut, "set_exception", "O", exc)
                : PyObject_CallMethod(fut, "set_result", "O", Py_None);
    }
    if (is_done < 0 || (is_done == 0 && r == NULL)) {
        PyErr_WriteUnraisable(fut);
    }
    Py_XDECREF(r);
}

static void stream_stop_reading(UvcStream *t)
{
    if (t->reading) {
        uv_read_stop(&t->uv.stream);
        t->reading = 0;
    }
}

static void stream_on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void stream_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static int stream_start_reading(UvcStream *t)
{
    if (t->reading || !t->started || t->paused || t->closing || t->eof_received || !t->opened ||
        t->handle_closing || t->pipe_mode == UVC_PIPE_WRITE) {
        return 0;
    }
    int err = uv_read_start(&t->uv.stream, stream_on_alloc, stream_on_read);
    if (err < 0) {
        uvc_set_uv_error(err);
        return -1;
    }
    t->reading = 1;
    return 0;
}

/* ---- closing ------------------------------------------------------------------------------
 * A libuv handle is owned by its transport object: when the handle is initialised the
 * transport takes a reference to itself (uvc_stream_set_opened), and only uv_close's callback
 * (stream_on_close) gives it back. So the memory libuv uses (the handle is embedded in the
 * object) stays valid until libuv is done with it, whatever Python drops meanwhile. */

static void stream_on_close(uv_handle_t *h)
{
    UvcStream *t = h->data;
    uvc_loop_acquire(t->loop);
    if (t->fanout != NULL) {
        uvc_fanout_transport_closing(t->fanout, UVC_FANOUT_CLOSE_SILENT);
    }
    uvc_link_remove(t->st, &t->link);
    Py_DECREF(t);
}

void uvc_detach_socket(PyObject *sock)
{
    if (sock == NULL) {
        return;
    }
    /* libuv closes the fd; the socket object must not close it again (or a reused number). */
    PyObject *exc = PyErr_GetRaisedException_compat();
    PyObject *r = PyObject_CallMethod(sock, "detach", NULL);
    if (r == NULL) {
        PyErr_Clear();
    }
    Py_XDECREF(r);
    PyErr_SetRaisedException_compat(exc);
}

/* The pipe object (and the Python-side watcher of a write pipe's reader) is closed when the
 * handle is, as asyncio closes the pipe in connection_lost. */
static void stream_close_pipe_owner(UvcStream *t)
{
    PyObject *owner = t->sock;
    t->sock = NULL;
    if (owner == NULL) {
        return;
    }
    PyObject *exc = PyErr_GetRaisedException_compat();
    PyObject *r = PyObject_CallMethod(owner, "close", NULL);
    if (r == NULL) {
        PyErr_WriteUnraisable(owner);
    }
    Py_XDECREF(r);
    Py_DECREF(owner);
    PyErr_SetRaisedException_compat(exc);
}

/* libuv's read/write callback of every stream (uv__stream_io, internal): how a watcher in
 * libuv's queue is recognised as a stream's. A process-wide constant, set at the first open. */
static uv__io_cb stream_io_cb;

/* 1 when our fd was closed under us: the number is closed or holds another file, or (with
 * check_sock, off on the per-poll path to keep it to one fstat) the socket object we were
 * given was closed: its number may since hold a dup of the same file, which fstat cannot
 * tell from ours. */
static int stream_fd_is_stale(UvcStream *t, int check_sock)
{
    int fd = t->uv.stream.io_watcher.fd;
    if (!t->has_identity || t->fd_lost || fd < 0) {
        return 0;
    }
    if (uvc_fd_is_stale(fd, t->dev, t->ino)) {
        return 1;
    }
    if (!check_sock || t->pipe_mode || t->sock == NULL) {
        return 0;
    }
    PyObject *exc = PyErr_GetRaisedException_compat();
    PyObject *r = PyObject_CallMethod(t->sock, "fileno", NULL);
    long sockfd = r != NULL ? PyLong_AsLong(r) : fd;
    Py_XDECREF(r);
    PyErr_Clear();
    PyErr_SetRaisedException_compat(exc);
    return sockfd != fd;
}

static void stream_fatal_uv_error(UvcStream *t, int err, const char *message);

/* Our fd was closed under us (or its number now holds another file): libuv must not touch
 * the number again (epoll_ctl would abort on it, close() would close the new owner's file),
 * and the connection is lost with EBADF, as asyncio's transport loses it when its socket
 * calls fail. The socket object is detached so that it cannot close the number either. */
static void stream_lose_fd(UvcStream *t)
{
    uvc_fdcheck_forget(t->loop->uv, &t->uv.stream.io_watcher);
    t->fd_lost = 1;
    t->reading = 0;
    if (!t->pipe_mode) {
        uvc_detach_socket(t->sock);
    }
    /* Also when close() already started: it waits for queued writes, which can never go out
     * on a forgotten fd, so only this ends the connection (asyncio's write error during a
     * close is fatal the same way). */
    if (!t->conn_lost) {
        stream_fatal_uv_error(t, UV_EBADF, t->pipe_mode ? "Fatal error on pipe transport"
                                                        : "Fatal error on socket transport");
    }
}

void uvc_stream_check_queued(UvcLoop *loop)
{
    if (stream_io_cb == NULL || loop->uv == NULL) {
        return;
    }
    uv__io_t *w = NULL;
    while ((w = uvc_fdcheck_next_queued(loop->uv, w)) != NULL) {
        if (w->cb != stream_io_cb) {
            continue;
        }
        uv_stream_t *s = (uv_stream_t *)((char *)w - offsetof(uv_stream_t, io_watcher));
        UvcStream *t = s->data;
        if (t != NULL && stream_fd_is_stale(t, 0)) {
            stream_lose_fd(t);
            w = NULL; /* it left the queue: start over */
        }
    }
}

void uvc_stream_release_fd(UvcLoop *loop, int fd)
{
    uv__io_t *w = uvc_fdcheck_slot(loop->uv, fd);
    if (w == NULL || stream_io_cb == NULL || w->cb != stream_io_cb) {
        return;
    }
    uv_stream_t *s = (uv_stream_t *)((char *)w - offsetof(uv_stream_t, io_watcher));
    UvcStream *t = s->data;
    if (t != NULL && stream_fd_is_stale(t, 1)) {
        stream_lose_fd(t);
    }
}

static void stream_close_handle(UvcStream *t)
{
    if (!t->opened || t->handle_closing) {
        return;
    }
    if (stream_fd_is_stale(t, 1)) {
        /* uv_close would close a number that is no longer ours */
        uvc_fdcheck_forget(t->loop->uv, &t->uv.stream.io_watcher);
        t->fd_lost = 1;
    }
    t->handle_closing = 1;
    t->reading = 0;
    if (t->pipe_mode) {
        uv_close(&t->uv.handle, stream_on_close); /* closes our own dup of the pipe's fd */
        stream_close_pipe_owner(t);
        return;
    }
    uvc_detach_socket(t->sock);
    uv_close(&t->uv.handle, stream_on_close);
}

static void stream_link_close(UvcLink *link)
{
    UvcStream *t = (UvcStream *)((char *)link - offsetof(UvcStream, link));
    if (t->fanout != NULL) {
        uvc_fanout_transport_closing(t->fanout, UVC_FANOUT_CLOSE_SILENT);
    }
    t->closing = 1;
    t->conn_lost++;
    stream_close_handle(t);
}

static PyMethodDef stream_lost_def;

/* Schedule protocol.connection_lost(exc) (and then the handle's close) via the loop. */
static int stream_schedule_lost(UvcStream *t, PyObject *exc)
{
    if (t->loop->closed) {
        stream_close_handle(t);
        return 0;
    }
    PyObject *cb = PyCFunction_New(&stream_lost_def, (PyObject *)t);
    if (cb == NULL) {
        return -1;
    }
    PyObject *arg = exc ? exc : Py_None;
    UvcHandle *h = uvc_handle_new_queued(t->st, t->st->HandleType, (PyObject *)t->loop, cb,
                                         &arg, 1, t->context);
    Py_DECREF(cb);
    if (h == NULL) {
        return -1;
    }
    int r = uvc_loop_push_ready(t->loop, h);
    Py_DECREF(h);
    return r;
}

static int stream_force_close(UvcStream *t, PyObject *exc)
{
    if (t->conn_lost) {
        return 0;
    }
    if (t->fanout != NULL) {
        /* before connection_lost is scheduled, so the sink's close callbacks run first */
        uvc_fanout_transport_closing(t->fanout, UVC_FANOUT_CLOSE_DROP);
    }
    if (!t->closing) {
        t->closing = 1;
        stream_stop_reading(t);
    }
    t->conn_lost++;
    stream_wake_empty_waiter(t, exc);
    return stream_schedule_lost(t, exc);
}

/* A fatal error: report it as asyncio does (OSErrors only in debug mode) and close. Consumes
 * the current exception. KeyboardInterrupt/SystemExit stop the loop instead. */
static void stream_fatal_error(UvcStream *t, const char *message)
{
    if (!PyErr_ExceptionMatches(PyExc_Exception)) {
        uvc_loop_handle_callback_error(t->loop, message, NULL, NULL);
        return;
    }
    PyObject *exc = PyErr_GetRaisedException_compat();
    if (stream_force_close(t, exc) < 0) {
        PyErr_WriteUnraisable((PyObject *)t);
    }
    if (PyObject_TypeCheck(exc, (PyTypeObject *)PyExc_OSError)) {
        if (t->loop->debug) {
            stream_log(t, "debug", "%r: %s", message, exc);
        }
        Py_DECREF(exc);
    } else {
        stream_report(t, message, exc);
    }
}

static void stream_fatal_uv_error(UvcStream *t, int err, const char *message)
{
    uvc_set_uv_error(err);
    stream_fatal_error(t, message);
}

static PyObject *stream_close(UvcStream *t, PyObject *unused);

/* ---- reading ----------------------------------------------------------------------------- */

static void stream_on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    UvcStream *t = h->data;
    uvc_loop_acquire(t->loop);
    buf->base = NULL;
    buf->len = 0;
    if (t->conn_lost || t->protocol == NULL) {
        return;
    }
    if (!t->buffered) {
        /* After a big read, expect another: read into a fresh bytes object and shrink it to
         * the size read, saving a copy of up to 120 KiB per read (the data must end up in a
         * bytes object for data_received anyway). Small reads are cheaper to copy than a
         * big allocation is to make and shrink. */
        if (t->last_read >= UVC_DIRECT_READ_MIN) {
            t->rbytes = PyBytes_FromStringAndSize(NULL, UVC_DIRECT_READ_SIZE);
            if (t->rbytes != NULL) {
                buf->base = PyBytes_AS_STRING(t->rbytes);
                buf->len = UVC_DIRECT_READ_SIZE;
                return;
            }
            PyErr_Clear(); /* out of memory: the shared buffer below still works */
        }
        /* One buffer per module: it is only used between here and the bytes copy in
         * stream_on_read, and this thread holds the GIL all that time. */
        buf->base = PyByteArray_AS_STRING(t->st->stream_read_buffer);
        buf->len = UVC_READ_BUFFER_SIZE;
        return;
    }
    /* Errors are kept for stream_on_read (libuv calls it with UV_ENOBUFS for an empty
     * buffer): stopping the read here would leave libuv calling a NULL read callback. */
    PyObject *arg = PyLong_FromLong(-1);
    PyObject *res = arg ? stream_call_protocol(t, t->st->str_get_buffer, arg) : NULL;
    Py_XDECREF(arg);
    if (res == NULL) {
        goto error;
    }
    int r = PyObject_GetBuffer(res, &t->rbuf, PyBUF_WRITABLE);
    Py_DECREF(res);
    if (r < 0) {
        goto error;
    }
    if (t->rbuf.len == 0) {
        PyBuffer_Release(&t->rbuf);
        PyErr_SetString(PyExc_RuntimeError, "get_buffer() returned an empty buffer");
        goto error;
    }
    t->rbuf_held = 1;
    buf->base = t->rbuf.buf;
    buf->len = (size_t)t->rbuf.len;
    return;
error:
    Py_XSETREF(t->alloc_exc, PyErr_GetRaisedException_compat());
}

static void stream_on_eof(UvcStream *t)
{
    stream_stop_reading(t);
    t->eof_received = 1;
    if (t->loop->debug) {
        stream_log(t, "debug", "%r received EOF", NULL, NULL);
    }
    PyObject *res = stream_call_protocol(t, t->st->str_eof_received, NULL);
    int keep_open = res ? PyObject_IsTrue(res) : -1;
    Py_XDECREF(res);
    if (keep_open > 0 && t->pipe_mode) {
        keep_open = 0; /* asyncio's read pipe ignores the answer */
    }
    if (keep_open < 0) {
        stream_fatal_error(t, "Fatal error: protocol.eof_received() call failed.");
        return;
    }
    if (!keep_open) {
        PyObject *r = stream_close(t, NULL);
        if (r == NULL) {
            uvc_loop_handle_callback_error(t->loop, "Error closing a transport", NULL, NULL);
        }
        Py_XDECREF(r);
    }
}

static void stream_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    UvcStream *t = s->data;
    uvc_loop_acquire(t->loop);
    int held = t->rbuf_held;
    if (held) {
        PyBuffer_Release(&t->rbuf);
        t->rbuf_held = 0;
    }
    PyObject *direct = t->rbytes; /* owned here from now on */
    t->rbytes = NULL;
    if (nread > 0) {
        PyObject *res;
        t->last_read = nread;
        if (held) {
            PyObject *n = PyLong_FromSsize_t(nread);
            res = n ? stream_call_protocol(t, t->st->str_buffer_updated, n) : NULL;
            Py_XDECREF(n);
            if (res == NULL) {
                stream_fatal_error(t, "Fatal error: protocol.buffer_updated() call failed.");
                return;
            }
        } else {
            PyObject *data;
            if (direct != NULL) {
                data = direct;
                direct = NULL;
                if (nread < UVC_DIRECT_READ_SIZE && _PyBytes_Resize(&data, nread) < 0) {
                    data = NULL;
                }
            } else {
                data = PyBytes_FromStringAndSize(buf->base, nread);
            }
            res = data ? stream_call_protocol(t, t->st->str_data_received, data) : NULL;
            Py_XDECREF(data);
            if (res == NULL) {
                stream_fatal_error(t, "Fatal error: protocol.data_received() call failed.");
                return;
            }
        }
        Py_DECREF(res);
        return;
    }
    Py_XDECREF(direct); /* nothing was read into it */
    if (nread == UV_ENOBUFS && t->alloc_exc != NULL) {
        PyErr_SetRaisedException_compat(t->alloc_exc);
        t->alloc_exc = NULL;
        stream_fatal_error(t, "Fatal error: protocol.get_buffer() call failed.");
        return;
    }
    if (nread == 0 || nread == UV_ENOBUFS || t->conn_lost) {
        return; /* EAGAIN, or nothing to read into */
    }
    if (nread == UV_EOF) {
        stream_on_eof(t);
        return;
    }
    stream_fatal_uv_error(t, (int)nread,
                          t->pipe_mode ? "Fatal read error on pipe transport" : "Fatal read error on socket transport");
}

/* asyncio's wording, which tells a pipe from a socket */
static const char *stream_write_error_message(UvcStream *t)
{
    return t->pipe_mode ? "Fatal write error on pipe transport" : "Fatal write error on socket transport";
}

/* ---- writing ----------------------------------------------------------------------------- */

/* Called from write() and set_write_buffer_limits(): KeyboardInterrupt/SystemExit raised by
 * pause_writing() propagate to their caller (-1); other errors go to the exception handler. */
/* Bytes not yet sent: libuv's write queue and fan-out frames held for the end of the loop
 * iteration (which get_write_buffer_size and pause_writing see too). */
static size_t stream_queued(UvcStream *t)
{
    size_t n = t->opened ? t->uv.stream.write_queue_size : 0;
    return t->fanout != NULL ? n + uvc_fanout_held_bytes(t->fanout) : n;
}

static int stream_maybe_pause_protocol(UvcStream *t)
{
    Py_ssize_t size = (Py_ssize_t)stream_queued(t);
    if (size <= t->high || t->protocol_paused || t->protocol == NULL) {
        return 0;
    }
    t->protocol_paused = 1;
    PyObject *proto = Py_NewRef(t->protocol);
    PyObject *r = PyObject_CallMethodNoArgs(proto, t->st->str_pause_writing);
    Py_DECREF(proto);
    if (r == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_Exception)) {
            return -1;
        }
        stream_report(t, "protocol.pause_writing() failed", PyErr_GetRaisedException_compat());
    }
    Py_XDECREF(r);
    return 0;
}

static void stream_maybe_resume_protocol(UvcStream *t)
{
    if (!t->protocol_paused || (Py_ssize_t)stream_queued(t) > t->low ||
        t->protocol == NULL) {
        return;
    }
    t->protocol_paused = 0;
    PyObject *r = stream_call_protocol(t, t->st->str_resume_writing, NULL);
    if (r == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_Exception)) {
            uvc_loop_handle_callback_error(t->loop, "protocol.resume_writing() failed", NULL, NULL);
            return;
        }
        stream_report(t, "protocol.resume_writing() failed", PyErr_GetRaisedException_compat());
    }
    Py_XDECREF(r);
}

/* The end of every write request's callback (ours and wsfanout.c's). */
void uvc_stream_write_done(UvcStream *t, int status)
{
    t->writes--;
    if (status == UV_ECANCELED || t->handle_closing) {
        return;
    }
    if (status < 0) {
        stream_fatal_uv_error(t, status, stream_write_error_message(t));
        return;
    }
    if (t->writes == 0 && t->fanout != NULL) {
        uvc_fanout_transport_drained(t->fanout);
    }
    stream_maybe_resume_protocol(t);
    if (t->writes == 0) {
        stream_wake_empty_waiter(t, NULL);
    }
    if (t->writes == 0 && t->closing && !t->conn_lost) {
        t->conn_lost++;
        if (stream_schedule_lost(t, NULL) < 0) {
            uvc_loop_handle_callback_error(t->loop, "Error closing a transport", NULL, NULL);
        }
    }
}

static void stream_on_write(uv_write_t *req, int status)
{
    UvcWriteReq *w = (UvcWriteReq *)req;
    UvcStream *t = req->handle->data;
    uvc_loop_acquire(t->loop);
    for (Py_ssize_t i = 0; i < w->nobjs; i++) {
        Py_DECREF(w->objs[i]);
    }
    PyMem_Free(w);
    uvc_stream_write_done(t, status);
}

UvcLoop *uvc_stream_loop(UvcStream *t) { return t->loop; }
UvcFanoutSink *uvc_stream_get_fanout(UvcStream *t) { return t->fanout; }
void uvc_stream_set_fanout(UvcStream *t, UvcFanoutSink *sink) { t->fanout = sink; }
Py_ssize_t uvc_stream_writes_pending(UvcStream *t) { return t->writes; }
size_t uvc_stream_write_queue_size(UvcStream *t) { return t->opened ? t->uv.stream.write_queue_size : 0; }

int uvc_stream_can_write(UvcStream *t)
{
    return t->opened && !t->handle_closing && !t->conn_lost && !t->closing && !t->eof &&
           t->empty_waiter == NULL;
}

int uvc_stream_try_write(UvcStream *t, uv_buf_t *bufs, unsigned n)
{
    int r = uv_try_write(&t->uv.stream, bufs, n);
    if (r >= 0) {
        return r;
    }
    if (r == UV_EAGAIN || r == UV_ENOSYS) {
        return 0;
    }
    stream_fatal_uv_error(t, r, stream_write_error_message(t));
    return -1;
}

int uvc_stream_write_req(UvcStream *t, uv_write_t *req, uv_buf_t *bufs, unsigned n, uv_write_cb cb)
{
    int err = uv_write(req, &t->uv.stream, bufs, n, cb);
    if (err < 0) {
        stream_fatal_uv_error(t, err, stream_write_error_message(t));
        return -1;
    }
    t->writes++;
    return 0;
}

void uvc_stream_update_flow(UvcStream *t)
{
    if (stream_maybe_pause_protocol(t) < 0) {
        uvc_loop_handle_callback_error(t->loop, "protocol.pause_writing() failed", NULL, NULL);
    }
    stream_maybe_resume_protocol(t);
}

/* Write n bytes-like objects (borrowed). Tries uv_try_write when nothing is queued and
 * queues what is left as one uv_write holding references to the buffers' owners (bytes are
 * kept as they are; other buffers are copied, since their owner could change them). */
static PyObject *stream_write_items(UvcStream *t, PyObject *const *items, Py_ssize_t n)
{
    uv_buf_t small_bufs[8];
    Py_buffer small_views[8];
    uv_buf_t *bufs = small_bufs;
    Py_buffer *views = small_views;
    PyObject *result = NULL;
    Py_ssize_t nviews = 0, total = 0;

    if (uvc_stream_check_thread(t->loop) < 0) {
        return NULL;
    }
    if (n > 8) {
        bufs = PyMem_Malloc(n * sizeof(uv_buf_t));
        views = PyMem_Malloc(n * sizeof(Py_buffer));
        if (bufs == NULL || views == NULL) {
            PyErr_NoMemory();
            goto done;
        }
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *o = items[i];
        Py_ssize_t len;
        views[i].obj = NULL;
        nviews = i + 1;
        if (PyBytes_Check(o)) {
            len = PyBytes_GET_SIZE(o);
            bufs[i] = uv_buf_init(PyBytes_AS_STRING(o), (unsigned int)len);
        } else {
            if (PyObject_GetBuffer(o, &views[i], PyBUF_SIMPLE) < 0) {
                views[i].obj = NULL;
                if (PyErr_ExceptionMatches(PyExc_TypeError)) {
                    PyErr_Format(PyExc_TypeError,
                                 "data argument must be a bytes-like object, not '%.100s'",
                                 Py_TYPE(o)->tp_name);
                }
                goto done;
            }
            len = views[i].len;
            bufs[i] = uv_buf_init(views[i].buf, (unsigned int)len);
        }
        if (len > (Py_ssize_t)INT_MAX) {
            PyErr_SetString(PyExc_OverflowError, "a single write is limited to 2 GiB");
            goto done;
        }
        total += len;
    }
    if (t->eof) {
        PyErr_SetString(PyExc_RuntimeError, "Cannot call write() after write_eof()");
        goto done;
    }
    if (t->empty_waiter != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "unable to write; sendfile is in progress");
        goto done;
    }
    if (total == 0) {
        result = Py_None;
        goto done;
    }
    if (t->conn_lost || !t->opened || t->handle_closing) {
        if (t->conn_lost >= UVC_LOG_THRESHOLD_FOR_CONNLOST_WRITES) {
            /* asyncio's exact line (and no %-arguments: logging would choke on them) */
            stream_log_line(t->pipe_mode ? "pipe closed by peer or os.write(pipe, data) raised exception."
                                         : "socket.send() raised exception.");
        }
        t->conn_lost++;
        result = Py_None;
        goto done;
    }

    if (t->fanout != NULL) {
        /* fan-out frames queued before this write go out before it */
        uvc_fanout_transport_before_write(t->fanout);
        if (t->conn_lost || t->handle_closing) {
            result = Py_None;
            goto done;
        }
    }
    Py_ssize_t first = 0;
    if (t->writes == 0) {
        int r = uv_try_write(&t->uv.stream, bufs, (unsigned int)n);
        if (r >= 0 && (Py_ssize_t)r == total) {
            result = Py_None;
            goto done;
        }
        if (r < 0 && r != UV_EAGAIN && r != UV_ENOSYS) {
            stream_fatal_uv_error(t, r, stream_write_error_message(t));
            result = Py_None;
            goto done;
        }
        size_t sent = r > 0 ? (size_t)r : 0;
        while (sent >= bufs[first].len) {
            sent -= bufs[first].len;
            first++;
        }
        bufs[first].base += sent;
        bufs[first].len -= sent;
    }

    Py_ssize_t m = n - first;
    UvcWriteReq *w = PyMem_Malloc(sizeof(UvcWriteReq) + (m - 1) * sizeof(PyObject *));
    if (w == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    w->nobjs = 0;
    for (Py_ssize_t i = first; i < n; i++) {
        PyObject *owner;
        if (views[i].obj == NULL) {
            owner = Py_NewRef(items[i]);
        } else {
            owner = PyBytes_FromStringAndSize(bufs[i].base, bufs[i].len);
            if (owner == NULL) {
                goto fail_req;
            }
            bufs[i].base = PyBytes_AS_STRING(owner);
        }
        w->objs[w->nobjs++] = owner;
    }
    /* libuv copies the uv_buf_t array; the bytes stay alive through w->objs */
    int err = uv_write(&w->req, &t->uv.stream, bufs + first, (unsigned int)m, stream_on_write);
    if (err < 0) {
        for (Py_ssize_t i = 0; i < w->nobjs; i++) {
            Py_DECREF(w->objs[i]);
        }
        PyMem_Free(w);
        stream_fatal_uv_error(t, err, stream_write_error_message(t));
        result = Py_None;
        goto done;
    }
    t->writes++;
    result = stream_maybe_pause_protocol(t) < 0 ? NULL : Py_None;
    goto done;

fail_req:
    for (Py_ssize_t i = 0; i < w->nobjs; i++) {
        Py_DECREF(w->objs[i]);
    }
    PyMem_Free(w);
done:
    for (Py_ssize_t i = 0; i < nviews; i++) {
        if (views[i].obj != NULL) {
            PyBuffer_Release(&views[i]);
        }
    }
    if (bufs != small_bufs) {
        PyMem_Free(bufs);
    }
    if (views != small_views) {
        PyMem_Free(views);
    }
    return Py_XNewRef(result);
}

static PyObject *stream_write(UvcStream *t, PyObject *data) { return stream_write_items(t, &data, 1); }

static PyObject *stream_writelines(UvcStream *t, PyObject *list)
{
    PyObject *seq = PySequence_Fast(list, "writelines() argument must be an iterable of bytes-like objects");
    if (seq == NULL) {
        return NULL;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject *res = n == 0 ? Py_NewRef(Py_None) : stream_write_items(t, PySequence_Fast_ITEMS(seq), n);
    Py_DECREF(seq);
    return res;
}

static void stream_on_shutdown(uv_shutdown_t *req, int status)
{
    UvcStream *t = req->handle->data;
    uvc_loop_acquire(t->loop);
    PyMem_Free(req);
}

static PyObject *stream_write_eof(UvcStream *t, PyObject *unused)
{
    if (uvc_stream_check_thread(t->loop) < 0) {
        return NULL;
    }
    if (t->closing || t->eof) {
        Py_RETURN_NONE;
    }
    if (t->pipe_mode) {
        return stream_close(t, NULL); /* a pipe has no half-close: the reader sees EOF */
    }
    if (t->fanout != NULL) {
        uvc_fanout_transport_closing(t->fanout, UVC_FANOUT_CLOSE_FLUSH);
    }
    t->eof = 1;
    if (!t->opened || t->handle_closing || t->fd_lost) {
        Py_RETURN_NONE;
    }
    uv_shutdown_t *req = PyMem_Malloc(sizeof(uv_shutdown_t));
    if (req == NULL) {
        return PyErr_NoMemory();
    }
    /* libuv shuts down only once the queued writes are done */
    int err = uv_shutdown(req, &t->uv.stream, stream_on_shutdown);
    if (err < 0) {
        PyMem_Free(req);
        if (err != UV_ENOTCONN) {
            uvc_set_uv_error(err);
            return NULL;
        }
    }
    Py_RETURN_NONE;
}

static PyObject *stream_can_write_eof(UvcStream *t, PyObject *unused) { Py_RETURN_TRUE; }

/* sendfile (in _net.py) waits for our queued writes before the kernel sends the file. */
static PyObject *stream_make_empty_waiter(UvcStream *t, PyObject *unused)
{
    if (t->empty_waiter != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Empty waiter is already set");
        return NULL;
    }
    if (t->fanout != NULL) {
        uvc_fanout_transport_before_write(t->fanout); /* the file goes after held frames */
    }
    PyObject *fut = PyObject_CallMethod((PyObject *)t->loop, "create_future", NULL);
    if (fut == NULL) {
        return NULL;
    }
    t->empty_waiter = fut;
    if (t->writes == 0) {
        stream_wake_empty_waiter(t, NULL);
    }
    return Py_NewRef(fut);
}

static PyObject *stream_reset_empty_waiter(UvcStream *t, PyObject *unused)
{
    Py_CLEAR(t->empty_waiter);
    Py_RETURN_NONE;
}

/* ---- Python methods ---------------------------------------------------------------------- */

static PyObject *stream_close(UvcStream *t, PyObject *unused)
{
    if (uvc_stream_check_thread(t->loop) < 0) {
        return NULL;
    }
    if (t->closing) {
        Py_RETURN_NONE;
    }
    if (t->fanout != NULL) {
        /* held frames are written before the close, which waits for them */
        uvc_fanout_transport_closing(t->fanout, UVC_FANOUT_CLOSE_FLUSH);
    }
    t->closing = 1;
    stream_stop_reading(t);
    if (t->writes == 0 && !t->conn_lost) {
        t->conn_lost++;
        if (stream_schedule_lost(t, NULL) < 0) {
            return NULL;
        }
    }
    Py_RETURN_NONE;
}

static PyObject *stream_abort(UvcStream *t, PyObject *unused)
{
    if (uvc_stream_check_thread(t->loop) < 0 || stream_force_close(t, NULL) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *stream_force_close_meth(UvcStream *t, PyObject *exc)
{
    if (uvc_stream_check_thread(t->loop) < 0 || stream_force_close(t, exc == Py_None ? NULL : exc) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *stream_is_closing(UvcStream *t, PyObject *unused) { return PyBool_FromLong(t->closing); }

static PyObject *stream_is_reading(UvcStream *t, PyObject *unused)
{
    return PyBool_FromLong(!t->paused && !t->closing);
}

static PyObject *stream_pause_reading(UvcStream *t, PyObject *unused)
{
    if (uvc_stream_check_thread(t->loop) < 0) {
        return NULL;
    }
    if (t->closing || t->paused) {
        Py_RETURN_NONE;
    }
    t->paused = 1;
    stream_stop_reading(t);
    Py_RETURN_NONE;
}

static PyObject *stream_resume_reading(UvcStream *t, PyObject *unused)
{
    if (uvc_stream_check_thread(t->loop) < 0) {
        return NULL;
    }
    if (t->closing || !t->paused) {
        Py_RETURN_NONE;
    }
    t->paused = 0;
    if (stream_start_reading(t) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static int as_limit(PyObject *o, Py_ssize_t *out)
{
    *out = PyNumber_AsSsize_t(o, PyExc_OverflowError);
    return (*out == -1 && PyErr_Occurred()) ? -1 : 0;
}

static PyObject *stream_set_write_buffer_limits(UvcStream *t, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"high", "low", NULL};
    PyObject *high_o = Py_None, *low_o = Py_None;
    Py_ssize_t high = 64 * 1024, low = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|OO:set_write_buffer_limits", kwlist, &high_o, &low_o)) {
        return NULL;
    }
    if (low_o != Py_None && as_limit(low_o, &low) < 0) {
        return NULL;
    }
    if (high_o != Py_None) {
        if (as_limit(high_o, &high) < 0) {
            return NULL;
        }
    } else if (low_o != Py_None) {
        high = 4 * low;
    }
    if (low_o == Py_None) {
        low = high / 4;
    }
    if (!(high >= low && low >= 0)) {
        PyErr_Format(PyExc_ValueError, "high (%zd) must be >= low (%zd) must be >= 0", high, low);
        return NULL;
    }
    t->high = high;
    t->low = low;
    if (stream_maybe_pause_protocol(t) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *stream_get_write_buffer_limits(UvcStream *t, PyObject *unused)
{
    return Py_BuildValue("(nn)", t->low, t->high);
}

static PyObject *stream_get_write_buffer_size(UvcStream *t, PyObject *unused)
{
    return PyLong_FromSize_t(stream_queued(t));
}

static int stream_set_protocol_obj(UvcStream *t, PyObject *protocol)
{
    int buffered = PyObject_IsInstance(protocol, t->st->BufferedProtocol);
    if (buffered < 0) {
        return -1;
    }
    t->buffered = buffered;
    Py_XSETREF(t->protocol, Py_NewRef(protocol));
    return 0;
}

static PyObject *stream_set_protocol(UvcStream *t, PyObject *protocol)
{
    if (stream_set_protocol_obj(t, protocol) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *stream_get_protocol(UvcStream *t, PyObject *unused)
{
    return Py_NewRef(t->protocol ? t->protocol : Py_None);
}

/* The socket.socket for our fd; made on first use for accepted connections. Borrowed; NULL
 * (maybe without an exception) when there is none. */
static PyObject *stream_get_sock(UvcStream *t)
{
    if (t->sock != NULL) {
        return t->sock;
    }
    int fd = stream_fd(t);
    if (fd < 0) {
        return NULL;
    }
    PyObject *socket = PyImport_ImportModule("socket");
    PyObject *cls = socket ? PyObject_GetAttrString(socket, "socket") : NULL;
    PyObject *kw = Py_BuildValue("{s:i}", "fileno", fd);
    PyObject *empty = PyTuple_New(0);
    if (cls != NULL && kw != NULL && empty != NULL) {
        t->sock = PyObject_Call(cls, empty, kw);
    }
    Py_XDECREF(kw);
    Py_XDECREF(empty);
    Py_XDECREF(cls);
    Py_XDECREF(socket);
    return t->sock;
}

/* getsockname (peer 0) or getpeername (peer 1) into t->addrs; 0 or -1 (no exception). */
static int stream_fetch_address(UvcStream *t, int peer)
{
    int fd = stream_fd(t);
    if (fd < 0) {
        return -1;
    }
    struct sockaddr_storage *ss = &t->addrs[peer];
    socklen_t len = sizeof(*ss);
    memset(ss, 0, sizeof(*ss));
    int r = peer ? getpeername(fd, (struct sockaddr *)ss, &len) : getsockname(fd, (struct sockaddr *)ss, &len);
    t->addr_lens[peer] = r < 0 ? 0 : len;
    return r < 0 ? -1 : 0;
}

static PyObject *stream_get_address(UvcStream *t, int peer)
{
    if (t->addr_lens[peer] == 0 && stream_fetch_address(t, peer) < 0) {
        return NULL;
    }
    return uvc_sockaddr_to_py((struct sockaddr *)&t->addrs[peer], t->addr_lens[peer]);
}

static PyObject *stream_get_extra_info(UvcStream *t, PyObject *const *args, Py_ssize_t nargs,
                                       PyObject *kwnames)
{
    PyObject *name = NULL, *dflt = Py_None;
    Py_ssize_t nk = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    if (nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "get_extra_info(name, default=None)");
        return NULL;
    }
    name = nargs > 0 ? args[0] : NULL;
    if (nargs > 1) {
        dflt = args[1];
    }
    for (Py_ssize_t i = 0; i < nk; i++) {
        PyObject *k = PyTuple_GET_ITEM(kwnames, i);
        if (PyUnicode_CompareWithASCIIString(k, "name") == 0 && name == NULL) {
            name = args[nargs + i];
        } else if (PyUnicode_CompareWithASCIIString(k, "default") == 0 && nargs < 2) {
            dflt = args[nargs + i];
        } else {
            PyErr_Format(PyExc_TypeError, "get_extra_info() got an unexpected keyword argument %R", k);
            return NULL;
        }
    }
    if (name == NULL) {
        PyErr_SetString(PyExc_TypeError, "get_extra_info() missing the name argument");
        return NULL;
    }
    if (t->extra == NULL && (t->extra = PyDict_New()) == NULL) {
        return NULL;
    }
    PyObject *v = PyDict_GetItemWithError(t->extra, name);
    if (v != NULL) {
        return Py_NewRef(v);
    }
    if (PyErr_Occurred()) {
        return NULL;
    }
    if (!PyUnicode_Check(name) || t->pipe_mode) {
        return Py_NewRef(dflt); /* a pipe's extra info ('pipe') is all in the dict */
    }
    int peer = PyUnicode_CompareWithASCIIString(name, "peername") == 0;
    if (peer || PyUnicode_CompareWithASCIIString(name, "sockname") == 0) {
        v = stream_get_address(t, peer);
    } else if (PyUnicode_CompareWithASCIIString(name, "socket") == 0) {
        PyObject *sock = stream_get_sock(t);
        PyObject *trsock = sock ? PyImport_ImportModule("asyncio.trsock") : NULL;
        v = trsock ? PyObject_CallMethod(trsock, "TransportSocket", "O", sock) : NULL;
        Py_XDECREF(trsock);
    } else {
        return Py_NewRef(dflt);
    }
    if (v == NULL) {
        return PyErr_Occurred() ? NULL : Py_NewRef(dflt);
    }
    if (PyDict_SetItem(t->extra, name, v) < 0) {
        Py_DECREF(v);
        return NULL;
    }
    return v;
}

/* ---- the handles the loop runs for us ---------------------------------------------------- */

static PyObject *stream_call_connection_lost(UvcStream *t, PyObject *exc)
{
    PyObject *protocol = t->protocol;
    PyObject *server = t->server;
    t->protocol = NULL; /* asyncio drops the protocol here: no transport/protocol cycle left */
    t->server = NULL;
    PyObject *err = NULL;
    if (protocol != NULL) {
        PyObject *args[2] = {protocol, exc};
        PyObject *res = PyObject_VectorcallMethod(t->st->str_connection_lost, args, 2, NULL);
        if (res == NULL) {
            err = PyErr_GetRaisedException_compat();
        }
        Py_XDECREF(res);
    }
    stream_close_handle(t);
    if (server != NULL) {
        PyObject *r = PyObject_CallMethod(server, "_detach", "O", (PyObject *)t);
        if (r == NULL) {
            if (err == NULL) {
                err = PyErr_GetRaisedException_compat();
            } else {
                PyErr_WriteUnraisable(server);
            }
        }
        Py_XDECREF(r);
    }
    Py_XDECREF(protocol);
    Py_XDECREF(server);
    if (err != NULL) {
        PyErr_SetRaisedException_compat(err);
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyMethodDef stream_lost_def = {"_call_connection_lost", (PyCFunction)stream_call_connection_lost,
                                      METH_O, NULL};

static PyObject *stream_start_reading_cb(UvcStream *t, PyObject *unused)
{
    t->started = 1;
    if (stream_start_reading(t) < 0) {
        stream_fatal_error(t, "Fatal error: starting to read failed.");
    }
    Py_RETURN_NONE;
}

static PyMethodDef stream_start_def = {"_start_reading", (PyCFunction)stream_start_reading_cb,
                                       METH_NOARGS, NULL};

/* ---- creation ---------------------------------------------------------------------------- */

static UvcStream *stream_alloc_type(UvcLoop *loop, PyTypeObject *tp)
{
    uvc_state *st = loop->st;
    UvcStream *t = PyObject_GC_New(UvcStream, tp);
    if (t == NULL) {
        return NULL;
    }
    /* everything after the object header starts zeroed */
    memset((char *)t + sizeof(PyObject), 0, sizeof(UvcStream) - sizeof(PyObject));
    t->st = st;
    t->module = Py_NewRef(loop->module);
    t->loop = (UvcLoop *)Py_NewRef(loop);
    t->high = 64 * 1024;
    t->low = 16 * 1024;
    t->uv.handle.data = t;
    PyObject_GC_Track(t);
    if (uvc_instance_dict_init(&t->dict) < 0) {
        Py_DECREF(t);
        return NULL;
    }
    return t;
}

UvcStream *uvc_stream_alloc(UvcLoop *loop) { return stream_alloc_type(loop, loop->st->StreamTransportType); }

void uvc_stream_set_opened(UvcStream *t, int kind)
{
    if (stream_io_cb == NULL) {
        stream_io_cb = t->uv.stream.io_watcher.cb;
    }
    t->kind = kind;
    t->opened = 1;
    t->uv.handle.data = t;
    Py_INCREF(t); /* held by the open handle until stream_on_close */
    uvc_link_add(t->st, &t->link, t->loop, stream_link_close);
}

void uvc_stream_discard(UvcStream *t)
{
    t->closing = 1;
    t->conn_lost++;
    stream_close_handle(t);
    Py_DECREF(t);
}

static int stream_push_handle(UvcStream *t, PyObject *cb, PyObject *arg)
{
    UvcHandle *h = uvc_handle_new_queued(t->st, t->st->HandleType, (PyObject *)t->loop, cb,
                                         &arg, arg ? 1 : 0, t->context);
    if (h == NULL) {
        return -1;
    }
    int r = uvc_loop_push_ready(t->loop, h);
    Py_DECREF(h);
    return r;
}

int uvc_stream_start(UvcStream *t, PyObject *protocol, PyObject *server, PyObject *sock,
                     PyObject *context)
{
    if (stream_set_protocol_obj(t, protocol) < 0) {
        return -1;
    }
    Py_XSETREF(t->server, Py_XNewRef(server));
    if (!t->pipe_mode) {
        Py_XSETREF(t->sock, Py_XNewRef(sock));
    }
    if (context != NULL) {
        Py_XSETREF(t->context, Py_NewRef(context));
    } else if ((t->context = PyContext_CopyCurrent()) == NULL) {
        return -1;
    }
    if (t->kind == UVC_KIND_TCP) {
        uv_tcp_nodelay(&t->uv.tcp, 1); /* as asyncio: small writes go out at once */
    }
    if (t->uv.stream.io_watcher.fd >= 0 &&
        uvc_fd_identity(t->uv.stream.io_watcher.fd, &t->dev, &t->ino) == 0) {
        t->has_identity = 1;
    }
    /* asyncio takes the addresses at creation, so they stay known after a reset or close */
    stream_fetch_address(t, 0);
    stream_fetch_address(t, 1);
    /* connection_made first; reading starts only once it ran (as asyncio does). */
    PyObject *made = PyObject_GetAttr(protocol, t->st->str_connection_made);
    PyObject *start = made ? PyCFunction_New(&stream_start_def, (PyObject *)t) : NULL;
    int r = -1;
    if (start == NULL) {
        goto done;
    }
    if (server != NULL) {
        PyObject *a = PyObject_CallMethod(server, "_attach", "O", (PyObject *)t);
        if (a == NULL) {
            goto done;
        }
        Py_DECREF(a);
    }
    r = stream_push_handle(t, made, (PyObject *)t);
    if (r == 0) {
        r = stream_push_handle(t, start, NULL);
    }
    if (r < 0 && server != NULL) {
        PyObject *exc = PyErr_GetRaisedException_compat();
        PyObject *d = PyObject_CallMethod(server, "_detach", "O", (PyObject *)t);
        if (d == NULL) {
            PyErr_WriteUnraisable(server);
        }
        Py_XDECREF(d);
        PyErr_SetRaisedException_compat(exc);
    }
done:
    Py_XDECREF(made);
    Py_XDECREF(start);
    return r;
}

/* StreamTransport(loop, sock, protocol, server=None): adopt a connected socket.socket (its
 * fd is shared; the socket object is detached when the transport closes). */
static PyObject *stream_tp_new(PyTypeObject *tp, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"loop", "sock", "protocol", "server", NULL};
    PyObject *loop, *sock, *protocol, *server = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOO|O:StreamTransport", kwlist, &loop, &sock,
                                     &protocol, &server)) {
        return NULL;
    }
    uvc_state *st = uvc_state_from_type(tp);
    if (st == NULL) {
        return NULL;
    }
    if (!PyObject_TypeCheck(loop, st->LoopType)) {
        PyErr_Format(PyExc_TypeError, "a uvcore loop is required, not %.100s", Py_TYPE(loop)->tp_name);
        return NULL;
    }
    UvcLoop *lp = (UvcLoop *)loop;
    if (uvc_loop_check_closed(lp) < 0) {
        return NULL;
    }
    PyObject *fam = PyObject_GetAttrString(sock, "family");
    if (fam == NULL) {
        return NULL;
    }
    long family = PyLong_AsLong(fam);
    Py_DECREF(fam);
    int fd = PyObject_AsFileDescriptor(sock);
    if (fd < 0 || (family == -1 && PyErr_Occurred())) {
        return NULL;
    }
    UvcStream *t = uvc_stream_alloc(lp);
    if (t == NULL) {
        return NULL;
    }
    int kind = family == AF_UNIX ? UVC_KIND_PIPE : UVC_KIND_TCP;
    int err = kind == UVC_KIND_PIPE ? uvc_unix_init(lp, &t->uv.pipe) : uvc_tcp_init(lp, &t->uv.tcp);
    if (err < 0) {
        Py_DECREF(t);
        uvc_set_uv_error(err);
        return NULL;
    }
    uvc_stream_set_opened(t, kind);
    if (uvc_poll_release_fd(lp, fd) < 0) {
        uvc_stream_discard(t);
        return NULL;
    }
    err = kind == UVC_KIND_PIPE ? uv_pipe_open(&t->uv.pipe, fd) : uv_tcp_open(&t->uv.tcp, fd);
    if (err < 0) {
        uvc_stream_discard(t); /* the socket object keeps its fd */
        uvc_set_uv_error(err);
        return NULL;
    }
    if (uvc_stream_start(t, protocol, server == Py_None ? NULL : server, sock, NULL) < 0) {
        PyObject *exc = PyErr_GetRaisedException_compat();
        uvc_stream_discard(t);
        PyErr_SetRaisedException_compat(exc);
        return NULL;
    }
    return (PyObject *)t;
}

/* StreamTransport._open_pipe(loop, fd, protocol, writable, owner, extra): a read or write
 * pipe transport on fd, which it owns from the call on (closed on every path). owner.close()
 * is called when the handle closes (it closes the pipe object); extra is the _extra dict. */
static PyObject *stream_open_pipe(PyTypeObject *tp, PyObject *args)
{
    PyObject *loop, *protocol, *owner, *extra;
    int fd, writable;
    if (!PyArg_ParseTuple(args, "OiOpOO!:_open_pipe", &loop, &fd, &protocol, &writable, &owner,
                          &PyDict_Type, &extra)) {
        return NULL;
    }
    uvc_state *st = uvc_state_from_type(tp);
    if (st == NULL || !PyObject_TypeCheck(loop, st->LoopType)) {
        if (st != NULL) {
            PyErr_SetString(PyExc_TypeError, "a uvcore loop is required");
        }
        close(fd);
        return NULL;
    }
    UvcLoop *lp = (UvcLoop *)loop;
    UvcStream *t = NULL;
    PyTypeObject *pipe_tp = writable ? st->WritePipeTransportType : st->ReadPipeTransportType;
    if (uvc_loop_check_closed(lp) < 0 || uvc_stream_check_thread(lp) < 0 ||
        (t = stream_alloc_type(lp, pipe_tp)) == NULL) {
        close(fd);
        return NULL;
    }
    int err = uvc_unix_init(lp, &t->uv.pipe);
    if (err < 0) {
        Py_DECREF(t);
        close(fd);
        uvc_set_uv_error(err);
        return NULL;
    }
    t->pipe_mode = writable ? UVC_PIPE_WRITE : UVC_PIPE_READ;
    t->extra = Py_NewRef(extra);
    uvc_stream_set_opened(t, UVC_KIND_PIPE);
    if (uvc_poll_release_fd(lp, fd) < 0) {
        close(fd);
        uvc_stream_discard(t);
        return NULL;
    }
    err = uv_pipe_open(&t->uv.pipe, fd);
    if (err < 0) {
        close(fd);
        uvc_stream_discard(t);
        uvc_set_uv_error(err);
        return NULL;
    }
    /* from here the handle owns fd, and the owner is closed with it */
    t->sock = Py_NewRef(owner);
    if (uvc_stream_start(t, protocol, NULL, NULL, NULL) < 0) {
        PyObject *exc = PyErr_GetRaisedException_compat();
        uvc_stream_discard(t);
        PyErr_SetRaisedException_compat(exc);
        return NULL;
    }
    return (PyObject *)t;
}

static int stream_tp_init(PyObject *self, PyObject *args, PyObject *kwds) { return 0; }

static int stream_traverse(UvcStream *t, visitproc visit, void *arg)
{
    /* not the reference the open handle holds: that one is external by design */
    Py_VISIT(Py_TYPE(t));
    Py_VISIT(t->extra);
    Py_VISIT(t->module);
    Py_VISIT(t->loop);
    Py_VISIT(t->protocol);
    Py_VISIT(t->context);
    Py_VISIT(t->server);
    Py_VISIT(t->sock);
    Py_VISIT(t->empty_waiter);
    Py_VISIT(t->alloc_exc);
    Py_VISIT(t->dict);
    return 0;
}

static int stream_clear(UvcStream *t)
{
    Py_CLEAR(t->extra);
    Py_CLEAR(t->protocol);
    Py_CLEAR(t->context);
    Py_CLEAR(t->server);
    Py_CLEAR(t->sock);
    Py_CLEAR(t->empty_waiter);
    Py_CLEAR(t->alloc_exc);
    Py_CLEAR(t->rbytes);
    Py_CLEAR(t->dict);
    return 0;
}

static void stream_dealloc(UvcStream *t)
{
    PyTypeObject *tp = Py_TYPE(t);
    PyObject_GC_UnTrack(t);
    if (t->weakreflist != NULL) {
        PyObject_ClearWeakRefs((PyObject *)t);
    }
    if (t->rbuf_held) {
        PyBuffer_Release(&t->rbuf);
    }
    stream_clear(t);
    Py_CLEAR(t->loop);
    Py_CLEAR(t->module);
    tp->tp_free(t);
    Py_DECREF(tp);
}

static PyObject *stream_repr(UvcStream *t)
{
    const char *kind = t->pipe_mode == UVC_PIPE_READ    ? "read pipe"
                       : t->pipe_mode == UVC_PIPE_WRITE ? "write pipe"
                       : t->kind == UVC_KIND_PIPE       ? "unix"
                                                        : "tcp";
    int fd = stream_fd(t);
    if (fd < 0) {
        return PyUnicode_FromFormat("<uvcore.StreamTransport %s closed>", kind);
    }
    return PyUnicode_FromFormat("<uvcore.StreamTransport %s%s fd=%d read=%s write=<%s, bufsize=%zd>>",
                                kind, t->closing ? " closing" : "", fd,
                                t->reading ? "polling" : "idle", t->writes ? "polling" : "idle",
                                (Py_ssize_t)t->uv.stream.write_queue_size);
}

static PyObject *stream_get_true(PyObject *self, void *c) { Py_RETURN_TRUE; }
static PyObject *stream_get_loop(UvcStream *t, void *c) { return Py_NewRef((PyObject *)t->loop); }
static PyObject *stream_get_fd(UvcStream *t, void *c) { return PyLong_FromLong(stream_fd(t)); }
static PyObject *stream_get_server(UvcStream *t, void *c) { return Py_NewRef(t->server ? t->server : Py_None); }
static PyObject *stream_get_protocol_paused(UvcStream *t, void *c) { return PyBool_FromLong(t->protocol_paused); }

static PyGetSetDef stream_getset[] = {
    {"_start_tls_compatible", stream_get_true, NULL, NULL, NULL},
    {"_loop", (getter)stream_get_loop, NULL, NULL, NULL},
    {"_fileno", (getter)stream_get_fd, NULL, "The fd (-1 once closed).", NULL},
    {"_server", (getter)stream_get_server, NULL, NULL, NULL},
    {"_protocol_paused", (getter)stream_get_protocol_paused, NULL, "pause_writing() was called.", NULL},
    {"__dict__", PyObject_GenericGetDict, PyObject_GenericSetDict, NULL, NULL},
    {NULL},
};

static PyMemberDef stream_members[] = {
    {"__weaklistoffset__", T_PYSSIZET, offsetof(UvcStream, weakreflist), READONLY},
    {"__dictoffset__", T_PYSSIZET, offsetof(UvcStream, dict), READONLY},
    {"_conn_lost", T_PYSSIZET, offsetof(UvcStream, conn_lost), READONLY},
    {NULL},
};

static PyMethodDef stream_methods[] = {
    {"write", (PyCFunction)stream_write, METH_O, "Write a bytes-like object (never blocks)."},
    {"writelines", (PyCFunction)stream_writelines, METH_O, "Write several bytes-like objects at once."},
    {"write_eof", (PyCFunction)stream_write_eof, METH_NOARGS, "Shut the write side down once the buffer is sent."},
    {"can_write_eof", (PyCFunction)stream_can_write_eof, METH_NOARGS, "True: stream sockets can half-close."},
    {"close", (PyCFunction)stream_close, METH_NOARGS, "Close after the buffer is sent; connection_lost(None) follows."},
    {"abort", (PyCFunction)stream_abort, METH_NOARGS, "Close now, dropping buffered data."},
    {"_force_close", (PyCFunction)stream_force_close_meth, METH_O, NULL},
    {"_open_pipe", (PyCFunction)stream_open_pipe, METH_VARARGS | METH_CLASS, NULL},
    {"_make_empty_waiter", (PyCFunction)stream_make_empty_waiter, METH_NOARGS, NULL},
    {"_reset_empty_waiter", (PyCFunction)stream_reset_empty_waiter, METH_NOARGS, NULL},
    {"is_closing", (PyCFunction)stream_is_closing, METH_NOARGS, "True once closing started."},
    {"is_reading", (PyCFunction)stream_is_reading, METH_NOARGS, "True unless paused or closing."},
    {"pause_reading", (PyCFunction)stream_pause_reading, METH_NOARGS, "Stop calling data_received."},
    {"resume_reading", (PyCFunction)stream_resume_reading, METH_NOARGS, "Call data_received again."},
    {"set_write_buffer_limits", (PyCFunction)(void (*)(void))stream_set_write_buffer_limits,
     METH_VARARGS | METH_KEYWORDS, "Flow control: pause_writing above high, resume_writing at low."},
    {"get_write_buffer_limits", (PyCFunction)stream_get_write_buffer_limits, METH_NOARGS, "(low, high)"},
    {"get_write_buffer_size", (PyCFunction)stream_get_write_buffer_size, METH_NOARGS,
     "Bytes queued and not yet sent."},
    {"set_protocol", (PyCFunction)stream_set_protocol, METH_O, NULL},
    {"get_protocol", (PyCFunction)stream_get_protocol, METH_NOARGS, NULL},
    {"get_extra_info", (PyCFunction)(void (*)(void))stream_get_extra_info, METH_FASTCALL | METH_KEYWORDS,
     "get_extra_info(name, default=None): peername, sockname, socket, ..."},
    {NULL},
};

/* Pipe transports are one-way, as asyncio's: a read pipe is an asyncio.ReadTransport with no
 * write methods at all (AttributeError), a write pipe an asyncio.Transport whose reading
 * methods are asyncio.ReadTransport's (NotImplementedError). Same layout and slots as
 * StreamTransport, only the method table and the base differ. */
static PyMethodDef stream_read_pipe_methods[] = {
    {"close", (PyCFunction)stream_close, METH_NOARGS, "Close the pipe; connection_lost(None) follows."},
    {"_force_close", (PyCFunction)stream_force_close_meth, METH_O, NULL},
    {"is_closing", (PyCFunction)stream_is_closing, METH_NOARGS, "True once closing started."},
    {"is_reading", (PyCFunction)stream_is_reading, METH_NOARGS, "True unless paused or closing."},
    {"pause_reading", (PyCFunction)stream_pause_reading, METH_NOARGS, "Stop calling data_received."},
    {"resume_reading", (PyCFunction)stream_resume_reading, METH_NOARGS, "Call data_received again."},
    {"set_protocol", (PyCFunction)stream_set_protocol, METH_O, NULL},
    {"get_protocol", (PyCFunction)stream_get_protocol, METH_NOARGS, NULL},
    {"get_extra_info", (PyCFunction)(void (*)(void))stream_get_extra_info, METH_FASTCALL | METH_KEYWORDS,
     "get_extra_info(name, default=None): 'pipe' is the pipe object."},
    {NULL},
};

static PyMethodDef stream_write_pipe_methods[] = {
    {"write", (PyCFunction)stream_write, METH_O, "Write a bytes-like object (never blocks)."},
    {"writelines", (PyCFunction)stream_writelines, METH_O, "Write several bytes-like objects at once."},
    {"write_eof", (PyCFunction)stream_write_eof, METH_NOARGS, "Close once the buffer is sent (the reader sees EOF)."},
    {"can_write_eof", (PyCFunction)stream_can_write_eof, METH_NOARGS, "True."},
    {"close", (PyCFunction)stream_close, METH_NOARGS, "Close after the buffer is sent; connection_lost(None) follows."},
    {"abort", (PyCFunction)stream_abort, METH_NOARGS, "Close now, dropping buffered data."},
    {"_force_close", (PyCFunction)stream_force_close_meth, METH_O, NULL},
    {"is_closing", (PyCFunction)stream_is_closing, METH_NOARGS, "True once closing started."},
    {"set_write_buffer_limits", (PyCFunction)(void (*)(void))stream_set_write_buffer_limits,
     METH_VARARGS | METH_KEYWORDS, "Flow control: pause_writing above high, resume_writing at low."},
    {"get_write_buffer_limits", (PyCFunction)stream_get_write_buffer_limits, METH_NOARGS, "(low, high)"},
    {"get_write_buffer_size", (PyCFunction)stream_get_write_buffer_size, METH_NOARGS,
     "Bytes queued and not yet sent."},
    {"set_protocol", (PyCFunction)stream_set_protocol, METH_O, NULL},
    {"get_protocol", (PyCFunction)stream_get_protocol, METH_NOARGS, NULL},
    {"get_extra_info", (PyCFunction)(void (*)(void))stream_get_extra_info, METH_FASTCALL | METH_KEYWORDS,
     "get_extra_info(name, default=None): 'pipe' is the pipe object."},
    {NULL},
};

static PyObject *stream_pipe_tp_new(PyTypeObject *tp, PyObject *args, PyObject *kwds)
{
    PyErr_Format(PyExc_TypeError, "cannot create '%s' instances: use loop.connect_read_pipe() or "
                 "loop.connect_write_pipe()", _PyType_Name(tp));
    return NULL;
}

static PyType_Slot stream_read_pipe_slots[] = {
    {Py_tp_new, stream_pipe_tp_new},
    {Py_tp_dealloc, stream_dealloc},
    {Py_tp_traverse, stream_traverse},
    {Py_tp_clear, stream_clear},
    {Py_tp_repr, stream_repr},
    {Py_tp_methods, stream_read_pipe_methods},
    {Py_tp_getset, stream_getset},
    {Py_tp_members, stream_members},
    {Py_tp_doc, "The read end of a pipe on a libuv pipe handle (an asyncio.ReadTransport)."},
    {0, NULL},
};

static PyType_Slot stream_write_pipe_slots[] = {
    {Py_tp_new, stream_pipe_tp_new},
    {Py_tp_dealloc, stream_dealloc},
    {Py_tp_traverse, stream_traverse},
    {Py_tp_clear, stream_clear},
    {Py_tp_repr, stream_repr},
    {Py_tp_methods, stream_write_pipe_methods},
    {Py_tp_getset, stream_getset},
    {Py_tp_members, stream_members},
    {Py_tp_doc, "The write end of a pipe on a libuv pipe handle (an asyncio.WriteTransport)."},
    {0, NULL},
};

static PyType_Spec stream_read_pipe_spec = {
    .name = "uvcore._uvcore.ReadPipeTransport",
    .basicsize = sizeof(UvcStream),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = stream_read_pipe_slots,
};

static PyType_Spec stream_write_pipe_spec = {
    .name = "uvcore._uvcore.WritePipeTransport",
    .basicsize = sizeof(UvcStream),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = stream_write_pipe_slots,
};

static PyType_Slot stream_slots[] = {
    {Py_tp_new, stream_tp_new},
    {Py_tp_init, stream_tp_init},
    {Py_tp_dealloc, stream_dealloc},
    {Py_tp_traverse, stream_traverse},
    {Py_tp_clear, stream_clear},
    {Py_tp_repr, stream_repr},
    {Py_tp_methods, stream_methods},
    {Py_tp_getset, stream_getset},
    {Py_tp_members, stream_members},
    {Py_tp_doc, "A TCP or Unix socket transport on a libuv stream (an asyncio.Transport)."},
    {0, NULL},
};

static PyType_Spec stream_spec = {
    .name = "uvcore._uvcore.StreamTransport",
    .basicsize = sizeof(UvcStream),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = stream_slots,
};

int uvc_stream_module_init(PyObject *m, uvc_state *st)
{
#define INTERN(field, s)                                                                      \
    if ((st->field = PyUnicode_InternFromString(s)) == NULL) {                                 \
        return -1;                                                                             \
    }
    INTERN(str_data_received, "data_received")
    INTERN(str_eof_received, "eof_received")
    INTERN(str_get_buffer, "get_buffer")
    INTERN(str_buffer_updated, "buffer_updated")
    INTERN(str_connection_made, "connection_made")
    INTERN(str_connection_lost, "connection_lost")
    INTERN(str_pause_writing, "pause_writing")
    INTERN(str_resume_writing, "resume_writing")
#undef INTERN
    st->stream_read_buffer = PyByteArray_FromStringAndSize(NULL, UVC_READ_BUFFER_SIZE);
    if (st->stream_read_buffer == NULL) {
        return -1;
    }
    PyObject *transports = PyImport_ImportModule("asyncio.transports");
    PyObject *protocols = PyImport_ImportModule("asyncio.protocols");
    PyObject *base = transports ? PyObject_GetAttrString(transports, "Transport") : NULL;
    PyObject *read_base = transports ? PyObject_GetAttrString(transports, "ReadTransport") : NULL;
    st->BufferedProtocol = protocols ? PyObject_GetAttrString(protocols, "BufferedProtocol") : NULL;
    Py_XDECREF(transports);
    Py_XDECREF(protocols);
    if (base == NULL || read_base == NULL || st->BufferedProtocol == NULL) {
        Py_XDECREF(base);
        Py_XDECREF(read_base);
        return -1;
    }
    int rr = uvc_add_type(m, &stream_read_pipe_spec, read_base, &st->ReadPipeTransportType);
    Py_DECREF(read_base);
    if (rr < 0 || uvc_add_type(m, &stream_write_pipe_spec, base, &st->WritePipeTransportType) < 0) {
        Py_DECREF(base);
        return -1;
    }
    /* Our layout starts with asyncio.BaseTransport's one slot (`_extra`), so the C type can
     * be a real asyncio.Transport subclass (isinstance checks in libraries pass). */
    if (((PyTypeObject *)base)->tp_basicsize != (Py_ssize_t)(sizeof(PyObject) + sizeof(PyObject *))) {
        Py_DECREF(base);
        PyErr_SetString(PyExc_ImportError, "uvcore: unexpected asyncio.Transport layout");
        return -1;
    }
    PyObject *bases = PyTuple_Pack(1, base);
    Py_DECREF(base);
    if (bases == NULL) {
        return -1;
    }
    int r = uvc_add_type(m, &stream_spec, bases, &st->StreamTransportType);
    Py_DECREF(bases);
    if (r < 0) {
        return -1;
    }
    return uvc_add_type(m, &uvc_listener_spec, NULL, &st->ServerType);
}
