/* wsfanout.c: WebSocket fan-out. One shared payload (a bytes object) becomes one complete,
 * unmasked text frame per connection (header + per-connection prefix + payload + suffix)
 * with no copy of the payload: each frame holds references to its parts. A FanoutSink is one
 * connection's queue of such frames on a uvcore StreamTransport. Frames queued during a loop
 * iteration are held ("corked") and written at its end, all of a connection's frames in one
 * vectored write; whatever the socket does not take goes to the transport's own libuv write
 * queue, so it stays ordered with everything else the connection writes (stream.c submits
 * the held frames before any other write). Held frames are the only ones a slow consumer's
 * policy may drop: a frame handed to libuv is never cut. */
#include "stream.h"
#include "wsfanout.h"

#include <limits.h>

/* Frames per vectored write: four buffers each (header, prefix, payload, suffix) stay within
 * the kernel's IOV_MAX of 1024. */
#define UVC_FANOUT_BATCH 256

enum { UVC_FANOUT_DROP_OLDEST = 0, UVC_FANOUT_CLOSE = 1 };

/* The close code sent to a consumer that fell behind under the "close" policy: 1008 (policy
 * violation, RFC 6455 7.4.1). 1013 ("try again later") describes an overloaded server; here
 * the server is fine and the peer broke the server's rule on how far behind it may fall. */
#define UVC_FANOUT_OVERFLOW_CODE 1008
static const char uvc_fanout_overflow_reason[] = "slow consumer: too many queued bytes";

typedef struct UvcFanFrame {
    struct UvcFanFrame *next;
    PyObject *parts[3];       /* prefix, payload, suffix: strong references, NULL when empty */
    size_t size;              /* header + parts */
    unsigned char hlen;
    unsigned char hdr[10];
} UvcFanFrame;

struct UvcFanoutSink {
    PyObject_HEAD
    uvc_state *st;
    UvcStream *transport;     /* strong; the transport only points back while attached */
    UvcLoop *loop;            /* strong */
    PyObject *callbacks;      /* list of close callbacks, or NULL */
    PyObject *on_overflow;    /* called with the sink under the "close" policy, or NULL */
    PyObject *weakreflist;
    UvcFanFrame *head, *tail; /* held: queued, not yet handed to the transport */
    size_t held_bytes;
    Py_ssize_t held_frames;
    Py_ssize_t max_queued;
    unsigned long long sent, dropped;
    struct UvcFanoutSink *dirty_next; /* the loop's list of sinks with held frames */
    int policy;
    int close_code;           /* 0, or the code the sink was closed with */
    unsigned attached : 1;    /* the transport points to us */
    unsigned dirty : 1;       /* on the loop's list (which holds a reference) */
    unsigned closed : 1;
};

typedef struct {
    uv_write_t req;
    UvcStream *transport;     /* strong until the write completes */
    UvcFanFrame *frames;      /* the frames whose buffers libuv writes */
} UvcFanWrite;

/* ---- frames ------------------------------------------------------------------------------ */

static unsigned char uvc_fanout_header(unsigned char *h, uint64_t n)
{
    h[0] = 0x81; /* FIN, RSV1-3 clear (never compressed), opcode 1 (text) */
    if (n < 126) {
        h[1] = (unsigned char)n; /* mask bit clear: server frames are never masked */
        return 2;
    }
    if (n <= 0xFFFF) {
        h[1] = 126;
        h[2] = (unsigned char)(n >> 8);
        h[3] = (unsigned char)n;
        return 4;
    }
    h[1] = 127;
    for (int i = 0; i < 8; i++) {
        h[2 + i] = (unsigned char)(n >> (56 - 8 * i));
    }
    return 10;
}

static void uvc_fanout_frame_free(UvcFanFrame *f)
{
    Py_XDECREF(f->parts[0]);
    Py_XDECREF(f->parts[1]);
    Py_XDECREF(f->parts[2]);
    PyMem_Free(f);
}

static void uvc_fanout_frames_free(UvcFanFrame *f)
{
    while (f != NULL) {
        UvcFanFrame *next = f->next;
        uvc_fanout_frame_free(f);
        f = next;
    }
}

/* A frame for prefix + payload + suffix (bytes, borrowed; references taken). NULL with
 * MemoryError. */
