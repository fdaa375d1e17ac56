/* dns.c: loop.getaddrinfo() and loop.getnameinfo() on libuv's thread pool (uv_getaddrinfo,
 * uv_getnameinfo) instead of asyncio's default executor. A DnsRequest owns one libuv request
 * and completes an asyncio Future on the loop thread; the argument checks that make the
 * errors identical to the socket module's live in python/uvcore/_loop.py. */
#include "loop.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <limits.h>
#include <string.h>

/* Ownership: while its libuv request is in flight the DnsRequest holds a reference to itself
 * (dropped by the completion callback, which libuv always calls, also after uv_cancel), so
 * the embedded uv request never outlives its memory. Pending requests of a loop form a list
 * so loop.close() can cancel the ones still queued. */
typedef struct UvcDnsRequest {
    PyObject_HEAD
    UvcLoop *loop;        /* strong */
    PyObject *future;     /* strong: completed with the answer unless already done */
    struct UvcDnsRequest *prev, *next; /* the loop's pending list; in flight only */
    int in_flight;
    union {
        uv_req_t any;
        uv_getaddrinfo_t addrinfo;
        uv_getnameinfo_t nameinfo;
    } req;
} UvcDnsRequest;

static void dns_link(UvcDnsRequest *r)
{
    r->prev = NULL;
    r->next = r->loop->dns_pending;
    if (r->next != NULL) {
        r->next->prev = r;
    }
    r->loop->dns_pending = r;
    r->in_flight = 1;
    Py_INCREF(r);
}

/* Called once per request from its completion callback; drops the in-flight reference
 * (the caller must not touch r afterwards unless it holds its own reference). */
static void dns_unlink(UvcDnsRequest *r)
{
    if (r->prev != NULL) {
        r->prev->next = r->next;
    }
    else {
        r->loop->dns_pending = r->next;
    }
    if (r->next != NULL) {
        r->next->prev = r->prev;
    }
    r->prev = r->next = NULL;
    r->in_flight = 0;
}

void uvc_dns_cancel_all(UvcLoop *loop)
{
    for (UvcDnsRequest *r = loop->dns_pending; r != NULL; r = r->next) {
        uv_cancel(&r->req.any); /* fails harmlessly for a request a worker already runs */
    }
}

/* libuv reports resolver failures as UV_EAI_*; socket.gaierror carries the C library's
 * EAI_* number and gai_strerror() text, as socket.getaddrinfo() raises it. */
static int dns_eai_code(int status)
{
    switch (status) {
    case UV_EAI_AGAIN: return EAI_AGAIN;
    case UV_EAI_BADFLAGS: return EAI_BADFLAGS;
    case UV_EAI_FAIL: return EAI_FAIL;
    case UV_EAI_FAMILY: return EAI_FAMILY;
    case UV_EAI_MEMORY: return EAI_MEMORY;
    case UV_EAI_NONAME: return EAI_NONAME;
    case UV_EAI_OVERFLOW: return EAI_OVERFLOW;
    case UV_EAI_SERVICE: return EAI_SERVICE;
    case UV_EAI_SOCKTYPE: return EAI_SOCKTYPE;
#ifdef EAI_ADDRFAMILY
    case UV_EAI_ADDRFAMILY: return EAI_ADDRFAMILY;
#endif
#ifdef EAI_NODATA
    case UV_EAI_NODATA: return EAI_NODATA;
#endif
    default: return 0;
    }
}

/* A new reference to the exception for a failed request. */
static PyObject *dns_error(int status)
{
    int eai = dns_eai_code(status);
    if (eai == 0) {
        if (status > -1000 && status < 0 && status != UV_EAI_BADHINTS && status != UV_EAI_PROTOCOL) {
            /* a plain errno (UV_ENOMEM, ...) */
            return PyObject_CallFunction(PyExc_OSError, "is", -status, uv_strerror(status));
        }
        return PyObject_CallFunction(PyExc_OSError, "s", uv_strerror(status));
    }
    PyObject *socket_mod = PyImport_ImportModule("socket");
    if (socket_mod == NULL) {
        return NULL;
    }
    PyObject *exc = PyObject_CallMethod(socket_mod, "gaierror", "is", eai, gai_strerror(eai));
    Py_DECREF(socket_mod);
    return exc;
}

/* The socket module's form of a resolved address: (host, port) for IPv4, (host, port,
 * flowinfo, scope_id) for IPv6, (family, raw bytes) for anything else. New reference. */
