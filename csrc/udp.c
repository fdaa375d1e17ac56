/* udp.c: the datagram transport (UDP and Unix datagram sockets) on uv_udp_t. The Python layer
 * (python/uvcore/_udp.py) creates, binds and connects the socket as asyncio does and hands it
 * here; this file does the hot path: receive into one buffer per transport and call
 * datagram_received, send with uv_udp_try_send first and queue with uv_udp_send only when the
 * kernel buffer is full, write flow control, close/abort. */
#include "loop.h"

#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <pythread.h>

#define UDP_MAX_SIZE (256 * 1024) /* the most one datagram can carry to us, as asyncio reads */
#define UDP_CONNLOST_WARN 5       /* asyncio's LOG_THRESHOLD_FOR_CONNLOST_WRITES */
#if PY_VERSION_HEX >= 0x030D0000
#define UDP_HEADER_SIZE 8 /* 3.13 counts the UDP header in get_write_buffer_size() */
#define UDP_SEND_EMPTY 1  /* and sends empty datagrams */
#else
#define UDP_HEADER_SIZE 0
#define UDP_SEND_EMPTY 0
#endif

/* Ownership: the uv_udp_t is embedded in the transport. While it is open the transport holds
 * a reference to itself (self_ref), dropped by udp_on_close, uv_close's callback; so libuv
 * never sees freed memory however Python drops its references. */
typedef struct {
    PyObject_HEAD
    PyObject *extra;        /* asyncio.BaseTransport.__slots__ = ('_extra',) lives here */
    uvc_state *st;
    PyObject *module;
    UvcLoop *loop;          /* strong */
    PyObject *protocol;
    PyObject *sock;         /* the socket.socket we were given; detached when libuv closes the fd */
    PyObject *address;      /* the remote address given at creation, or NULL */
    PyObject *context;      /* protocol callbacks run in this contextvars.Context */
    PyObject *weakreflist;
    PyObject *dict;         /* instance attributes: see uvc_instance_dict_init */
    uv_udp_t uv;
    char *rbuf;             /* receive buffer, allocated when reading starts */
    size_t rbuf_size;
    /* the last sender and its Python address, so replies to it need no conversion */
    struct sockaddr_storage last_sa;
    socklen_t last_len;
    PyObject *last_addr;
    /* where sendto(data) goes when created with remote_addr but not connected (broadcast) */
    struct sockaddr_storage dest_sa;
    int has_dest;
    int family;
    int connected;          /* the socket has a peer: send without an address */
    int handle_open;        /* uv_udp_t initialised and not yet closed */
    int self_ref;
    int closing;            /* close()/abort() called */
    int conn_lost;          /* connection_lost scheduled (counts writes after it, as asyncio) */
    int reading;            /* uv_udp_recv_start active */
    int paused;             /* pause_reading() */
    int protocol_paused;    /* pause_writing() was called on the protocol */
    Py_ssize_t buffer_size; /* bytes queued in uv_udp_send requests */
    Py_ssize_t high_water, low_water;
    int has_identity;       /* dev/ino hold the file of our fd (see fdcheck.c) */
    dev_t dev;
    ino_t ino;
} UvcUdp;

typedef struct {
    uv_udp_send_t req;
    UvcUdp *t;
    PyObject *data;         /* bytes kept alive until the send completes */
    Py_ssize_t size;        /* what it added to buffer_size */
} UdpSendReq;

/* ---- helpers ---------------------------------------------------------------------------- */

static int udp_check_thread(UvcUdp *t)
{
    unsigned long tid = t->loop->thread_id;
    if (tid != 0 && tid != PyThread_get_thread_ident()) {
        PyErr_SetString(PyExc_RuntimeError,
                        "Non-thread-safe operation invoked on an event loop other than the "
                        "current one");
        return -1;
    }
    return 0;
}

static int udp_check_alive(UvcUdp *t)
{
    if (t->loop == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "UDPTransport objects are made by create_datagram_endpoint()");
        return -1;
    }
    return udp_check_thread(t);
}

static PyObject *udp_oserror(int err)
{
    return PyObject_CallFunction(PyExc_OSError, "is", -err, uv_strerror(err));
}

/* A Python address for a sockaddr, as socket.recvfrom makes it. New reference. */
static PyObject *udp_addr_to_py(const struct sockaddr *sa)
{
    char host[INET6_ADDRSTRLEN + 1];
    switch (sa->sa_family) {
    case AF_INET: {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        uv_ip4_name(in, host, sizeof(host));
        return Py_BuildValue("(si)", host, (int)ntohs(in->sin_port));
    }
    case AF_INET6: {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        uv_ip6_name(in6, host, sizeof(host));
        return Py_BuildValue("(siIk)", host, (int)ntohs(in6->sin6_port),
                             (unsigned int)ntohl(in6->sin6_flowinfo),
                             (unsigned long)in6->sin6_scope_id);
    }
    case AF_UNIX: {
        /* libuv does not pass the address length: an abstract name (leading NUL) ends at its
         * last non-NUL byte; a path at its first NUL; an unbound sender is ''. */
        const struct sockaddr_un *un = (const struct sockaddr_un *)sa;
        size_t n = sizeof(un->sun_path);
        if (un->sun_path[0] == '\0') {
            while (n > 0 && un->sun_path[n - 1] == '\0') {
                n--;
            }
            if (n == 0) {
                return PyUnicode_FromString("");
            }
            return PyBytes_FromStringAndSize(un->sun_path, (Py_ssize_t)n);
        }
        return PyUnicode_DecodeFSDefaultAndSize(un->sun_path, (Py_ssize_t)strnlen(un->sun_path, n));
    }
    default:
        Py_RETURN_NONE;
    }
}

