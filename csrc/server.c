/* server.c: Listener, one listening socket of a uvcore Server (python/uvcore/_net.py holds
 * the Server object and creates, binds and cleans up the sockets). libuv accepts; for each
 * connection we call the protocol factory and start a StreamTransport on the accepted handle,
 * all in C, so a connection costs no Python-level code besides the user's protocol. */
#include "stream.h"

typedef struct {
    PyObject_HEAD
    uvc_state *st;
    PyObject *module;
    UvcLoop *loop;
    PyObject *sock;             /* the listening socket.socket; detached before uv_close */
    PyObject *protocol_factory;
    PyObject *server;           /* the Python Server: transports call its _attach/_detach */
    PyObject *context;          /* copied by listen(); each connection gets its own copy */
    PyObject *weakreflist;
    UvcLink link;
    int kind, backlog;
    unsigned opened : 1, handle_closing : 1, listening : 1;
    UvcStreamHandle uv;
} UvcListener;

/* The listener's handle holds a reference to the listener from initialisation until
 * uv_close's callback, as transports do (see stream.c). */
static void listener_on_close(uv_handle_t *h)
{
    UvcListener *l = h->data;
    uvc_loop_acquire(l->loop);
    uvc_link_remove(l->st, &l->link);
    Py_DECREF(l);
}

static void listener_close_handle(UvcListener *l)
{
    if (!l->opened || l->handle_closing) {
        return;
    }
    l->handle_closing = 1;
    l->listening = 0;
    uvc_detach_socket(l->sock);
    uv_close(&l->uv.handle, listener_on_close);
}

static void listener_link_close(UvcLink *link)
{
    listener_close_handle((UvcListener *)((char *)link - offsetof(UvcListener, link)));
}

static void listener_report(UvcListener *l, const char *message)
{
    if (!PyErr_ExceptionMatches(PyExc_Exception)) {
        uvc_loop_handle_callback_error(l->loop, message, NULL, NULL);
        return;
    }
    PyObject *exc = PyErr_GetRaisedException_compat();
    PyObject *ctx = Py_BuildValue("{s:s,s:O,s:O}", "message", message, "exception", exc, "server",
                                  l->server ? l->server : Py_None);
    if (ctx != NULL) {
        uvc_loop_report((PyObject *)l->loop, ctx);
        Py_DECREF(ctx);
    } else {
        PyErr_WriteUnraisable((PyObject *)l);
    }
    Py_DECREF(exc);
}

/* Accept one connection into a new transport; errors are reported, never raised. */
static void listener_accept(UvcListener *l)
{
    UvcStream *t = uvc_stream_alloc(l->loop);
    if (t == NULL) {
        listener_report(l, "Error on transport creation for incoming connection");
        return;
    }
    uv_stream_t *s = uvc_stream_uv(t);
    int err = l->kind == UVC_KIND_PIPE ? uvc_unix_init(l->loop, (uv_pipe_t *)s)
                                        : uvc_tcp_init(l->loop, (uv_tcp_t *)s);
    if (err < 0) {
        Py_DECREF(t);
        uvc_set_uv_error(err);
        listener_report(l, "Error on transport creation for incoming connection");
        return;
    }
    uvc_stream_set_opened(t, l->kind);
    err = uv_accept(&l->uv.stream, s);
    if (err < 0) {
        uvc_stream_discard(t);
        if (err != UV_EAGAIN) {
            uvc_set_uv_error(err);
            listener_report(l, "Error accepting a connection");
        }
        return;
    }
    /* libuv accepted a new file: a watcher a closed file left on its number must go before
     * the transport starts reading, or it would keep the slot and steal the events */
    uv_os_fd_t newfd;
    if (uv_fileno((uv_handle_t *)s, &newfd) == 0 && uvc_poll_release_fd(l->loop, newfd) < 0) {
        listener_report(l, "Error on transport creation for incoming connection");
    }
    /* asyncio makes the protocol in a copy of the server's context, one per connection */
    PyObject *ctx = l->context ? PyContext_Copy(l->context) : PyContext_CopyCurrent();
    if (ctx == NULL) {
        uvc_stream_discard(t);
        listener_report(l, "Error on transport creation for incoming connection");
        return;
    }
    PyObject *protocol = NULL;
    if (PyContext_Enter(ctx) == 0) {
        protocol = PyObject_CallNoArgs(l->protocol_factory);
        PyObject *exc = PyErr_GetRaisedException_compat();
        if (PyContext_Exit(ctx) < 0) {
            PyErr_WriteUnraisable(ctx);
        }
        PyErr_SetRaisedException_compat(exc);
    }
    if (protocol == NULL || uvc_stream_start(t, protocol, l->server, NULL, ctx) < 0) {
        /* asyncio reports these only in debug mode */
        if (l->loop->debug || !PyErr_ExceptionMatches(PyExc_Exception)) {
            listener_report(l, "Error on transport creation for incoming connection");
        } else {
            PyErr_Clear();
        }
        uvc_stream_discard(t);
    } else {
        Py_DECREF(t); /* the open handle keeps it alive */
    }
    Py_XDECREF(protocol);
    Py_DECREF(ctx);
}

static void listener_on_connection(uv_stream_t *s, int status)
{
    UvcListener *l = s->data;
    uvc_loop_acquire(l->loop);
    Py_INCREF(l); /* the protocol factory may close the server */
    if (status < 0) {
        uvc_set_uv_error(status);
        listener_report(l, "socket.accept() out of system resource");
    } else if (!l->handle_closing) {
        listener_accept(l);
    }
    Py_DECREF(l);
}