static PyObject *dns_sockaddr(const struct sockaddr *sa)
{
    char host[INET6_ADDRSTRLEN];
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
        return Py_BuildValue("(si)", host, (int)ntohs(in->sin_port));
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
        return Py_BuildValue("(siII)", host, (int)ntohs(in6->sin6_port),
                             (unsigned int)ntohl(in6->sin6_flowinfo), (unsigned int)in6->sin6_scope_id);
    }
    return Py_BuildValue("(iy#)", (int)sa->sa_family, sa->sa_data, (Py_ssize_t)sizeof(sa->sa_data));
}

/* New reference: [(family, type, proto, canonname, sockaddr), ...] with plain ints; the
 * Python layer turns family/type into socket.AddressFamily/SocketKind as socket does. */
static PyObject *dns_addrinfo_list(const struct addrinfo *res)
{
    PyObject *list = PyList_New(0);
    if (list == NULL) {
        return NULL;
    }
    for (const struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        PyObject *addr = dns_sockaddr(ai->ai_addr);
        if (addr == NULL) {
            goto error;
        }
        PyObject *item = Py_BuildValue("(iiisN)", ai->ai_family, ai->ai_socktype, ai->ai_protocol,
                                       ai->ai_canonname ? ai->ai_canonname : "", addr);
        if (item == NULL) {
            goto error;
        }
        int rc = PyList_Append(list, item);
        Py_DECREF(item);
        if (rc < 0) {
            goto error;
        }
    }
    return list;
error:
    Py_DECREF(list);
    return NULL;
}

/* Complete the future with result (or with exc when result is NULL); steals both. A future
 * already done (its awaiter was cancelled) or a closed loop takes nothing. */
static void dns_finish(UvcDnsRequest *r, PyObject *result, PyObject *exc)
{
    if (result == NULL && exc == NULL) {
        /* building the answer itself failed: hand that error to the awaiter */
        exc = PyErr_GetRaisedException_compat();
    }
    if (r->loop->closed) {
        goto done;
    }
    PyObject *done = PyObject_CallMethod(r->future, "done", NULL);
    if (done == NULL) {
        goto report;
    }
    int is_done = PyObject_IsTrue(done);
    Py_DECREF(done);
    if (is_done) {
        goto done;
    }
    PyObject *rv = result != NULL ? PyObject_CallMethod(r->future, "set_result", "(O)", result)
                                  : PyObject_CallMethod(r->future, "set_exception", "(O)", exc);
    if (rv == NULL) {
        goto report;
    }
    Py_DECREF(rv);
    goto done;
report:
    uvc_loop_handle_callback_error(r->loop, "Exception in a DNS request callback", NULL, NULL);
done:
    Py_XDECREF(result);
    Py_XDECREF(exc);
}

/* The part of a completion both kinds share: 1 when the lookup succeeded and its answer is
 * the caller's to deliver; 0 when it was cancelled (the awaiter is gone or the loop is
 * closing) or failed, in which case the request is already settled and released. */
static int dns_settle(UvcDnsRequest *r, int status)
{
    uvc_loop_acquire(r->loop);
    dns_unlink(r);
    if (status >= 0) {
        return 1;
    }
    if (status != UV_EAI_CANCELED && status != UV_ECANCELED) {
        dns_finish(r, NULL, dns_error(status));
    }
    Py_DECREF(r);
    return 0;
}

static void dns_on_addrinfo(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    UvcDnsRequest *r = req->data;
    if (dns_settle(r, status)) {
        dns_finish(r, dns_addrinfo_list(res), NULL);
        Py_DECREF(r);
    }
    uv_freeaddrinfo(res);
}

static void dns_on_nameinfo(uv_getnameinfo_t *req, int status, const char *hostname,
                            const char *service)
{
    UvcDnsRequest *r = req->data;
    if (dns_settle(r, status)) {
        dns_finish(r, Py_BuildValue("(ss)", hostname, service), NULL);
        Py_DECREF(r);
    }
}

/* A new request bound to loop and future, or NULL with an exception set. */
static UvcDnsRequest *dns_request_new(PyObject *module, PyObject *loop, PyObject *future)
{
    uvc_state *st = uvc_state_of_module(module);
    if (!PyObject_TypeCheck(loop, st->LoopType)) {
        PyErr_Format(PyExc_TypeError, "expected a uvcore Loop, got %.100s", Py_TYPE(loop)->tp_name);
        return NULL;
    }
    if (uvc_loop_check_closed((UvcLoop *)loop) < 0) {
        return NULL;
    }
    UvcDnsRequest *r = PyObject_GC_New(UvcDnsRequest, st->DnsRequestType);
    if (r == NULL) {
        return NULL;
    }
    r->loop = (UvcLoop *)Py_NewRef(loop);
    r->future = Py_NewRef(future);
    r->prev = r->next = NULL;
    r->in_flight = 0;
    memset(&r->req, 0, sizeof(r->req));
    r->req.any.data = r;
    PyObject_GC_Track(r);
    return r;
}