static UvcFanFrame *uvc_fanout_frame_new(PyObject *prefix, PyObject *payload, PyObject *suffix)
{
    UvcFanFrame *f = PyMem_Malloc(sizeof(UvcFanFrame));
    if (f == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    PyObject *parts[3] = {prefix, payload, suffix};
    uint64_t n = 0;
    for (int i = 0; i < 3; i++) {
        Py_ssize_t len = PyBytes_GET_SIZE(parts[i]);
        f->parts[i] = len > 0 ? Py_NewRef(parts[i]) : NULL;
        n += (uint64_t)len;
    }
    f->next = NULL;
    f->hlen = uvc_fanout_header(f->hdr, n);
    f->size = (size_t)n + f->hlen;
    return f;
}

/* Buffers of a frame into bufs (at most 4); returns how many. */
static unsigned uvc_fanout_frame_bufs(UvcFanFrame *f, uv_buf_t *bufs)
{
    unsigned n = 0;
    bufs[n++] = uv_buf_init((char *)f->hdr, f->hlen);
    for (int i = 0; i < 3; i++) {
        if (f->parts[i] != NULL) {
            bufs[n].base = PyBytes_AS_STRING(f->parts[i]);
            bufs[n].len = (size_t)PyBytes_GET_SIZE(f->parts[i]);
            n++;
        }
    }
    return n;
}

static unsigned uvc_fanout_frame_nbufs(UvcFanFrame *f)
{
    return 1u + (f->parts[0] != NULL) + (f->parts[1] != NULL) + (f->parts[2] != NULL);
}

/* ---- the held queue ---------------------------------------------------------------------- */

static void uvc_fanout_drop_held(UvcFanoutSink *s, int count)
{
    UvcFanFrame *f = s->head;
    if (count) {
        s->dropped += (unsigned long long)s->held_frames;
    }
    s->head = s->tail = NULL;
    s->held_bytes = 0;
    s->held_frames = 0;
    uvc_fanout_frames_free(f);
}

static void uvc_fanout_drop_oldest(UvcFanoutSink *s)
{
    UvcFanFrame *f = s->head;
    s->head = f->next;
    if (s->head == NULL) {
        s->tail = NULL;
    }
    s->held_bytes -= f->size;
    s->held_frames--;
    s->dropped++;
    uvc_fanout_frame_free(f);
}

static void uvc_fanout_on_write(uv_write_t *req, int status)
{
    UvcFanWrite *w = (UvcFanWrite *)req;
    UvcStream *t = w->transport;
    uvc_loop_acquire(uvc_stream_loop(t));
    uvc_fanout_frames_free(w->frames);
    PyMem_Free(w);
    uvc_stream_write_done(t, status);
    Py_DECREF(t);
}

/* Hand held frames to the transport: a vectored uv_try_write when libuv has nothing queued,
 * the rest as one uv_write per batch. Unless force is set, frames stay held (droppable) while
 * libuv still has writes in flight: uvc_fanout_transport_drained resumes then. 0, or -1 when
 * the transport failed (the error went to the loop's handler, the transport is closing). */
static int uvc_fanout_submit(UvcFanoutSink *s, int force)
{
    uv_buf_t bufs[UVC_FANOUT_BATCH * 4];
    UvcStream *t = s->transport;
    while (s->head != NULL) {
        if (!s->attached || !uvc_stream_can_write(t)) {
            uvc_fanout_drop_held(s, 1);
            return 0;
        }
        int busy = uvc_stream_writes_pending(t) > 0;
        if (busy && !force) {
            return 0;
        }
        /* take a batch off the held queue first: a failing write may re-enter the sink */
        UvcFanFrame *batch = s->head, *last = NULL, *f = batch;
        unsigned nbufs = 0;
        Py_ssize_t nframes = 0;
        size_t total = 0;
        while (f != NULL && nframes < UVC_FANOUT_BATCH) {
            nbufs += uvc_fanout_frame_bufs(f, bufs + nbufs);
            total += f->size;
            nframes++;
            last = f;
            f = f->next;
        }
        s->head = f;
        if (f == NULL) {
            s->tail = NULL;
        }
        last->next = NULL;
        s->held_bytes -= total;
        s->held_frames -= nframes;
        s->sent += (unsigned long long)nframes;

        size_t written = 0;
        if (!busy) {
            int r = uvc_stream_try_write(t, bufs, nbufs);
            if (r < 0) {
                uvc_fanout_frames_free(batch);
                return -1;
            }
            written = (size_t)r;
        }
        /* free the frames the kernel took whole; cut the buffers of a partly written one */
        unsigned first = 0;
        while (batch != NULL && written >= batch->size) {
            written -= batch->size;
            first += uvc_fanout_frame_nbufs(batch);
            UvcFanFrame *next = batch->next;
            uvc_fanout_frame_free(batch);
            batch = next;
        }
        if (batch == NULL) {
            continue;
        }
        while (written >= bufs[first].len) {
            written -= bufs[first].len;
            first++;
        }
        bufs[first].base += written;
        bufs[first].len -= written;
        UvcFanWrite *w = PyMem_Malloc(sizeof(UvcFanWrite));
        if (w == NULL) {
            uvc_fanout_frames_free(batch);
            PyErr_NoMemory();
            return -1;
        }
        w->transport = (UvcStream *)Py_NewRef((PyObject *)t);
        w->frames = batch;
        if (uvc_stream_write_req(t, &w->req, bufs + first, nbufs - first, uvc_fanout_on_write) < 0) {
            uvc_fanout_frames_free(batch);
            Py_DECREF(t);
            PyMem_Free(w);
            return -1;
        }
    }
    return 0;
}

/* ---- closing ----------------------------------------------------------------------------- */

/* Stop writing: the transport forgets us, held frames are written first (flush) or dropped,
 * and the close callbacks are scheduled on the loop (before connection_lost, which the
 * transport schedules after this returns). */
static void uvc_fanout_detach(UvcFanoutSink *s, int flush, int code, int notify)
{
    if (s->closed) {
        return;
    }
    if (flush && s->attached && s->head != NULL) {
        if (uvc_fanout_submit(s, 1) < 0) {
            PyErr_Clear(); /* reported by the transport already, or out of memory */
        }
    }
    if (s->closed) {
        return; /* the submit failed and closed us */
    }
    s->closed = 1;
    s->close_code = code;
    uvc_fanout_drop_held(s, 1);
    if (s->attached) {
        s->attached = 0;
        uvc_stream_set_fanout(s->transport, NULL);
    }
    if (!notify || s->callbacks == NULL || PyList_GET_SIZE(s->callbacks) == 0 || s->loop->closed) {
        Py_CLEAR(s->callbacks);
        return;
    }
    PyObject *callbacks = s->callbacks;
    s->callbacks = NULL;
    PyObject *exc = PyErr_GetRaisedException_compat();
    PyObject *codeobj = code ? PyLong_FromLong(code) : Py_NewRef(Py_None);
    for (Py_ssize_t i = 0; codeobj != NULL && i < PyList_GET_SIZE(callbacks); i++) {
        PyObject *args[2] = {(PyObject *)s, codeobj};
        UvcHandle *h = uvc_handle_new(s->st, s->st->HandleType, (PyObject *)s->loop,
                                      PyList_GET_ITEM(callbacks, i), args, 2, NULL);
        if (h == NULL || uvc_loop_push_ready(s->loop, h) < 0) {
            PyErr_WriteUnraisable((PyObject *)s);
        }
        Py_XDECREF(h);
    }
    if (codeobj == NULL) {
        PyErr_WriteUnraisable((PyObject *)s);
    }
    Py_XDECREF(codeobj);
    Py_DECREF(callbacks);
    PyErr_SetRaisedException_compat(exc);
}

/* Under the "close" policy: the consumer fell too far behind. Its held frames go, the sink
 * closes, and the connection is closed with 1008 by on_overflow (the server integration,
 * which keeps its WebSocket state machine right) or, without one, by a close frame written
 * here followed by transport.close(). */
static void uvc_fanout_overflow_close(UvcFanoutSink *s)
{
    PyObject *transport = Py_NewRef((PyObject *)s->transport);
    PyObject *on_overflow = Py_XNewRef(s->on_overflow);
    s->dropped++; /* the frame that did not fit */
    uvc_fanout_detach(s, 0, UVC_FANOUT_OVERFLOW_CODE, 1);
    PyObject *r;
    if (on_overflow != NULL) {
        r = PyObject_CallOneArg(on_overflow, (PyObject *)s);
    } else {
        unsigned char frame[2 + 2 + sizeof(uvc_fanout_overflow_reason)];
        size_t rlen = sizeof(uvc_fanout_overflow_reason) - 1;
        frame[0] = 0x88; /* FIN, close */
        frame[1] = (unsigned char)(2 + rlen);
        frame[2] = UVC_FANOUT_OVERFLOW_CODE >> 8;
        frame[3] = UVC_FANOUT_OVERFLOW_CODE & 0xFF;
        memcpy(frame + 4, uvc_fanout_overflow_reason, rlen);
        PyObject *data = PyBytes_FromStringAndSize((char *)frame, (Py_ssize_t)(4 + rlen));
        r = data ? PyObject_CallMethod(transport, "write", "O", data) : NULL;
        Py_XDECREF(data);
        if (r != NULL) {
            Py_DECREF(r);
            r = PyObject_CallMethod(transport, "close", NULL);
        }
    }
    if (r == NULL) {
        uvc_loop_handle_callback_error(s->loop, "Error closing a slow WebSocket consumer", NULL, NULL);
    }
    Py_XDECREF(r);
    Py_XDECREF(on_overflow);
    Py_DECREF(transport);
}

/* ---- hooks called by stream.c and loop.c ------------------------------------------------- */

void uvc_fanout_transport_before_write(UvcFanoutSink *s)
{
    if (s->head != NULL && uvc_fanout_submit(s, 1) < 0) {
        PyErr_Clear(); /* the transport reported and is closing; the caller sees that */
    }
}

void uvc_fanout_transport_drained(UvcFanoutSink *s)
{
    if (s->head != NULL && uvc_fanout_submit(s, 0) < 0) {
        PyErr_Clear();
    }
}

void uvc_fanout_transport_closing(UvcFanoutSink *s, int how)
{
    Py_INCREF(s);
    uvc_fanout_detach(s, how == UVC_FANOUT_CLOSE_FLUSH, 0, how != UVC_FANOUT_CLOSE_SILENT);
    Py_DECREF(s);
}

size_t uvc_fanout_held_bytes(UvcFanoutSink *s) { return s->held_bytes; }

/* End of a loop iteration: every sink with held frames writes them. The list holds a
 * reference to each sink; callbacks run by a failing write may add sinks, which this loop
 * picks up too. */
void uvc_fanout_flush(UvcLoop *loop)
{
    UvcFanoutSink *s;
    while ((s = loop->fanout_dirty) != NULL) {
        loop->fanout_dirty = s->dirty_next;
        s->dirty_next = NULL;
        s->dirty = 0;
        if (s->head != NULL && uvc_fanout_submit(s, 0) < 0) {
            PyErr_Clear();
        }
        if (s->attached) {
            uvc_stream_update_flow(s->transport);
        }
        Py_DECREF(s);
    }
}

int uvc_fanout_traverse_dirty(UvcLoop *loop, visitproc visit, void *arg)
{
    for (UvcFanoutSink *s = loop->fanout_dirty; s != NULL; s = s->dirty_next) {
        Py_VISIT((PyObject *)s);
    }
    return 0;
}

void uvc_fanout_clear_dirty(UvcLoop *loop)
{
    UvcFanoutSink *s;
    while ((s = loop->fanout_dirty) != NULL) {
        loop->fanout_dirty = s->dirty_next;
        s->dirty_next = NULL;
        s->dirty = 0;
        Py_DECREF(s);
    }
}

/* ---- queueing ---------------------------------------------------------------------------- */

/* Queue one frame; 1 queued, 0 dropped or closed, -1 with an exception. Parts are bytes. */
static int uvc_fanout_push(UvcFanoutSink *s, PyObject *prefix, PyObject *payload, PyObject *suffix)
{
    if (s->closed) {
        return 0;
    }
    uint64_t size = (uint64_t)PyBytes_GET_SIZE(prefix) + (uint64_t)PyBytes_GET_SIZE(payload) +
                    (uint64_t)PyBytes_GET_SIZE(suffix);
    size += size < 126 ? 2 : size <= 0xFFFF ? 4 : 10;
    size_t queued = s->held_bytes + uvc_stream_write_queue_size(s->transport);
    /* a frame always fits in an empty queue, whatever its size */
    if (queued > 0 && queued + size > (uint64_t)s->max_queued) {
        if (s->policy == UVC_FANOUT_CLOSE) {
            uvc_fanout_overflow_close(s);
            return 0;
        }
        while (s->head != NULL && s->held_bytes + uvc_stream_write_queue_size(s->transport) + size >
                                      (uint64_t)s->max_queued) {
            uvc_fanout_drop_oldest(s);
        }
        queued = s->held_bytes + uvc_stream_write_queue_size(s->transport);
        if (queued > 0 && queued + size > (uint64_t)s->max_queued) {
            s->dropped++; /* nothing older left to drop: libuv holds the backlog */
            return 0;
        }
    }
    UvcFanFrame *f = uvc_fanout_frame_new(prefix, payload, suffix);
    if (f == NULL) {
        return -1;
    }
    if (s->tail != NULL) {
        s->tail->next = f;
    } else {
        s->head = f;
    }
    s->tail = f;
    s->held_bytes += f->size;
    s->held_frames++;
    if (!s->dirty) {
        s->dirty = 1;
        s->dirty_next = s->loop->fanout_dirty;
        s->loop->fanout_dirty = (UvcFanoutSink *)Py_NewRef((PyObject *)s);
    }
    return 1;
}

static int uvc_fanout_check_bytes(PyObject *o, const char *what)
{
    if (!PyBytes_Check(o)) {
        PyErr_Format(PyExc_TypeError, "%s must be bytes, not %.100s", what, Py_TYPE(o)->tp_name);
        return -1;
    }
    return 0;
}

/* ---- FanoutSink -------------------------------------------------------------------------- */

static PyObject *uvc_fanout_sink_new(PyTypeObject *tp, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"transport", "max_queued", "policy", "on_overflow", NULL};
    PyObject *transport, *on_overflow = Py_None;
    Py_ssize_t max_queued = 1024 * 1024;
    const char *policy = "drop_oldest";
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|$nsO:FanoutSink", kwlist, &transport,
                                     &max_queued, &policy, &on_overflow)) {
        return NULL;
    }
    uvc_state *st = uvc_state_from_type(tp);
    if (st == NULL) {
        return NULL;
    }
    if (!PyObject_TypeCheck(transport, st->StreamTransportType)) {
        PyErr_Format(PyExc_TypeError, "a uvcore StreamTransport is required, not %.100s",
                     Py_TYPE(transport)->tp_name);
        return NULL;
    }
    int pol;
    if (strcmp(policy, "drop_oldest") == 0) {
        pol = UVC_FANOUT_DROP_OLDEST;
    } else if (strcmp(policy, "close") == 0) {
        pol = UVC_FANOUT_CLOSE;
    } else {
        PyErr_Format(PyExc_ValueError, "policy must be 'drop_oldest' or 'close', not %R",
                     PyTuple_GET_SIZE(args) > 2 ? PyTuple_GET_ITEM(args, 2) : Py_None);
        return NULL;
    }
    if (max_queued <= 0) {
        PyErr_SetString(PyExc_ValueError, "max_queued must be positive");
        return NULL;
    }
    if (on_overflow != Py_None && !PyCallable_Check(on_overflow)) {
        PyErr_SetString(PyExc_TypeError, "on_overflow must be callable or None");
        return NULL;
    }
    UvcStream *t = (UvcStream *)transport;
    if (uvc_stream_check_thread(uvc_stream_loop(t)) < 0) {
        return NULL;
    }
    if (uvc_stream_get_fanout(t) != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "this transport already has an open FanoutSink");
        return NULL;
    }
    UvcFanoutSink *s = (UvcFanoutSink *)tp->tp_alloc(tp, 0);
    if (s == NULL) {
        return NULL;
    }
    s->st = st;
    s->transport = (UvcStream *)Py_NewRef(transport);
    s->loop = (UvcLoop *)Py_NewRef((PyObject *)uvc_stream_loop(t));
    s->max_queued = max_queued;
    s->policy = pol;
    s->on_overflow = on_overflow == Py_None ? NULL : Py_NewRef(on_overflow);
    if (!uvc_stream_can_write(t)) {
        s->closed = 1; /* a closing transport takes no frames; callbacks added run at once */
    } else {
        uvc_stream_set_fanout(t, s);
        s->attached = 1;
    }
    return (PyObject *)s;
}