/* Listener(loop, sock, protocol_factory, server, backlog): adopt a bound socket. */
static PyObject *listener_tp_new(PyTypeObject *tp, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"loop", "sock", "protocol_factory", "server", "backlog", NULL};
    PyObject *loop, *sock, *factory, *server;
    int backlog = 100;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOOO|i:Listener", kwlist, &loop, &sock, &factory,
                                     &server, &backlog)) {
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
    if (!PyCallable_Check(factory)) {
        PyErr_SetString(PyExc_TypeError, "protocol_factory must be callable");
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
    UvcListener *l = (UvcListener *)tp->tp_alloc(tp, 0);
    if (l == NULL) {
        return NULL;
    }
    l->st = st;
    l->module = Py_NewRef(lp->module);
    l->loop = (UvcLoop *)Py_NewRef(lp);
    l->protocol_factory = Py_NewRef(factory);
    l->server = server == Py_None ? NULL : Py_NewRef(server);
    l->backlog = backlog;
    l->kind = family == AF_UNIX ? UVC_KIND_PIPE : UVC_KIND_TCP;
    int err = l->kind == UVC_KIND_PIPE ? uvc_unix_init(lp, &l->uv.pipe) : uvc_tcp_init(lp, &l->uv.tcp);
    if (err < 0) {
        Py_DECREF(l);
        uvc_set_uv_error(err);
        return NULL;
    }
    l->uv.handle.data = l;
    l->opened = 1;
    Py_INCREF(l); /* held by the open handle until listener_on_close */
    uvc_link_add(st, &l->link, lp, listener_link_close);
    if (uvc_poll_release_fd(lp, fd) < 0) {
        listener_close_handle(l);
        Py_DECREF(l);
        return NULL;
    }
    err = l->kind == UVC_KIND_PIPE ? uv_pipe_open(&l->uv.pipe, fd) : uv_tcp_open(&l->uv.tcp, fd);
    if (err < 0) {
        listener_close_handle(l); /* no sock yet: the socket object keeps its fd */
        Py_DECREF(l);
        uvc_set_uv_error(err);
        return NULL;
    }
    l->sock = Py_NewRef(sock);
    return (PyObject *)l;
}

static PyObject *listener_listen(UvcListener *l, PyObject *unused)
{
    if (uvc_stream_check_thread(l->loop) < 0) {
        return NULL;
    }
    if (l->listening) {
        Py_RETURN_NONE;
    }
    if (!l->opened || l->handle_closing) {
        PyErr_SetString(PyExc_RuntimeError, "the listener is closed");
        return NULL;
    }
    if (l->context == NULL && (l->context = PyContext_CopyCurrent()) == NULL) {
        return NULL;
    }
    int err = uv_listen(&l->uv.stream, l->backlog, listener_on_connection);
    if (err < 0) {
        uvc_set_uv_error(err);
        return NULL;
    }
    l->listening = 1;
    Py_RETURN_NONE;
}

static PyObject *listener_close(UvcListener *l, PyObject *unused)
{
    if (uvc_stream_check_thread(l->loop) < 0) {
        return NULL;
    }
    listener_close_handle(l);
    Py_RETURN_NONE;
}

static PyObject *listener_is_listening(UvcListener *l, PyObject *unused) { return PyBool_FromLong(l->listening); }

static int listener_traverse(UvcListener *l, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(l));
    Py_VISIT(l->module);
    Py_VISIT(l->loop);
    Py_VISIT(l->sock);
    Py_VISIT(l->protocol_factory);
    Py_VISIT(l->server);
    Py_VISIT(l->context);
    return 0;
}

static int listener_clear(UvcListener *l)
{
    Py_CLEAR(l->sock);
    Py_CLEAR(l->protocol_factory);
    Py_CLEAR(l->server);
    Py_CLEAR(l->context);
    return 0;
}

static void listener_dealloc(UvcListener *l)
{
    PyTypeObject *tp = Py_TYPE(l);
    PyObject_GC_UnTrack(l);
    if (l->weakreflist != NULL) {
        PyObject_ClearWeakRefs((PyObject *)l);
    }
    listener_clear(l);
    Py_CLEAR(l->loop);
    Py_CLEAR(l->module);
    tp->tp_free(l);
    Py_DECREF(tp);
}

static PyObject *listener_repr(UvcListener *l)
{
    return PyUnicode_FromFormat("<uvcore.Listener %s%s>", l->kind == UVC_KIND_PIPE ? "unix" : "tcp",
                                l->handle_closing ? " closed" : l->listening ? " listening" : "");
}

static PyMemberDef listener_members[] = {
    {"__weaklistoffset__", T_PYSSIZET, offsetof(UvcListener, weakreflist), READONLY},
    {"sock", T_OBJECT, offsetof(UvcListener, sock), READONLY, "The listening socket."},
    {NULL},
};

static PyMethodDef listener_methods[] = {
    {"listen", (PyCFunction)listener_listen, METH_NOARGS, "Start accepting connections."},
    {"close", (PyCFunction)listener_close, METH_NOARGS, "Stop accepting and close the socket."},
    {"is_listening", (PyCFunction)listener_is_listening, METH_NOARGS, NULL},
    {NULL},
};

static PyType_Slot listener_slots[] = {
    {Py_tp_new, listener_tp_new},
    {Py_tp_dealloc, listener_dealloc},
    {Py_tp_traverse, listener_traverse},
    {Py_tp_clear, listener_clear},
    {Py_tp_repr, listener_repr},
    {Py_tp_methods, listener_methods},
    {Py_tp_members, listener_members},
    {Py_tp_doc, "One listening socket of a uvcore Server: accepts into StreamTransports."},
    {0, NULL},
};

PyType_Spec uvc_listener_spec = {
    .name = "uvcore._uvcore.Listener",
    .basicsize = sizeof(UvcListener),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = listener_slots,
};