/* Resolve a host name the way socket.sendto would (blocking, as asyncio does there). */
static int udp_resolve(const char *host, int port, int family, struct sockaddr_storage *ss, socklen_t *len)
{
    PyObject *socket_mod = PyImport_ImportModule("socket");
    if (socket_mod == NULL) {
        return -1;
    }
    PyObject *infos = PyObject_CallMethod(socket_mod, "getaddrinfo", "siii", host, port, family, SOCK_DGRAM);
    Py_DECREF(socket_mod);
    if (infos == NULL) {
        return -1;
    }
    int r = -1;
    if (!PyList_Check(infos) || PyList_GET_SIZE(infos) == 0) {
        PyErr_Format(PyExc_OSError, "getaddrinfo(%s) returned no address", host);
        goto done;
    }
    PyObject *addr = PySequence_GetItem(PyList_GET_ITEM(infos, 0), 4);
    if (addr == NULL) {
        goto done;
    }
    const char *numeric;
    if (!PyArg_ParseTuple(addr, "s|i", &numeric, &port) && !PyArg_ParseTuple(addr, "si|II", &numeric, &port, NULL, NULL)) {
        Py_DECREF(addr);
        goto done;
    }
    PyErr_Clear();
    int err = family == AF_INET6 ? uv_ip6_addr(numeric, port, (struct sockaddr_in6 *)ss)
                                 : uv_ip4_addr(numeric, port, (struct sockaddr_in *)ss);
    Py_DECREF(addr);
    if (err < 0) {
        PyErr_Format(PyExc_OSError, "cannot use the address %s", host);
        goto done;
    }
    *len = family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    r = 0;
done:
    Py_DECREF(infos);
    return r;
}

/* Parse a Python address for this transport's family into *ss. -1 with TypeError/ValueError
 * for a malformed address, -2 with OSError when it cannot be resolved (error_received). */
static int udp_addr_from_py(UvcUdp *t, PyObject *addr, struct sockaddr_storage *ss, socklen_t *len)
{
    memset(ss, 0, sizeof(*ss));
    if (t->family == AF_UNIX) {
        PyObject *path = NULL;
        if (!PyUnicode_FSConverter(addr, &path)) {
            return -1;
        }
        struct sockaddr_un *un = (struct sockaddr_un *)ss;
        Py_ssize_t n = PyBytes_GET_SIZE(path);
        if ((size_t)n >= sizeof(un->sun_path)) {
            Py_DECREF(path);
            PyErr_SetString(PyExc_OSError, "AF_UNIX path too long");
            return -2;
        }
        un->sun_family = AF_UNIX;
        memcpy(un->sun_path, PyBytes_AS_STRING(path), (size_t)n);
        Py_DECREF(path);
        *len = sizeof(struct sockaddr_un);
        return 0;
    }
    if (!PyTuple_Check(addr)) {
        PyErr_Format(PyExc_TypeError, "%s address must be tuple, not %.100s",
                     t->family == AF_INET6 ? "AF_INET6" : "AF_INET", Py_TYPE(addr)->tp_name);
        return -1;
    }
    const char *host;
    int port;
    unsigned int flowinfo = 0, scope_id = 0;
    if (t->family == AF_INET6) {
        if (!PyArg_ParseTuple(addr, "si|II;AF_INET6 address must be (host, port[, flowinfo[, scope_id]])",
                              &host, &port, &flowinfo, &scope_id)) {
            return -1;
        }
    } else if (!PyArg_ParseTuple(addr, "si;AF_INET address must be a (host, port) pair", &host, &port)) {
        return -1;
    }
    if (port < 0 || port > 65535) {
        PyErr_SetString(PyExc_OverflowError, "port must be 0-65535.");
        return -1;
    }
    int err;
    if (t->family == AF_INET6) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
        err = uv_ip6_addr(host[0] ? host : "::", port, in6);
        if (err == 0) {
            in6->sin6_flowinfo = htonl(flowinfo);
            if (scope_id != 0) {
                in6->sin6_scope_id = scope_id;
            }
        }
        *len = sizeof(struct sockaddr_in6);
    } else {
        struct sockaddr_in *in = (struct sockaddr_in *)ss;
        if (strcmp(host, "<broadcast>") == 0) {
            host = "255.255.255.255";
        }
        err = uv_ip4_addr(host[0] ? host : "0.0.0.0", port, in);
        *len = sizeof(struct sockaddr_in);
    }
    if (err < 0 && udp_resolve(host, port, t->family, ss, len) < 0) {
        return PyErr_ExceptionMatches(PyExc_OSError) ? -2 : -1;
    }
    return 0;
}

/* Call protocol.<name>(*args) in the transport's context. New reference or NULL. */
static PyObject *udp_call_protocol(UvcUdp *t, const char *name, PyObject *const *args, Py_ssize_t nargs)
{
    if (t->protocol == NULL) {
        Py_RETURN_NONE;
    }
    PyObject *meth = PyObject_GetAttrString(t->protocol, name);
    if (meth == NULL) {
        return NULL;
    }
    if (PyContext_Enter(t->context) < 0) {
        Py_DECREF(meth);
        return NULL;
    }
    PyObject *res = PyObject_Vectorcall(meth, args, (size_t)nargs, NULL);
    Py_DECREF(meth);
    if (PyContext_Exit(t->context) < 0) {
        Py_CLEAR(res);
    }
    return res;
}

/* A protocol callback failed inside a libuv callback: report it as asyncio reports an error
 * in a reader callback (the loop keeps running; KeyboardInterrupt/SystemExit stop it). */
static void udp_report(UvcUdp *t, const char *message)
{
    PyObject *key = PyUnicode_FromString("transport");
    if (key == NULL) {
        PyErr_Clear();
    }
    uvc_loop_handle_callback_error(t->loop, message, key, key ? (PyObject *)t : NULL);
    Py_XDECREF(key);
}

static int udp_error_received(UvcUdp *t, int err)
{
    PyObject *exc = udp_oserror(err);
    if (exc == NULL) {
        return -1;
    }
    PyObject *res = udp_call_protocol(t, "error_received", &exc, 1);
    Py_DECREF(exc);
    if (res == NULL) {
        return -1;
    }
    Py_DECREF(res);
    return 0;
}