static PyObject *uvc_fanout_sink_send(UvcFanoutSink *s, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 2 || nargs > 3) {
        PyErr_SetString(PyExc_TypeError, "send(prefix, payload, suffix=b'')");
        return NULL;
    }
    PyObject *suffix = nargs == 3 ? args[2] : NULL;
    if (uvc_fanout_check_bytes(args[0], "prefix") < 0 || uvc_fanout_check_bytes(args[1], "payload") < 0 ||
        (suffix != NULL && uvc_fanout_check_bytes(suffix, "suffix") < 0) ||
        uvc_stream_check_thread(s->loop) < 0) {
        return NULL;
    }
    PyObject *empty = NULL;
    if (suffix == NULL) {
        suffix = empty = PyBytes_FromStringAndSize(NULL, 0);
        if (suffix == NULL) {
            return NULL;
        }
    }
    int r = uvc_fanout_push(s, args[0], args[1], suffix);
    Py_XDECREF(empty);
    return r < 0 ? NULL : PyBool_FromLong(r);
}

static PyObject *uvc_fanout_sink_close(UvcFanoutSink *s, PyObject *unused)
{
    if (uvc_stream_check_thread(s->loop) < 0) {
        return NULL;
    }
    uvc_fanout_detach(s, 1, 0, 1);
    Py_RETURN_NONE;
}