/* The request once uv_getaddrinfo/uv_getnameinfo answered `err`: linked into the loop's
 * pending list and returned, or released with the socket module's exception raised. */
static PyObject *dns_started(UvcDnsRequest *r, int err)
{
    if (err < 0) {
        PyObject *exc = dns_error(err);
        if (exc != NULL) {
            PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
            Py_DECREF(exc);
        }
        Py_DECREF(r);
        return NULL;
    }
    dns_link(r);
    return (PyObject *)r;
}

/* _getaddrinfo(loop, future, host: bytes|None, port: bytes|None, family, type, proto, flags)
 * starts the lookup and returns its DnsRequest (whose cancel() withdraws it). */
static PyObject *dns_getaddrinfo(PyObject *module, PyObject *args)
{
    PyObject *loop, *future, *host_obj, *port_obj;
    const char *host = NULL, *port = NULL;
    int family, socktype, proto, flags;
    if (!PyArg_ParseTuple(args, "OOOOiiii:_getaddrinfo", &loop, &future, &host_obj, &port_obj,
                          &family, &socktype, &proto, &flags)) {
        return NULL;
    }
    /* bytes or None; PyBytes_AsStringAndSize rejects embedded NULs with ValueError */
    if ((!Py_IsNone(host_obj) && PyBytes_AsStringAndSize(host_obj, (char **)&host, NULL) < 0) ||
        (!Py_IsNone(port_obj) && PyBytes_AsStringAndSize(port_obj, (char **)&port, NULL) < 0)) {
        return NULL;
    }
    UvcDnsRequest *r = dns_request_new(module, loop, future);
    if (r == NULL) {
        return NULL;
    }
    struct addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = family;
    hints.ai_socktype = socktype;
    hints.ai_protocol = proto;
    hints.ai_flags = flags;
    r->req.addrinfo.data = r;
    return dns_started(r, uv_getaddrinfo(r->loop->uv, &r->req.addrinfo, dns_on_addrinfo,
                                          host, port, &hints));
}

/* _getnameinfo(loop, future, family, host, port, flowinfo, scope_id, flags): host is a
 * numeric address the Python layer already checked with the socket module. */
static PyObject *dns_getnameinfo(PyObject *module, PyObject *args)
{
    PyObject *loop, *future;
    const char *host;
    int family, port, flags;
    unsigned int flowinfo, scope_id;
    if (!PyArg_ParseTuple(args, "OOisiIIi:_getnameinfo", &loop, &future, &family, &host, &port,
                          &flowinfo, &scope_id, &flags)) {
        return NULL;
    }
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    int err;
    if (family == AF_INET) {
        err = uv_ip4_addr(host, port, (struct sockaddr_in *)&ss);
    }
    else if (family == AF_INET6) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
        /* uv_ip6_addr reads a "%scope" suffix; the caller passes the scope id separately */
        err = uv_ip6_addr(host, port, in6);
        in6->sin6_flowinfo = htonl(flowinfo);
        in6->sin6_scope_id = scope_id;
    }
    else {
        PyErr_Format(PyExc_OSError, "getnameinfo(): unsupported address family %d", family);
        return NULL;
    }
    if (err < 0) {
        PyErr_Format(PyExc_OSError, "getnameinfo(): illegal address %s", host);
        return NULL;
    }
    UvcDnsRequest *r = dns_request_new(module, loop, future);
    if (r == NULL) {
        return NULL;
    }
    r->req.nameinfo.data = r;
    return dns_started(r, uv_getnameinfo(r->loop->uv, &r->req.nameinfo, dns_on_nameinfo,
                                          (struct sockaddr *)&ss, flags));
}

static PyObject *dns_request_cancel(UvcDnsRequest *r, PyObject *unused)
{
    if (!r->in_flight) {
        Py_RETURN_FALSE;
    }
    return PyBool_FromLong(uv_cancel(&r->req.any) == 0);
}

static PyObject *dns_request_repr(UvcDnsRequest *r)
{
    return PyUnicode_FromFormat("<%s %s>", _PyType_Name(Py_TYPE(r)), r->in_flight ? "pending" : "done");
}