static void udp_flow_call(UvcUdp *t, const char *name, const char *message)
{
    PyObject *res = udp_call_protocol(t, name, NULL, 0);
    if (res != NULL) {
        Py_DECREF(res);
        return;
    }
    if (!PyErr_ExceptionMatches(PyExc_Exception)) {
        return; /* KeyboardInterrupt/SystemExit propagate */
    }
    PyObject *exc = PyErr_GetRaisedException_compat();
    PyObject *ctx = Py_BuildValue("{s:s,s:O,s:O,s:O}", "message", message, "exception", exc,
                                  "transport", (PyObject *)t, "protocol",
                                  t->protocol ? t->protocol : Py_None);
    Py_DECREF(exc);
    if (ctx == NULL) {
        PyErr_WriteUnraisable((PyObject *)t);
        return;
    }
    uvc_loop_report((PyObject *)t->loop, ctx);
    Py_DECREF(ctx);
}

static int udp_maybe_pause_protocol(UvcUdp *t)
{
    if (t->buffer_size <= t->high_water || t->protocol_paused) {
        return 0;
    }
    t->protocol_paused = 1;
    udp_flow_call(t, "pause_writing", "protocol.pause_writing() failed");
    return PyErr_Occurred() ? -1 : 0;
}

static int udp_maybe_resume_protocol(UvcUdp *t)
{
    if (!t->protocol_paused || t->buffer_size > t->low_water) {
        return 0;
    }
    t->protocol_paused = 0;
    udp_flow_call(t, "resume_writing", "protocol.resume_writing() failed");
    return PyErr_Occurred() ? -1 : 0;
}

/* ---- closing ---------------------------------------------------------------------------- */

static void udp_on_close(uv_handle_t *h)
{
    UvcUdp *t = h->data;
    uvc_loop_acquire(t->loop);
    if (t->self_ref) {
        t->self_ref = 0;
        Py_DECREF(t);
    }
}

/* libuv's io callback of every UDP handle (internal): how a watcher in libuv's queue is
 * recognised as a UDP transport's. A process-wide constant, set at the first open. */
static uv__io_cb udp_io_cb;

/* 1 when our fd was closed under us: the number is closed or holds another file, or (with
 * check_sock; see stream.c) the socket object we were given was closed. */