static PyObject *uvc_fanout_sink_flush(UvcFanoutSink *s, PyObject *unused)
{
    if (uvc_stream_check_thread(s->loop) < 0) {
        return NULL;
    }
    if (s->head != NULL && uvc_fanout_submit(s, 1) < 0 && PyErr_Occurred()) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *uvc_fanout_sink_add_close_callback(UvcFanoutSink *s, PyObject *cb)
{
    if (!PyCallable_Check(cb)) {
        PyErr_SetString(PyExc_TypeError, "the close callback must be callable");
        return NULL;
    }
    if (s->closed) {
        /* already closed: run it soon, as if it had been registered in time */
        PyObject *code = s->close_code ? PyLong_FromLong(s->close_code) : Py_NewRef(Py_None);
        if (code == NULL) {
            return NULL;
        }
        PyObject *args[2] = {(PyObject *)s, code};
        UvcHandle *h = uvc_handle_new(s->st, s->st->HandleType, (PyObject *)s->loop, cb, args, 2, NULL);
        Py_DECREF(code);
        if (h == NULL) {
            return NULL;
        }
        int r = uvc_loop_push_ready(s->loop, h);
        Py_DECREF(h);
        if (r < 0) {
            return NULL;
        }
        Py_RETURN_NONE;
    }
    if (s->callbacks == NULL && (s->callbacks = PyList_New(0)) == NULL) {
        return NULL;
    }
    if (PyList_Append(s->callbacks, cb) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *uvc_fanout_sink_remove_close_callback(UvcFanoutSink *s, PyObject *cb)
{
    Py_ssize_t removed = 0;
    for (Py_ssize_t i = s->callbacks ? PyList_GET_SIZE(s->callbacks) - 1 : -1; i >= 0; i--) {
        int eq = PyObject_RichCompareBool(PyList_GET_ITEM(s->callbacks, i), cb, Py_EQ);
        if (eq < 0) {
            return NULL;
        }
        if (eq && PySequence_DelItem(s->callbacks, i) < 0) {
            return NULL;
        }
        removed += eq;
    }
    return PyLong_FromSsize_t(removed);
}

static int uvc_fanout_sink_traverse(UvcFanoutSink *s, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(s));
    Py_VISIT(s->transport);
    Py_VISIT(s->loop);
    Py_VISIT(s->callbacks);
    Py_VISIT(s->on_overflow);
    return 0;
}

static int uvc_fanout_sink_clear(UvcFanoutSink *s)
{
    if (s->attached) {
        s->attached = 0;
        uvc_stream_set_fanout(s->transport, NULL);
    }
    uvc_fanout_drop_held(s, 0);
    Py_CLEAR(s->callbacks);
    Py_CLEAR(s->on_overflow);
    Py_CLEAR(s->transport);
    return 0;
}

static void uvc_fanout_sink_dealloc(UvcFanoutSink *s)
{
    PyTypeObject *tp = Py_TYPE(s);
    PyObject_GC_UnTrack(s);
    if (s->weakreflist != NULL) {
        PyObject_ClearWeakRefs((PyObject *)s);
    }
    uvc_fanout_sink_clear(s);
    Py_CLEAR(s->loop);
    tp->tp_free(s);
    Py_DECREF(tp);
}

static PyObject *uvc_fanout_sink_repr(UvcFanoutSink *s)
{
    return PyUnicode_FromFormat("<uvcore.FanoutSink %s held=%zd queued=%zd sent=%llu dropped=%llu>",
                                s->closed ? "closed" : "open", s->held_frames,
                                (Py_ssize_t)(s->held_bytes + (s->attached ? uvc_stream_write_queue_size(s->transport) : 0)),
                                s->sent, s->dropped);
}

static PyObject *uvc_fanout_sink_get_closed(UvcFanoutSink *s, void *c) { return PyBool_FromLong(s->closed); }
static PyObject *uvc_fanout_sink_get_transport(UvcFanoutSink *s, void *c)
{
    return Py_NewRef(s->transport ? (PyObject *)s->transport : Py_None);
}
static PyObject *uvc_fanout_sink_get_queued(UvcFanoutSink *s, void *c)
{
    size_t n = s->held_bytes + (s->attached ? uvc_stream_write_queue_size(s->transport) : 0);
    return PyLong_FromSize_t(n);
}
static PyObject *uvc_fanout_sink_get_held(UvcFanoutSink *s, void *c) { return PyLong_FromSsize_t(s->held_frames); }
static PyObject *uvc_fanout_sink_get_sent(UvcFanoutSink *s, void *c) { return PyLong_FromUnsignedLongLong(s->sent); }
static PyObject *uvc_fanout_sink_get_dropped(UvcFanoutSink *s, void *c) { return PyLong_FromUnsignedLongLong(s->dropped); }
static PyObject *uvc_fanout_sink_get_policy(UvcFanoutSink *s, void *c)
{
    return PyUnicode_FromString(s->policy == UVC_FANOUT_CLOSE ? "close" : "drop_oldest");
}
static PyObject *uvc_fanout_sink_get_close_code(UvcFanoutSink *s, void *c)
{
    return s->close_code ? PyLong_FromLong(s->close_code) : Py_NewRef(Py_None);
}

static PyGetSetDef uvc_fanout_sink_getset[] = {
    {"closed", (getter)uvc_fanout_sink_get_closed, NULL, "True once the sink takes no more frames.", NULL},
    {"transport", (getter)uvc_fanout_sink_get_transport, NULL, "The StreamTransport written to.", NULL},
    {"queued", (getter)uvc_fanout_sink_get_queued, NULL,
     "Bytes not yet sent: held frames plus the transport's write queue.", NULL},
    {"held", (getter)uvc_fanout_sink_get_held, NULL, "Frames queued and not yet handed to the transport.", NULL},
    {"sent", (getter)uvc_fanout_sink_get_sent, NULL, "Frames handed to the transport.", NULL},
    {"dropped", (getter)uvc_fanout_sink_get_dropped, NULL, "Frames dropped (slow consumer or closed).", NULL},
    {"policy", (getter)uvc_fanout_sink_get_policy, NULL, "'drop_oldest' or 'close'.", NULL},
    {"close_code", (getter)uvc_fanout_sink_get_close_code, NULL,
     "1008 when the sink closed for falling behind under the 'close' policy, else None.", NULL},
    {NULL},
};

static PyMemberDef uvc_fanout_sink_members[] = {
    {"__weaklistoffset__", T_PYSSIZET, offsetof(UvcFanoutSink, weakreflist), READONLY},
    {"max_queued", T_PYSSIZET, offsetof(UvcFanoutSink, max_queued), READONLY,
     "Cap on queued bytes (held frames + the transport's write queue)."},
    {NULL},
};

static PyMethodDef uvc_fanout_sink_methods[] = {
    {"send", (PyCFunction)(void (*)(void))uvc_fanout_sink_send, METH_FASTCALL,
     "send(prefix, payload, suffix=b'') -> bool: queue one text frame; False if dropped or closed."},
    {"close", (PyCFunction)uvc_fanout_sink_close, METH_NOARGS,
     "Take no more frames; held frames are written first. Close callbacks run soon."},
    {"flush", (PyCFunction)uvc_fanout_sink_flush, METH_NOARGS,
     "Hand held frames to the transport now instead of at the end of the loop iteration."},
    {"add_close_callback", (PyCFunction)uvc_fanout_sink_add_close_callback, METH_O,
     "cb(sink, code) runs (via the loop) once the sink closes; code is 1008 after an overflow close."},
    {"remove_close_callback", (PyCFunction)uvc_fanout_sink_remove_close_callback, METH_O,
     "Remove a close callback; returns how many were removed."},
    {NULL},
};

static PyType_Slot uvc_fanout_sink_slots[] = {
    {Py_tp_new, uvc_fanout_sink_new},
    {Py_tp_dealloc, uvc_fanout_sink_dealloc},
    {Py_tp_traverse, uvc_fanout_sink_traverse},
    {Py_tp_clear, uvc_fanout_sink_clear},
    {Py_tp_repr, uvc_fanout_sink_repr},
    {Py_tp_methods, uvc_fanout_sink_methods},
    {Py_tp_getset, uvc_fanout_sink_getset},
    {Py_tp_members, uvc_fanout_sink_members},
    {Py_tp_doc, "FanoutSink(transport, *, max_queued=1048576, policy='drop_oldest', on_overflow=None)\n\n"
                "One WebSocket connection's queue of shared-payload text frames on a uvcore "
                "StreamTransport (after the handshake; the transport must carry plain WebSocket)."},
    {0, NULL},
};

static PyType_Spec uvc_fanout_sink_spec = {
    .name = "uvcore._uvcore.FanoutSink",
    .basicsize = sizeof(UvcFanoutSink),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_BASETYPE,
    .slots = uvc_fanout_sink_slots,
};

/* ---- fanout(payload, members, suffix=b"") ------------------------------------------------ */

/* members: a list or tuple of (sink, prefix) pairs. A FanoutSink queues in C; any other sink
 * (the Python fallback for TLS or other loops) gets sink.send(prefix, payload, suffix). */
static PyObject *uvc_fanout_call(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 2 || nargs > 3) {
        PyErr_SetString(PyExc_TypeError, "fanout(payload, members, suffix=b'')");
        return NULL;
    }
    PyObject *payload = args[0], *suffix = nargs == 3 ? args[2] : NULL, *empty = NULL;
    if (uvc_fanout_check_bytes(payload, "payload") < 0 ||
        (suffix != NULL && uvc_fanout_check_bytes(suffix, "suffix") < 0)) {
        return NULL;
    }
    PyObject *seq = PySequence_Fast(args[1], "members must be a sequence of (sink, prefix) pairs");
    if (seq == NULL) {
        return NULL;
    }
    if (suffix == NULL && (suffix = empty = PyBytes_FromStringAndSize(NULL, 0)) == NULL) {
        Py_DECREF(seq);
        return NULL;
    }
    uvc_state *st = uvc_state_of_module(module);
    PyObject *str_send = NULL;
    UvcLoop *checked = NULL; /* the loop whose thread was checked last */
    Py_ssize_t queued = 0;
    int failed = 0;
    /* A member is held while it is used and the sequence re-read every time: an on_overflow
     * callback or a Python sink's send may change a list it was given. */
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(seq); i++) {
        PyObject *m = Py_NewRef(PySequence_Fast_ITEMS(seq)[i]);
        int r = -1;
        if (!PyTuple_Check(m) || PyTuple_GET_SIZE(m) != 2) {
            PyErr_SetString(PyExc_TypeError, "members must be (sink, prefix) tuples");
        } else if (uvc_fanout_check_bytes(PyTuple_GET_ITEM(m, 1), "prefix") == 0) {
            PyObject *sink = PyTuple_GET_ITEM(m, 0), *prefix = PyTuple_GET_ITEM(m, 1);
            if (PyObject_TypeCheck(sink, st->FanoutSinkType)) {
                UvcFanoutSink *s = (UvcFanoutSink *)sink;
                if (s->loop == checked || uvc_stream_check_thread(s->loop) == 0) {
                    checked = s->loop;
                    r = uvc_fanout_push(s, prefix, payload, suffix);
                }
            } else if (str_send != NULL || (str_send = PyUnicode_InternFromString("send")) != NULL) {
                PyObject *margs[4] = {sink, prefix, payload, suffix};
                PyObject *res = PyObject_VectorcallMethod(str_send, margs, 4, NULL);
                if (res != NULL) {
                    r = PyObject_IsTrue(res) > 0;
                    Py_DECREF(res);
                }
            }
        }
        Py_DECREF(m);
        if (r < 0) {
            failed = 1;
            break;
        }
        queued += r;
    }
    Py_XDECREF(str_send);
    Py_XDECREF(empty);
    Py_DECREF(seq);
    return failed ? NULL : PyLong_FromSsize_t(queued);
}