static int dns_request_traverse(UvcDnsRequest *r, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(r));
    Py_VISIT(r->loop);
    Py_VISIT(r->future);
    return 0;
}

static int dns_request_clear(UvcDnsRequest *r)
{
    /* an in-flight request is kept alive by its own reference, so never cleared mid-flight */
    Py_CLEAR(r->future);
    return 0;
}

static void dns_request_dealloc(UvcDnsRequest *r)
{
    PyTypeObject *tp = Py_TYPE(r);
    PyObject_GC_UnTrack(r);
    Py_CLEAR(r->future);
    Py_CLEAR(r->loop);
    PyObject_GC_Del(r);
    Py_DECREF(tp);
}

static PyObject *dns_request_tp_new(PyTypeObject *tp, PyObject *args, PyObject *kwds)
{
    PyErr_SetString(PyExc_TypeError, "DnsRequest objects are made by loop.getaddrinfo()/getnameinfo()");
    return NULL;
}

static PyMethodDef dns_request_methods[] = {
    {"cancel", (PyCFunction)dns_request_cancel, METH_NOARGS,
     "Withdraw the lookup if no worker thread has started it; True when withdrawn."},
    {NULL},
};

static PyType_Slot dns_request_slots[] = {
    {Py_tp_new, dns_request_tp_new},
    {Py_tp_dealloc, dns_request_dealloc},
    {Py_tp_traverse, dns_request_traverse},
    {Py_tp_clear, dns_request_clear},
    {Py_tp_repr, dns_request_repr},
    {Py_tp_methods, dns_request_methods},
    {Py_tp_doc, "A getaddrinfo/getnameinfo lookup running on libuv's thread pool."},
    {0, NULL},
};

static PyType_Spec dns_request_spec = {
    .name = "uvcore._uvcore.DnsRequest",
    .basicsize = sizeof(UvcDnsRequest),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = dns_request_slots,
};

/* _addrinfo_key(host, port, family, type, proto, flags): the key under which the Python layer
 * keeps the answers for numeric hosts, or None for arguments it must not cache (and leaves
 * to the full path, which also raises socket's errors): host a str or bytes, port an int, str,
 * bytes or None, the rest ints. Type-exact on host and port, so 80 and "80", "::1" and
 * b"::1", or a float port never share an entry. In C because it runs on every call. */
static PyObject *dns_addrinfo_key(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "_addrinfo_key() takes 6 arguments");
        return NULL;
    }
    PyObject *host = args[0], *port = args[1];
    if (!PyUnicode_CheckExact(host) && !PyBytes_CheckExact(host)) {
        Py_RETURN_NONE;
    }
    if (!Py_IsNone(port) && !PyLong_CheckExact(port) && !PyUnicode_CheckExact(port) &&
        !PyBytes_CheckExact(port)) {
        Py_RETURN_NONE;
    }
    PyObject *key = PyTuple_New(6);
    if (key == NULL) {
        return NULL;
    }
    PyTuple_SET_ITEM(key, 0, Py_NewRef(host));
    PyTuple_SET_ITEM(key, 1, Py_NewRef(port));
    for (int i = 2; i < 6; i++) {
        if (!PyLong_Check(args[i])) {
            Py_DECREF(key);
            Py_RETURN_NONE;
        }
        int overflow;
        long v = PyLong_AsLongAndOverflow(args[i], &overflow);
        if (overflow || v < INT_MIN || v > INT_MAX) {
            Py_DECREF(key);
            Py_RETURN_NONE;
        }
        if (v == -1 && PyErr_Occurred()) {
            Py_DECREF(key);
            return NULL;
        }
        /* plain ints: an IntEnum member and its value are one key, as socket sees them */
        PyObject *n = PyLong_FromLong(v);
        if (n == NULL) {
            Py_DECREF(key);
            return NULL;
        }
        PyTuple_SET_ITEM(key, i, n);
    }
    return key;
}

static PyMethodDef dns_functions[] = {
    {"_addrinfo_key", (PyCFunction)(void (*)(void))dns_addrinfo_key, METH_FASTCALL, NULL},
    {"_getaddrinfo", dns_getaddrinfo, METH_VARARGS, NULL},
    {"_getnameinfo", dns_getnameinfo, METH_VARARGS, NULL},
    {NULL},
};

int uvc_dns_module_init(PyObject *m, uvc_state *st)
{
    if (uvc_add_type(m, &dns_request_spec, NULL, &st->DnsRequestType) < 0) {
        return -1;
    }
    return PyModule_AddFunctions(m, dns_functions);
}