static int udp_fd_is_stale(UvcUdp *t, int check_sock)
{
    int fd = t->uv.io_watcher.fd;
    if (!t->has_identity || !t->handle_open || fd < 0) {
        return 0;
    }
    if (uvc_fd_is_stale(fd, t->dev, t->ino)) {
        return 1;
    }
    if (!check_sock || t->sock == NULL) {
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

static void udp_fatal_error(UvcUdp *t, PyObject *exc, const char *message);

/* Our fd was closed under us: libuv lets go of it without touching the number again (its
 * poll would abort, its close would hit a new owner), and the transport is lost with EBADF. */
static void udp_lose_fd(UvcUdp *t)
{
    uvc_fdcheck_forget(t->loop->uv, &t->uv.io_watcher);
    t->reading = 0;
    PyObject *exc = udp_oserror(UV_EBADF);
    if (exc == NULL) {
        PyErr_WriteUnraisable((PyObject *)t);
        return;
    }
    udp_fatal_error(t, exc, "Fatal error on datagram transport");
    Py_DECREF(exc);
}

static UvcUdp *udp_of_watcher(uv__io_t *w)
{
    if (w == NULL || udp_io_cb == NULL || w->cb != udp_io_cb) {
        return NULL;
    }
    return ((uv_udp_t *)((char *)w - offsetof(uv_udp_t, io_watcher)))->data;
}

void uvc_udp_check_queued(UvcLoop *loop)
{
    if (udp_io_cb == NULL || loop->uv == NULL) {
        return;
    }
    uv__io_t *w = NULL;
    while ((w = uvc_fdcheck_next_queued(loop->uv, w)) != NULL) {
        UvcUdp *t = udp_of_watcher(w);
        if (t != NULL && udp_fd_is_stale(t, 0)) {
            udp_lose_fd(t);
            w = NULL; /* it left the queue: start over */
        }
    }
}

void uvc_udp_release_fd(UvcLoop *loop, int fd)
{
    UvcUdp *t = udp_of_watcher(uvc_fdcheck_slot(loop->uv, fd));
    if (t != NULL && udp_fd_is_stale(t, 1)) {
        udp_lose_fd(t);
    }
}

/* Close the libuv handle (which closes the fd) once; the Python socket is detached first so
 * it never closes a descriptor number that may already be reused. */
static void udp_close_handle(UvcUdp *t)
{
    if (!t->handle_open) {
        return;
    }
    if (t->loop->uv != NULL && udp_fd_is_stale(t, 1)) {
        uvc_fdcheck_forget(t->loop->uv, &t->uv.io_watcher); /* not our number any more */
    }
    t->handle_open = 0;
    t->reading = 0;
    if (t->sock != NULL) {
        PyObject *exc = PyErr_GetRaisedException_compat();
        PyObject *r = PyObject_CallMethod(t->sock, "detach", NULL);
        if (r == NULL) {
            PyErr_WriteUnraisable(t->sock);
        }
        Py_XDECREF(r);
        PyErr_SetRaisedException_compat(exc);
    }
    if (t->loop->uv == NULL) {
        /* the loop was closed under us and libuv already closed the handle */
        if (t->self_ref) {
            t->self_ref = 0;
            Py_DECREF(t);
        }
        return;
    }
    uv_close((uv_handle_t *)&t->uv, udp_on_close);
}

/* Schedule _call_connection_lost(exc) on the loop, as asyncio does. */
static int udp_schedule_connection_lost(UvcUdp *t, PyObject *exc)
{
    t->conn_lost++;
    if (t->loop->closed) {
        udp_close_handle(t);
        return 0;
    }
    PyObject *cb = PyObject_GetAttrString((PyObject *)t, "_call_connection_lost");
    if (cb == NULL) {
        return -1;
    }
    PyObject *r = PyObject_CallMethod((PyObject *)t->loop, "call_soon", "OO", cb, exc ? exc : Py_None);
    Py_DECREF(cb);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    return 0;
}

static void udp_stop_reading(UvcUdp *t)
{
    if (t->reading && t->handle_open) {
        uv_udp_recv_stop(&t->uv);
    }
    t->reading = 0;
}

static int udp_force_close(UvcUdp *t, PyObject *exc)
{
    if (t->conn_lost) {
        return 0;
    }
    t->closing = 1;
    udp_stop_reading(t);
    /* Drop what is queued: closing the handle now cancels the pending sends. */
    udp_close_handle(t);
    t->buffer_size = 0;
    return udp_schedule_connection_lost(t, exc);
}

/* A fatal error: report non-OSErrors to the loop's handler, then abort. Consumes no
 * exception (exc is borrowed). */
static void udp_fatal_error(UvcUdp *t, PyObject *exc, const char *message)
{
    if (!PyObject_TypeCheck(exc, (PyTypeObject *)PyExc_OSError)) {
        PyObject *ctx = Py_BuildValue("{s:s,s:O,s:O,s:O}", "message", message, "exception", exc,
                                      "transport", (PyObject *)t, "protocol",
                                      t->protocol ? t->protocol : Py_None);
        if (ctx != NULL) {
            uvc_loop_report((PyObject *)t->loop, ctx);
            Py_DECREF(ctx);
        } else {
            PyErr_WriteUnraisable((PyObject *)t);
        }
    }
    if (udp_force_close(t, exc) < 0) {
        PyErr_WriteUnraisable((PyObject *)t);
    }
}

/* ---- receiving -------------------------------------------------------------------------- */

static void udp_on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    /* Runs without the GIL: C memory only. */
    UvcUdp *t = h->data;
    buf->base = t->rbuf;
    buf->len = t->rbuf ? t->rbuf_size : 0;
}

static PyObject *udp_sender(UvcUdp *t, const struct sockaddr *sa)
{
    socklen_t len = sa->sa_family == AF_INET    ? sizeof(struct sockaddr_in)
                    : sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                : sizeof(struct sockaddr_un);
    if (t->last_addr != NULL && len == t->last_len && memcmp(&t->last_sa, sa, len) == 0) {
        return Py_NewRef(t->last_addr);
    }
    PyObject *addr = udp_addr_to_py(sa);
    if (addr != NULL) {
        memcpy(&t->last_sa, sa, len);
        t->last_len = len;
        Py_XSETREF(t->last_addr, Py_NewRef(addr));
    }
    return addr;
}

static void udp_on_recv(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf, const struct sockaddr *sa,
                        unsigned flags)
{
    UvcUdp *t = h->data;
    if (nread == 0 && sa == NULL) {
        return; /* nothing more to read (EAGAIN) */
    }
    uvc_loop_acquire(t->loop);
    if (t->closing) {
        return;
    }
    Py_INCREF(t);
    if (nread < 0) {
        if (udp_error_received(t, (int)nread) < 0) {
            udp_report(t, "Exception in error_received()");
        }
        Py_DECREF(t);
        return;
    }
    PyObject *args[2] = {NULL, NULL};
    args[0] = PyBytes_FromStringAndSize(buf->base, nread);
    if (args[0] == NULL) {
        goto error;
    }
    if (sa == NULL || sa->sa_family == AF_UNSPEC) {
        args[1] = Py_NewRef(t->address ? t->address : Py_None);
    } else if ((args[1] = udp_sender(t, sa)) == NULL) {
        goto error;
    }
    PyObject *res = udp_call_protocol(t, "datagram_received", args, 2);
    if (res == NULL) {
        goto error;
    }
    Py_DECREF(res);
    Py_DECREF(args[0]);
    Py_DECREF(args[1]);
    Py_DECREF(t);
    return;
error:
    Py_XDECREF(args[0]);
    Py_XDECREF(args[1]);
    udp_report(t, "Exception in datagram_received()");
    Py_DECREF(t);
}

static int udp_start_reading(UvcUdp *t)
{
    if (t->reading || t->closing || t->paused || !t->handle_open) {
        return 0;
    }
    if (t->rbuf == NULL) {
        t->rbuf_size = t->family == AF_UNIX ? UDP_MAX_SIZE : 65536;
        t->rbuf = PyMem_RawMalloc(t->rbuf_size);
        if (t->rbuf == NULL) {
            PyErr_NoMemory();
            return -1;
        }
    }
    int err = uv_udp_recv_start(&t->uv, udp_on_alloc, udp_on_recv);
    if (err < 0) {
        PyObject *exc = udp_oserror(err);
        if (exc == NULL) {
            return -1;
        }
        udp_fatal_error(t, exc, "Fatal read error on datagram transport");
        Py_DECREF(exc);
        return 0;
    }
    t->reading = 1;
    return 0;
}

/* ---- sending ---------------------------------------------------------------------------- */

static void udp_on_send(uv_udp_send_t *req, int status)
{
    UdpSendReq *r = (UdpSendReq *)req;
    UvcUdp *t = r->t;
    uvc_loop_acquire(t->loop);
    Py_DECREF(r->data);
    if (!t->conn_lost) {
        t->buffer_size -= r->size;
    }
    PyMem_Free(r);
    if (status == UV_ECANCELED || t->conn_lost) {
        return;
    }
    Py_INCREF(t);
    if (status < 0 && udp_error_received(t, status) < 0) {
        udp_report(t, "Exception in error_received()");
    }
    if (udp_maybe_resume_protocol(t) < 0) {
        uvc_loop_handle_callback_error(t->loop, "", NULL, NULL);
    }
    if (t->closing && t->uv.send_queue_count == 0 && !t->conn_lost) {
        if (udp_schedule_connection_lost(t, NULL) < 0) {
            PyErr_WriteUnraisable((PyObject *)t);
        }
    }
    Py_DECREF(t);
}

static PyObject *udp_sendto(UvcUdp *t, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"data", "addr"};
    PyObject *data = NULL, *addr = Py_None;
    Py_ssize_t nk = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    if (nargs > 2 || nargs + nk < 1) {
        PyErr_SetString(PyExc_TypeError, "sendto() takes data and an optional addr");
        return NULL;
    }
    if (nargs >= 1) {
        data = args[0];
    }
    if (nargs == 2) {
        addr = args[1];
    }
    for (Py_ssize_t i = 0; i < nk; i++) {
        PyObject *k = PyTuple_GET_ITEM(kwnames, i);
        if (PyUnicode_CompareWithASCIIString(k, names[0]) == 0 && nargs < 1) {
            data = args[nargs + i];
        } else if (PyUnicode_CompareWithASCIIString(k, names[1]) == 0 && nargs < 2) {
            addr = args[nargs + i];
        } else {
            PyErr_Format(PyExc_TypeError, "sendto() got an unexpected keyword argument %R", k);
            return NULL;
        }
    }
    if (data == NULL) {
        PyErr_SetString(PyExc_TypeError, "sendto() missing the data argument");
        return NULL;
    }
    if (udp_check_alive(t) < 0) {
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "data argument must be a bytes-like object, not '%.100s'",
                     Py_TYPE(data)->tp_name);
        return NULL;
    }
    PyObject *result = NULL;
    if (view.len == 0 && !UDP_SEND_EMPTY) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    const struct sockaddr *sa = NULL;
    struct sockaddr_storage ss;
    socklen_t sslen = 0;
    if (t->address != NULL) {
        if (addr != Py_None) {
            int eq = PyObject_RichCompareBool(addr, t->address, Py_EQ);
            if (eq < 0) {
                goto done;
            }
            if (!eq) {
                PyErr_Format(PyExc_ValueError, "Invalid address: must be None or %R", t->address);
                goto done;
            }
        }
        if (t->conn_lost) {
            if (t->conn_lost >= UDP_CONNLOST_WARN) {
                PyObject *log = PyImport_ImportModule("asyncio.log");
                PyObject *logger = log ? PyObject_GetAttrString(log, "logger") : NULL;
                PyObject *r = logger ? PyObject_CallMethod(logger, "warning", "s", "socket.send() raised exception.") : NULL;
                Py_XDECREF(log);
                Py_XDECREF(logger);
                Py_XDECREF(r);
                if (r == NULL) {
                    goto done;
                }
            }
            t->conn_lost++;
            result = Py_NewRef(Py_None);
            goto done;
        }
        if (!t->connected && t->has_dest) {
            sa = (const struct sockaddr *)&t->dest_sa;
        }
    } else if (addr == Py_None) {
        if (!t->connected) {
            PyErr_SetString(PyExc_ValueError,
                            "sendto() needs an address: the transport has no remote_addr");
            goto done;
        }
    } else if (addr == t->last_addr && t->last_addr != NULL) {
        sa = (const struct sockaddr *)&t->last_sa; /* replying to the last sender */
    } else {
        int r = udp_addr_from_py(t, addr, &ss, &sslen);
        if (r == -1) {
            goto done;
        }
        if (r == -2) {
            /* cannot resolve: as asyncio, the protocol hears of it through error_received */
            PyObject *exc = PyErr_GetRaisedException_compat();
            PyObject *res = udp_call_protocol(t, "error_received", &exc, 1);
            Py_DECREF(exc);
            if (res == NULL) {
                goto done;
            }
            Py_DECREF(res);
            result = Py_NewRef(Py_None);
            goto done;
        }
        sa = (const struct sockaddr *)&ss;
    }
    if (t->closing || !t->handle_open) {
        /* After close() asyncio sends through the socket until connection_lost; we drop. */
        result = Py_NewRef(Py_None);
        goto done;
    }
    uv_buf_t buf = uv_buf_init((char *)view.buf, (unsigned int)view.len);
    if (t->uv.send_queue_count == 0) {
        int n = uv_udp_try_send(&t->uv, &buf, 1, sa);
        if (n >= 0) {
            result = Py_NewRef(Py_None);
            goto done;
        }
        if (n != UV_EAGAIN) {
            if (udp_error_received(t, n) == 0) {
                result = Py_NewRef(Py_None);
            }
            goto done;
        }
    }
    /* The kernel buffer is full: queue a copy (bytes are immutable already). */
    UdpSendReq *req = PyMem_Malloc(sizeof(UdpSendReq));
    if (req == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    req->data = PyBytes_CheckExact(data) ? Py_NewRef(data) : PyBytes_FromStringAndSize(view.buf, view.len);
    if (req->data == NULL) {
        PyMem_Free(req);
        goto done;
    }
    req->t = t;
    req->size = view.len + UDP_HEADER_SIZE;
    buf = uv_buf_init(PyBytes_AS_STRING(req->data), (unsigned int)view.len);
    int err = uv_udp_send(&req->req, &t->uv, &buf, 1, sa, udp_on_send);
    if (err < 0) {
        Py_DECREF(req->data);
        PyMem_Free(req);
        if (udp_error_received(t, err) == 0) {
            result = Py_NewRef(Py_None);
        }
        goto done;
    }
    t->buffer_size += req->size;
    if (udp_maybe_pause_protocol(t) < 0) {
        goto done;
    }
    result = Py_NewRef(Py_None);
done:
    PyBuffer_Release(&view);
    return result;
}