/* frame_header(length) -> bytes: the header of an unmasked, uncompressed text frame. */
static PyObject *uvc_fanout_frame_header(PyObject *module, PyObject *arg)
{
    Py_ssize_t n = PyNumber_AsSsize_t(arg, PyExc_OverflowError);
    if (n == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (n < 0) {
        PyErr_SetString(PyExc_ValueError, "length must be >= 0");
        return NULL;
    }
    unsigned char h[10];
    unsigned char len = uvc_fanout_header(h, (uint64_t)n);
    return PyBytes_FromStringAndSize((char *)h, len);
}

static PyMethodDef uvc_fanout_functions[] = {
    {"fanout", (PyCFunction)(void (*)(void))uvc_fanout_call, METH_FASTCALL,
     "fanout(payload, members, suffix=b'') -> int: queue prefix + payload + suffix as one text "
     "frame to each (sink, prefix) member; returns how many were queued."},
    {"frame_header", (PyCFunction)uvc_fanout_frame_header, METH_O,
     "frame_header(length) -> bytes: header of an unmasked, uncompressed text frame."},
    {NULL},
};

int uvc_fanout_module_init(PyObject *m, uvc_state *st)
{
    if (PyModule_AddFunctions(m, uvc_fanout_functions) < 0) {
        return -1;
    }
    return uvc_add_type(m, &uvc_fanout_sink_spec, NULL, &st->FanoutSinkType);
}