/* ---- Python methods --------------------------------------------------------------------- */

/* UDPTransport._create(loop, sock, protocol, address, extra): adopt a bound (and maybe
 * connected) non-blocking datagram socket. The caller schedules connection_made and
 * _start_reading, as asyncio's transports do in their constructor. */
static PyObject *udp_create(PyTypeObject *tp, PyObject *args)
{
    PyObject *loop, *sock, *protocol, *address, *extra;
    if (!PyArg_ParseTuple(args, "OOOOO!:_create", &loop, &sock, &protocol, &address, &PyDict_Type, &extra)) {
        return NULL;
    }
    uvc_state *st = uvc_state_from_type(tp);
    if (st == NULL) {
        return NULL;
    }
    if (!PyObject_TypeCheck(loop, st->LoopType)) {
        PyErr_SetString(PyExc_TypeError, "_create() needs a uvcore loop");
        return NULL;
    }
    UvcLoop *lp = (UvcLoop *)loop;
    if (uvc_loop_check_closed(lp) < 0) {
        return NULL;
    }
    int fd = PyObject_AsFileDescriptor(sock);
    if (fd < 0) {
        return NULL;
    }
    PyObject *fam = PyObject_GetAttrString(sock, "family");
    if (fam == NULL) {
        return NULL;
    }
    long family = PyLong_AsLong(fam);
    Py_DECREF(fam);
    if (family == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (family != AF_INET && family != AF_INET6 && family != AF_UNIX) {
        PyErr_Format(PyExc_ValueError, "unsupported address family %ld for a datagram transport", family);
        return NULL;
    }
    UvcUdp *t = (UvcUdp *)tp->tp_alloc(tp, 0);
    if (t == NULL) {
        return NULL;
    }
    if (uvc_instance_dict_init(&t->dict) < 0) {
        Py_DECREF(t);
        return NULL;
    }
    t->st = st;
    t->module = Py_NewRef(PyType_GetModule(st->LoopType));
    t->loop = (UvcLoop *)Py_NewRef(loop);
    t->protocol = Py_NewRef(protocol);
    t->sock = Py_NewRef(sock);
    t->extra = Py_NewRef(extra);
    t->family = (int)family;
    t->high_water = 64 * 1024;
    t->low_water = 16 * 1024;
    t->context = PyContext_CopyCurrent();
    if (t->context == NULL) {
        goto error;
    }
    PyObject *peer = PyDict_GetItemString(extra, "peername");
    t->connected = peer != NULL && peer != Py_None;
    if (address != Py_None) {
        t->address = Py_NewRef(address);
        if (!t->connected) {
            socklen_t len;
            int r = udp_addr_from_py(t, address, &t->dest_sa, &len);
            if (r < 0) {
                goto error;
            }
            t->has_dest = 1;
        }
    }
    if (uvc_poll_release_fd(lp, fd) < 0) {
        goto error;
    }
    int err = uv_udp_init(lp->uv, &t->uv);
    if (err < 0) {
        PyErr_SetObject(PyExc_OSError, udp_oserror(err));
        goto error;
    }
    t->uv.data = t;
    err = uv_udp_open(&t->uv, fd);
    if (err < 0) {
        /* the handle is initialised: it must be closed, but it owns no fd yet */
        t->self_ref = 1;
        Py_INCREF(t);
        uv_close((uv_handle_t *)&t->uv, udp_on_close);
        if (err == UV_EEXIST) {
            PyErr_Format(PyExc_RuntimeError, "File descriptor %d is used by another watcher", fd);
        } else {
            PyObject *exc = udp_oserror(err);
            if (exc != NULL) {
                PyErr_SetObject(PyExc_OSError, exc);
                Py_DECREF(exc);
            }
        }
        goto error;
    }
    t->handle_open = 1;
    t->self_ref = 1;
    Py_INCREF(t); /* released by udp_on_close */
    if (udp_io_cb == NULL) {
        udp_io_cb = t->uv.io_watcher.cb;
    }
    if (uvc_fd_identity(fd, &t->dev, &t->ino) == 0) {
        t->has_identity = 1;
    }
    return (PyObject *)t;
error:
    Py_DECREF(t);
    return NULL;
}

static PyObject *udp_py_start_reading(UvcUdp *t, PyObject *unused)
{
    if (udp_check_alive(t) < 0 || udp_start_reading(t) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *udp_py_call_connection_lost(UvcUdp *t, PyObject *exc)
{
    PyObject *res = NULL;
    if (t->protocol != NULL) {
        res = udp_call_protocol(t, "connection_lost", &exc, 1);
    } else {
        res = Py_NewRef(Py_None);
    }
    /* finally: release the socket and break the cycles, even when the protocol raised */
    PyObject *saved = PyErr_GetRaisedException_compat();
    udp_close_handle(t);
    Py_CLEAR(t->protocol);
    Py_CLEAR(t->last_addr);
    PyErr_SetRaisedException_compat(saved);
    return res;
}

static PyObject *udp_close(UvcUdp *t, PyObject *unused)
{
    if (udp_check_alive(t) < 0) {
        return NULL;
    }
    if (t->closing) {
        Py_RETURN_NONE;
    }
    t->closing = 1;
    udp_stop_reading(t);
    if (!t->handle_open || t->uv.send_queue_count == 0) {
        if (udp_schedule_connection_lost(t, NULL) < 0) {
            return NULL;
        }
    }
    Py_RETURN_NONE;
}

static PyObject *udp_abort(UvcUdp *t, PyObject *unused)
{
    if (udp_check_alive(t) < 0 || udp_force_close(t, NULL) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *udp_py_fatal_error(UvcUdp *t, PyObject *args)
{
    PyObject *exc;
    const char *message = "Fatal error on transport";
    if (!PyArg_ParseTuple(args, "O|s:_fatal_error", &exc, &message)) {
        return NULL;
    }
    if (udp_check_alive(t) < 0) {
        return NULL;
    }
    udp_fatal_error(t, exc, message);
    Py_RETURN_NONE;
}

/* The loop is closing: release the handle now, silently (no callbacks can run any more). */
static PyObject *udp_loop_closing(UvcUdp *t, PyObject *unused)
{
    if (t->loop == NULL) {
        Py_RETURN_NONE;
    }
    t->closing = 1;
    if (!t->conn_lost) {
        t->conn_lost = 1;
    }
    udp_close_handle(t);
    Py_CLEAR(t->protocol);
    Py_CLEAR(t->last_addr);
    Py_RETURN_NONE;
}

static PyObject *udp_is_closing(UvcUdp *t, PyObject *unused) { return PyBool_FromLong(t->closing); }

static PyObject *udp_is_reading(UvcUdp *t, PyObject *unused)
{
    return PyBool_FromLong(!t->closing && !t->paused);
}

static PyObject *udp_pause_reading(UvcUdp *t, PyObject *unused)
{
    if (udp_check_alive(t) < 0) {
        return NULL;
    }
    if (!t->closing && !t->paused) {
        t->paused = 1;
        udp_stop_reading(t);
    }
    Py_RETURN_NONE;
}

static PyObject *udp_resume_reading(UvcUdp *t, PyObject *unused)
{
    if (udp_check_alive(t) < 0) {
        return NULL;
    }
    if (t->closing || !t->paused) {
        Py_RETURN_NONE;
    }
    t->paused = 0;
    if (udp_start_reading(t) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *udp_get_extra_info(UvcUdp *t, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *name = NULL, *dflt = Py_None;
    Py_ssize_t nk = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    if (nargs >= 1) {
        name = args[0];
    }
    if (nargs >= 2) {
        dflt = args[1];
    }
    for (Py_ssize_t i = 0; i < nk; i++) {
        PyObject *k = PyTuple_GET_ITEM(kwnames, i);
        if (PyUnicode_CompareWithASCIIString(k, "name") == 0 && nargs < 1) {
            name = args[nargs + i];
        } else if (PyUnicode_CompareWithASCIIString(k, "default") == 0 && nargs < 2) {
            dflt = args[nargs + i];
        } else {
            PyErr_Format(PyExc_TypeError, "get_extra_info() got an unexpected keyword argument %R", k);
            return NULL;
        }
    }
    if (name == NULL || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "get_extra_info(name, default=None)");
        return NULL;
    }
    if (t->extra == NULL) {
        return Py_NewRef(dflt);
    }
    PyObject *v = PyDict_GetItemWithError(t->extra, name);
    if (v == NULL) {
        return PyErr_Occurred() ? NULL : Py_NewRef(dflt);
    }
    return Py_NewRef(v);
}

static PyObject *udp_get_protocol(UvcUdp *t, PyObject *unused)
{
    return Py_NewRef(t->protocol ? t->protocol : Py_None);
}

static PyObject *udp_set_protocol(UvcUdp *t, PyObject *protocol)
{
    Py_XSETREF(t->protocol, Py_NewRef(protocol));
    Py_RETURN_NONE;
}

static PyObject *udp_get_write_buffer_size(UvcUdp *t, PyObject *unused)
{
    return PyLong_FromSsize_t(t->buffer_size);
}

static PyObject *udp_get_write_buffer_limits(UvcUdp *t, PyObject *unused)
{
    return Py_BuildValue("(nn)", t->low_water, t->high_water);
}

static PyObject *udp_set_write_buffer_limits(UvcUdp *t, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"high", "low", NULL};
    PyObject *ho = Py_None, *lo = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|OO:set_write_buffer_limits", kwlist, &ho, &lo)) {
        return NULL;
    }
    Py_ssize_t high = 0, low = 0;
    if (ho != Py_None && ((high = PyNumber_AsSsize_t(ho, PyExc_OverflowError)) == -1 && PyErr_Occurred())) {
        return NULL;
    }
    if (lo != Py_None && ((low = PyNumber_AsSsize_t(lo, PyExc_OverflowError)) == -1 && PyErr_Occurred())) {
        return NULL;
    }
    if (ho == Py_None) {
        high = lo == Py_None ? 64 * 1024 : 4 * low;
    }
    if (lo == Py_None) {
        low = high / 4;
    }
    if (!(high >= low && low >= 0)) {
        PyErr_Format(PyExc_ValueError, "high (%zd) must be >= low (%zd) must be >= 0", high, low);
        return NULL;
    }
    t->high_water = high;
    t->low_water = low;
    if (t->loop != NULL && udp_maybe_pause_protocol(t) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *udp_repr(UvcUdp *t)
{
    const char *state = !t->handle_open ? " closed" : t->closing ? " closing" : "";
    int fd = -1;
    if (t->handle_open) {
        uv_os_fd_t ofd;
        if (uv_fileno((uv_handle_t *)&t->uv, &ofd) == 0) {
            fd = ofd;
        }
    }
    return PyUnicode_FromFormat("<%s%s fd=%d read=%s write=<bufsize=%zd>>", _PyType_Name(Py_TYPE(t)), state,
                                fd, t->reading ? "polling" : "idle", t->buffer_size);
}

static PyObject *udp_get_loop(UvcUdp *t, void *c) { return Py_NewRef(t->loop ? (PyObject *)t->loop : Py_None); }
static PyObject *udp_get_sock(UvcUdp *t, void *c) { return Py_NewRef(t->sock ? t->sock : Py_None); }
static PyObject *udp_get_address(UvcUdp *t, void *c) { return Py_NewRef(t->address ? t->address : Py_None); }
static PyObject *udp_get_conn_lost(UvcUdp *t, void *c) { return PyLong_FromLong(t->conn_lost); }
static PyObject *udp_get_handle_open(UvcUdp *t, void *c) { return PyBool_FromLong(t->handle_open); }

static PyGetSetDef udp_getset[] = {
    {"_loop", (getter)udp_get_loop, NULL, NULL, NULL},
    {"_sock", (getter)udp_get_sock, NULL, NULL, NULL},
    {"_address", (getter)udp_get_address, NULL, NULL, NULL},
    {"_conn_lost", (getter)udp_get_conn_lost, NULL, NULL, NULL},
    {"_handle_open", (getter)udp_get_handle_open, NULL, NULL, NULL},
    {"__dict__", PyObject_GenericGetDict, PyObject_GenericSetDict, NULL, NULL},
    {NULL},
};

static int udp_traverse(UvcUdp *t, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(t));
    Py_VISIT(t->extra);
    Py_VISIT(t->module);
    Py_VISIT(t->loop);
    Py_VISIT(t->protocol);
    Py_VISIT(t->sock);
    Py_VISIT(t->address);
    Py_VISIT(t->context);
    Py_VISIT(t->last_addr);
    Py_VISIT(t->dict);
    return 0;
}

static int udp_clear(UvcUdp *t)
{
    /* The loop stays: an open handle needs it until its close callback. */
    Py_CLEAR(t->extra);
    Py_CLEAR(t->protocol);
    Py_CLEAR(t->address);
    Py_CLEAR(t->context);
    Py_CLEAR(t->last_addr);
    Py_CLEAR(t->dict);
    return 0;
}

static void udp_dealloc(UvcUdp *t)
{
    PyTypeObject *tp = Py_TYPE(t);
    PyObject_GC_UnTrack(t);
    if (t->weakreflist != NULL) {
        PyObject_ClearWeakRefs((PyObject *)t);
    }
    udp_clear(t);
    Py_CLEAR(t->sock);
    Py_CLEAR(t->loop);
    Py_CLEAR(t->module);
    PyMem_RawFree(t->rbuf);
    tp->tp_free(t);
    Py_DECREF(tp);
}

static PyObject *udp_tp_new(PyTypeObject *tp, PyObject *args, PyObject *kwds)
{
    PyErr_SetString(PyExc_TypeError, "UDPTransport objects are made by loop.create_datagram_endpoint()");
    return NULL;
}

#define FASTKW (METH_FASTCALL | METH_KEYWORDS)
static PyMethodDef udp_methods[] = {
    {"_create", (PyCFunction)udp_create, METH_VARARGS | METH_CLASS, NULL},
    {"_start_reading", (PyCFunction)udp_py_start_reading, METH_NOARGS, NULL},
    {"_call_connection_lost", (PyCFunction)udp_py_call_connection_lost, METH_O, NULL},
    {"_fatal_error", (PyCFunction)udp_py_fatal_error, METH_VARARGS, NULL},
    {"_loop_closing", (PyCFunction)udp_loop_closing, METH_NOARGS, NULL},
    {"sendto", (PyCFunction)(void (*)(void))udp_sendto, FASTKW,
     "sendto(data, addr=None): send one datagram (to the remote address when connected)."},
    {"close", (PyCFunction)udp_close, METH_NOARGS, "Close after the queued datagrams are sent."},
    {"abort", (PyCFunction)udp_abort, METH_NOARGS, "Close now, dropping queued datagrams."},
    {"is_closing", (PyCFunction)udp_is_closing, METH_NOARGS, NULL},
    {"is_reading", (PyCFunction)udp_is_reading, METH_NOARGS, NULL},
    {"pause_reading", (PyCFunction)udp_pause_reading, METH_NOARGS, NULL},
    {"resume_reading", (PyCFunction)udp_resume_reading, METH_NOARGS, NULL},
    {"get_extra_info", (PyCFunction)(void (*)(void))udp_get_extra_info, FASTKW,
     "get_extra_info(name, default=None): 'socket', 'sockname', 'peername'."},
    {"get_protocol", (PyCFunction)udp_get_protocol, METH_NOARGS, NULL},
    {"set_protocol", (PyCFunction)udp_set_protocol, METH_O, NULL},
    {"get_write_buffer_size", (PyCFunction)udp_get_write_buffer_size, METH_NOARGS,
     "Bytes queued for sending (the kernel buffer was full)."},
    {"get_write_buffer_limits", (PyCFunction)udp_get_write_buffer_limits, METH_NOARGS, NULL},
    {"set_write_buffer_limits", (PyCFunction)(void (*)(void))udp_set_write_buffer_limits,
     METH_VARARGS | METH_KEYWORDS, NULL},
    {NULL},
};

static PyMemberDef udp_members[] = {
    {"__weaklistoffset__", T_PYSSIZET, offsetof(UvcUdp, weakreflist), READONLY},
    {"__dictoffset__", T_PYSSIZET, offsetof(UvcUdp, dict), READONLY},
    {NULL},
};

static PyType_Slot udp_slots[] = {
    {Py_tp_new, udp_tp_new},
    {Py_tp_dealloc, udp_dealloc},
    {Py_tp_traverse, udp_traverse},
    {Py_tp_clear, udp_clear},
    {Py_tp_repr, udp_repr},
    {Py_tp_methods, udp_methods},
    {Py_tp_members, udp_members},
    {Py_tp_getset, udp_getset},
    {Py_tp_doc, "A datagram transport on libuv (made by loop.create_datagram_endpoint())."},
    {0, NULL},
};

static PyType_Spec udp_spec = {
    .name = "uvcore._uvcore.UDPTransport",
    .basicsize = sizeof(UvcUdp),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = udp_slots,
};

/* The transport is an asyncio.Transport and asyncio.DatagramTransport (isinstance checks in
 * user code and CPython's tests). Those Python classes keep one slot, _extra, right after the
 * object header; UvcUdp reserves it in the same place. */
int uvc_udp_module_init(PyObject *m, uvc_state *st)
{
    PyObject *transport = PyObject_GetAttrString(st->asyncio, "Transport");
    PyObject *datagram = PyObject_GetAttrString(st->asyncio, "DatagramTransport");
    PyObject *bases = NULL;
    int r = -1;
    if (transport == NULL || datagram == NULL) {
        goto done;
    }
    if (((PyTypeObject *)transport)->tp_basicsize != offsetof(UvcUdp, st) ||
        ((PyTypeObject *)datagram)->tp_basicsize != offsetof(UvcUdp, st)) {
        PyErr_SetString(PyExc_ImportError, "asyncio.Transport has an unexpected layout");
        goto done;
    }
    bases = PyTuple_Pack(2, transport, datagram);
    if (bases == NULL) {
        goto done;
    }
    r = uvc_add_type(m, &udp_spec, bases, &st->UDPTransportType);
done:
    Py_XDECREF(transport);
    Py_XDECREF(datagram);
    Py_XDECREF(bases);
    return r;
}
