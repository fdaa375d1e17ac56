/* loop.c: the Loop type, the heart of uvcore. One iteration = move due timers to the ready
 * queue, run the ready batch, compute the poll timeout from the ready queue and the timer
 * heap, uv_run once (the GIL is released only while libuv would block). Cold paths (run_forever's
 * set-up, exception handler text, executors) live in python/uvcore/_loop.py. */
#include "loop.h"
#include "wsfanout.h"

#include <math.h>
#include <pythread.h>

/* ---- time ---------------------------------------------------------------------------- */

double uvc_loop_time(void) { return (double)uv_hrtime() / 1e9; }

/* ---- errors from callbacks ------------------------------------------------------------- */

void uvc_loop_report(PyObject *loop, PyObject *context)
{
    PyObject *res = PyObject_CallMethod(loop, "call_exception_handler", "O", context);
    if (res == NULL) {
        PyErr_WriteUnraisable(loop);
    }
    Py_XDECREF(res);
}

static void loop_stash_exception(UvcLoop *loop)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb != NULL) {
        PyException_SetTraceback(value, tb);
    }
    Py_XDECREF(type);
    Py_XDECREF(tb);
    if (loop->pending_exc == NULL) {
        loop->pending_exc = value;
    } else {
        Py_XDECREF(value);
    }
    uv_stop(loop->uv);
}

void uvc_loop_handle_callback_error(UvcLoop *loop, const char *message, PyObject *key, PyObject *value)
{
    if (!PyErr_ExceptionMatches(PyExc_Exception)) {
        loop_stash_exception(loop);
        return;
    }
    PyObject *type, *exc, *tb;
    PyErr_Fetch(&type, &exc, &tb);
    PyErr_NormalizeException(&type, &exc, &tb);
    if (tb != NULL) {
        PyException_SetTraceback(exc, tb);
    }
    PyObject *ctx = Py_BuildValue("{s:s,s:O}", "message", message, "exception", exc);
    if (ctx != NULL && key != NULL && PyDict_SetItem(ctx, key, value) < 0) {
        Py_CLEAR(ctx);
    }
    if (ctx != NULL) {
        uvc_loop_report((PyObject *)loop, ctx);
        Py_DECREF(ctx);
    } else {
        PyErr_WriteUnraisable((PyObject *)loop);
    }
    Py_XDECREF(type);
    Py_XDECREF(exc);
    Py_XDECREF(tb);
}

int uvc_loop_check_closed(UvcLoop *loop)
{
    if (loop->closed) {
        PyErr_SetString(PyExc_RuntimeError, "Event loop is closed");
        return -1;
    }
    return 0;
}

/* Methods that hand a libuv handle to another thread while the loop runs would race with
 * libuv (it is not thread-safe), so add_reader and friends always check. Scheduling methods
 * only touch the ready ring and the timer heap, which the GIL protects, so they check in debug
 * mode only, as asyncio and uvloop do: a cross-thread call_soon then takes effect at the loop's
 * next wake-up instead of raising half-way through a Future's callbacks. */
static int loop_check_thread(UvcLoop *loop)
{
    if (loop->thread_id != 0 && loop->thread_id != PyThread_get_thread_ident()) {
        PyErr_SetString(PyExc_RuntimeError,
                        "Non-thread-safe operation invoked on an event loop other than the "
                        "current one");
        return -1;
    }
    return 0;
}

/* ---- ready queue ----------------------------------------------------------------------- */

int uvc_loop_push_ready(UvcLoop *loop, UvcHandle *h)
{
    if (loop->ready_len == loop->ready_cap) {
        Py_ssize_t cap = loop->ready_cap ? loop->ready_cap * 2 : 64;
        UvcHandle **buf = PyMem_Malloc(cap * sizeof(UvcHandle *));
        if (buf == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        for (Py_ssize_t i = 0; i < loop->ready_len; i++) {
            buf[i] = loop->ready[(loop->ready_head + i) % loop->ready_cap];
        }
        PyMem_Free(loop->ready);
        loop->ready = buf;
        loop->ready_cap = cap;
        loop->ready_head = 0;
    }
    Py_INCREF(h);
    /* ready_cap is a power of two: the ring wraps with a mask, not a division */
    loop->ready[(loop->ready_head + loop->ready_len) & (loop->ready_cap - 1)] = h;
    loop->ready_len++;
    return 0;
}

/* New reference, or NULL when empty. */
static UvcHandle *loop_pop_ready(UvcLoop *loop)
{
    if (loop->ready_len == 0) {
        return NULL;
    }
    UvcHandle *h = loop->ready[loop->ready_head];
    loop->ready_head = (loop->ready_head + 1) & (loop->ready_cap - 1);
    loop->ready_len--;
    return h;
}

/* ---- timer heap ------------------------------------------------------------------------ */

static inline int timer_before(UvcHandle *a, UvcHandle *b)
{
    return a->when < b->when || (a->when == b->when && a->seq < b->seq);
}

static void heap_sift_up(UvcHandle **heap, Py_ssize_t i)
{
    UvcHandle *item = heap[i];
    while (i > 0) {
        Py_ssize_t parent = (i - 1) / 2;
        if (!timer_before(item, heap[parent])) {
            break;
        }
        heap[i] = heap[parent];
        i = parent;
    }
    heap[i] = item;
}

static void heap_sift_down(UvcHandle **heap, Py_ssize_t n, Py_ssize_t i)
{
    UvcHandle *item = heap[i];
    for (;;) {
        Py_ssize_t child = 2 * i + 1;
        if (child >= n) {
            break;
        }
        if (child + 1 < n && timer_before(heap[child + 1], heap[child])) {
            child++;
        }
        if (!timer_before(heap[child], item)) {
            break;
        }
        heap[i] = heap[child];
        i = child;
    }
    heap[i] = item;
}

static int loop_push_timer(UvcLoop *loop, UvcHandle *h)
{
    if (loop->timers_len == loop->timers_cap) {
        Py_ssize_t cap = loop->timers_cap ? loop->timers_cap * 2 : 64;
        UvcHandle **buf = PyMem_Realloc(loop->timers, cap * sizeof(UvcHandle *));
        if (buf == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        loop->timers = buf;
        loop->timers_cap = cap;
    }
    Py_INCREF(h);
    h->seq = loop->timer_seq++;
    h->scheduled = 1;
    loop->timers[loop->timers_len++] = h;
    heap_sift_up(loop->timers, loop->timers_len - 1);
    return 0;
}

/* Remove the earliest timer; new reference. */
static UvcHandle *loop_pop_timer(UvcLoop *loop)
{
    UvcHandle *top = loop->timers[0];
    loop->timers_len--;
    if (loop->timers_len > 0) {
        loop->timers[0] = loop->timers[loop->timers_len];
        heap_sift_down(loop->timers, loop->timers_len, 0);
    }
    top->scheduled = 0;
    return top;
}

/* A cancelled timer that is the heap's last slot is a leaf and leaves at once: that is where
 * call_later(...).cancel() puts it when its deadline is the latest (a timeout cancelled
 * before it fires), so the heap does not fill with dead entries. Others wait in the heap
 * until they reach the top or the heap is compacted. */
void uvc_loop_timer_cancelled(UvcLoop *loop, UvcHandle *h)
{
    if (loop->timers_len > 0 && loop->timers[loop->timers_len - 1] == h) {
        loop->timers_len--;
        h->scheduled = 0;
        uvc_handle_release(h);
        return;
    }
    loop->timers_cancelled++;
}

/* When most of the heap is cancelled timers (a server cancelling its timeouts), rebuild it
 * so memory does not grow with cancelled entries, as asyncio does. The dropped handles are
 * released only once the heap is whole again: a release can run Python code (a weakref
 * callback) that lets another thread's call_later push onto the heap. */
static void loop_compact_timers(UvcLoop *loop)
{
    UvcHandle **dropped = PyMem_Malloc(loop->timers_len * sizeof(UvcHandle *));
    if (dropped == NULL) {
        return; /* compaction only saves memory; try again next iteration */
    }
    Py_ssize_t n = 0, ndropped = 0;
    for (Py_ssize_t i = 0; i < loop->timers_len; i++) {
        UvcHandle *h = loop->timers[i];
        if (h->cancelled) {
            h->scheduled = 0;
            dropped[ndropped++] = h;
        } else {
            loop->timers[n++] = h;
        }
    }
    loop->timers_len = n;
    loop->timers_cancelled = 0;
    for (Py_ssize_t i = n / 2 - 1; i >= 0; i--) {
        heap_sift_down(loop->timers, n, i);
    }
    for (Py_ssize_t i = 0; i < ndropped; i++) {
        uvc_handle_release(dropped[i]);
    }
    PyMem_Free(dropped);
}

/* ---- libuv callbacks ------------------------------------------------------------------- */

/* The timer only bounds the poll; run_once moves due TimerHandles itself. It can fire in the
 * timers phase *before* the poll (when the batch of callbacks took longer than the timeout);
 * uv_stop then makes this uv_run's poll non-blocking instead of waiting forever. */
/* The timer bounds a poll. It may also fire in the GIL-held non-blocking poll that comes
 * first (the deadline passed meanwhile): counting it as a callback tells that poll it found
 * something, so the loop does not go on to block with no timer left armed. */
static void loop_on_timer(uv_timer_t *t)
{
    ((UvcLoop *)t->data)->io_callbacks++;
    uv_stop(t->loop);
}
static void loop_on_wakeup(uv_async_t *a) { (void)a; }

static void loop_check_signal_poll(UvcLoop *loop);

/* Runs right before libuv's poll, which is where libuv hands new watchers to epoll_ctl (and
 * aborts on a closed fd): the last point where a stale watcher can be dropped, after every
 * callback of this uv_run that could have closed an fd. */
static void loop_on_prepare(uv_prepare_t *p)
{
    UvcLoop *loop = p->data;
    if (loop->pollers_started != NULL && PyList_GET_SIZE(loop->pollers_started) > 0) {
        uvc_poll_check_started(loop);
    }
    if (loop->sig_started) {
        loop_check_signal_poll(loop);
    }
    uvc_stream_check_queued(loop);
    uvc_udp_check_queued(loop);
    if (loop->ready_len > 0 || loop->pending_exc != NULL) {
        /* The checks above ran Python code that queued callbacks (a lost connection, a
         * sock_* future failed with EBADF): libuv computes the poll timeout after this
         * callback, so uv_stop makes the poll return at once instead of sleeping on them. */
        loop->blocking = 0;
        uv_stop(p->loop);
    }
    if (loop->blocking && loop->released == NULL) {
        loop->released = PyEval_SaveThread();
    }
}

static void loop_on_check(uv_check_t *c)
{
    UvcLoop *loop = c->data;
    uvc_loop_acquire(loop);
    loop->io_callbacks--; /* runs every iteration: not I/O */
}

/* ---- one iteration --------------------------------------------------------------------- */

/* Timed in debug mode (asyncio's slow-callback warning) and when telemetry asked for it;
 * _log_slow_callback decides what a slow one becomes (a log line, a span or both). */
static int loop_run_ready_handle(UvcLoop *loop, UvcHandle *h)
{
    if (!(loop->debug | loop->timed)) {
        return uvc_handle_run(h);
    }
    double t0 = uvc_loop_time();
    int r = uvc_handle_run(h);
    double dt = uvc_loop_time() - t0;
    if (dt >= loop->slow_callback_duration) {
        PyObject *exc = PyErr_GetRaisedException_compat();
        PyObject *res = PyObject_CallMethod((PyObject *)loop, "_log_slow_callback", "Od", (PyObject *)h, dt);
        if (res == NULL) {
            PyErr_WriteUnraisable((PyObject *)loop);
        }
        Py_XDECREF(res);
        PyErr_SetRaisedException_compat(exc);
    }
    return r;
}

/* Only the handles ready now run in this batch; the ones they schedule wait for the next,
 * so I/O is polled between batches. Fields are re-read after every callback since a callback
 * may schedule more (even from another thread that took the GIL). */
static int loop_run_ready_batch(UvcLoop *loop)
{
    Py_ssize_t ntodo = loop->ready_len;
    for (Py_ssize_t i = 0; i < ntodo; i++) {
        UvcHandle *h = loop_pop_ready(loop);
        if (h == NULL) {
            break;
        }
        int r = 0;
        if (!h->cancelled) {
            loop->callbacks_run++;
            r = loop_run_ready_handle(loop, h);
        }
        uvc_handle_release(h);
        if (r < 0) {
            return -1;
        }
    }
    return 0;
}

static int loop_move_due_timers(UvcLoop *loop)
{
    if (loop->timers_len == 0) {
        return 0;
    }
    double end = uvc_loop_time() + 1e-9;
    while (loop->timers_len > 0) {
        UvcHandle *top = loop->timers[0];
        if (!top->cancelled && top->when > end) {
            break;
        }
        UvcHandle *h = loop_pop_timer(loop);
        if (h->cancelled) {
            loop->timers_cancelled--;
        } else if (uvc_loop_push_ready(loop, h) < 0) {
            uvc_handle_release(h);
            return -1;
        }
        uvc_handle_release(h);
    }
    return 0;
}

/* With callbacks ready, a non-blocking uv_run only polls. When libuv has nothing that could
 * report — no active handle but the wakeup async, no request in flight (writes, DNS), nothing
 * closing, no signal for a loop handler noted — that poll is an epoll_wait system call that
 * cannot find anything: skip it. Other threads need no poll either: call_soon_threadsafe puts its handle
 * on the ready queue itself (under the GIL), the async only interrupts a blocking poll. */
static int loop_nothing_to_poll(UvcLoop *loop)
{
    uv_loop_t *uv = loop->uv;
    return uv->active_handles == 1 && uv->active_reqs.count == 0 && uv->closing_handles == NULL &&
           !loop->st->signal_pending && uv_is_active((uv_handle_t *)loop->wakeup);
}

/* _note_signal(): the Python-level handler of signals with a loop handler calls this (in the
 * main thread, from the interpreter's signal check); the next iteration then polls the
 * signal wakeup socket even when it would skip the poll. */
static PyObject *loop_note_signal(PyObject *module, PyObject *unused)
{
    uvc_state_of_module(module)->signal_pending = 1;
    Py_RETURN_NONE;
}

static PyMethodDef loop_functions[] = {
    {"_note_signal", loop_note_signal, METH_NOARGS, NULL},
    {NULL},
};

/* One iteration: due timers join the ready queue, the ready batch runs, then the poll.
 * The batch comes first because libuv runs I/O callbacks directly in the poll: callbacks
 * that were ready before the poll must run before the I/O it delivers, as in asyncio where
 * I/O events queue behind them (a task started before a datagram arrives sees it). The poll
 * also runs after stop() (non-blocking), so `call_soon(stop); run_forever()` handles I/O. */
static int loop_run_once(UvcLoop *loop)
{
    loop->iterations++;
    if (loop_move_due_timers(loop) < 0 || loop_run_ready_batch(loop) < 0) {
        return -1;
    }
    if (loop->fanout_dirty != NULL) {
        uvc_fanout_flush(loop); /* fan-out frames the batch queued: one write per connection */
    }
    int64_t timeout = -1;
    while (loop->timers_len > 0 && loop->timers[0]->cancelled) {
        UvcHandle *h = loop_pop_timer(loop);
        loop->timers_cancelled--;
        uvc_handle_release(h);
    }
    if (loop->timers_cancelled > 100 && loop->timers_cancelled * 2 > loop->timers_len) {
        loop_compact_timers(loop);
    }
    if (loop->ready_len > 0 || loop->stopping) {
        timeout = 0;
    } else if (loop->timers_len > 0) {
        double delay = loop->timers[0]->when - uvc_loop_time();
        timeout = delay <= 0 ? 0 : (int64_t)ceil(delay * 1e3);
        if (timeout > 24 * 3600 * 1000) {
            timeout = 24 * 3600 * 1000;
        }
    }
    if (timeout > 0) {
        uv_update_time(loop->uv); /* the deadline counts from now, not the last poll */
        uv_timer_start(loop->timer, loop_on_timer, (uint64_t)timeout, 0);
    } else {
        uv_timer_stop(loop->timer);
        if (timeout == 0 && !loop->stopping && loop_nothing_to_poll(loop)) {
            /* what the signal wakeup would have done: run Python-level signal handlers (the
             * interpreter does too, but only between bytecodes; callbacks may all be C) */
            if (PyErr_CheckSignals() < 0) {
                return -1;
            }
            return 0;
        }
    }
    int polled = 0;
    if (timeout != 0) {
        /* Poll first without releasing the GIL: when I/O is already waiting (a busy
         * connection), its callbacks run now and the GIL round trip of a blocking poll is
         * saved; only when that finds nothing does the loop block with the GIL released. */
        unsigned long seen = loop->io_callbacks;
        uv_run(loop->uv, UV_RUN_NOWAIT);
        polled = loop->io_callbacks != seen || loop->ready_len > 0 || loop->stopping ||
                 loop->pending_exc != NULL;
    }
    if (!polled) {
        loop->blocking = timeout != 0;
        uv_run(loop->uv, timeout == 0 ? UV_RUN_NOWAIT : UV_RUN_ONCE);
    }
    uvc_loop_acquire(loop);
    loop->io_callbacks--;
    loop->blocking = 0;
    if (loop->fanout_dirty != NULL) {
        uvc_fanout_flush(loop); /* and the ones I/O callbacks queued, before the next poll */
    }
    if (loop->pending_exc != NULL) {
        PyObject *exc = loop->pending_exc;
        loop->pending_exc = NULL;
        PyErr_SetRaisedException_compat(exc);
        return -1;
    }

    return 0;
}

/* ---- Python methods -------------------------------------------------------------------- */

static PyObject *loop_run(UvcLoop *self, PyObject *unused)
{
    if (uvc_loop_check_closed(self) < 0) {
        return NULL;
    }
    if (self->running) {
        PyErr_SetString(PyExc_RuntimeError, "This event loop is already running");
        return NULL;
    }
    self->running = 1;
    self->thread_id = PyThread_get_thread_ident();
    int r = 0;
    for (;;) {
        r = loop_run_once(self);
        if (r < 0 || self->stopping) {
            break;
        }
    }
    self->stopping = 0;
    self->running = 0;
    self->thread_id = 0;
    if (r < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *loop_stop(UvcLoop *self, PyObject *unused)
{
    self->stopping = 1;
    /* stop() may come from another thread (via call_soon_threadsafe it should, but be kind) */
    if (self->wakeup != NULL && !self->closed) {
        uv_async_send(self->wakeup);
    }
    Py_RETURN_NONE;
}

static PyObject *loop_time(UvcLoop *self, PyObject *unused) { return PyFloat_FromDouble(uvc_loop_time()); }

static PyObject *loop_is_running(UvcLoop *self, PyObject *unused) { return PyBool_FromLong(self->running); }
static PyObject *loop_is_closed(UvcLoop *self, PyObject *unused) { return PyBool_FromLong(self->closed); }
static PyObject *loop_get_debug(UvcLoop *self, PyObject *unused) { return PyBool_FromLong(self->debug); }

static PyObject *loop_set_debug(UvcLoop *self, PyObject *enabled)
{
    int v = PyObject_IsTrue(enabled);
    if (v < 0) {
        return NULL;
    }
    self->debug = v;
    Py_RETURN_NONE;
}

/* Parse (callback, *args, context=None) from a vectorcall; returns the context (borrowed,
 * may be NULL) or sets *err. */
static int parse_callback_args(const char *name, PyObject *const *args, Py_ssize_t nargs,
                               PyObject *kwnames, Py_ssize_t first, PyObject **context)
{
    *context = NULL;
    if (nargs < first + 1) {
        PyErr_Format(PyExc_TypeError, "%s() missing the callback argument", name);
        return -1;
    }
    if (kwnames != NULL) {
        Py_ssize_t nk = PyTuple_GET_SIZE(kwnames);
        for (Py_ssize_t i = 0; i < nk; i++) {
            PyObject *k = PyTuple_GET_ITEM(kwnames, i);
            if (!PyUnicode_Check(k) || !(PyUnicode_CompareWithASCIIString(k, "context") == 0)) {
                PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument %R", name, k);
                return -1;
            }
            *context = args[nargs + i];
        }
    }
    if (*context == Py_None) {
        *context = NULL;
    }
    if (*context != NULL && !PyContext_CheckExact(*context)) {
        PyErr_Format(PyExc_TypeError, "%s(): context must be a contextvars.Context, not %.100s",
                     name, Py_TYPE(*context)->tp_name);
        return -1;
    }
    PyObject *cb = args[first];
    if (!PyCallable_Check(cb)) {
        PyErr_Format(PyExc_TypeError, "a callable object was expected by %s(), got %R", name, cb);
        return -1;
    }
    return 0;
}

static int loop_debug_checks(UvcLoop *self, const char *name, PyObject *cb)
{
    PyObject *res = PyObject_CallMethod((PyObject *)self, "_check_callback_debug", "Os", cb, name);
    if (res == NULL) {
        return -1;
    }
    Py_DECREF(res);
    return 0;
}

static PyObject *loop_schedule_soon(UvcLoop *self, const char *name, PyObject *const *args,
                                    size_t nargsf, PyObject *kwnames, int threadsafe)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    PyObject *context;
    if (uvc_loop_check_closed(self) < 0 || (!threadsafe && self->debug && loop_check_thread(self) < 0) ||
        parse_callback_args(name, args, nargs, kwnames, 0, &context) < 0) {
        return NULL;
    }
    if (self->debug && loop_debug_checks(self, name, args[0]) < 0) {
        return NULL;
    }
    UvcHandle *h = uvc_handle_new_queued(self->st, self->st->HandleType, (PyObject *)self,
                                         args[0], args + 1, nargs - 1, context);
    if (h == NULL) {
        return NULL;
    }
    if (self->debug && PyObject_SetAttrString((PyObject *)h, "_source_traceback", Py_None) == 0) {
        PyObject *r = PyObject_CallMethod((PyObject *)self, "_capture_source_traceback", "O", (PyObject *)h);
        Py_XDECREF(r);
        if (r == NULL) {
            Py_DECREF(h);
            return NULL;
        }
    }
    if (uvc_loop_push_ready(self, h) < 0) {
        Py_DECREF(h);
        return NULL;
    }
    if (threadsafe) {
        uv_async_send(self->wakeup);
    }
    return (PyObject *)h;
}

static PyObject *loop_call_soon(UvcLoop *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    return loop_schedule_soon(self, "call_soon", args, nargsf, kwnames, 0);
}

static PyObject *loop_call_soon_threadsafe(UvcLoop *self, PyObject *const *args, size_t nargsf,
                                           PyObject *kwnames)
{
    return loop_schedule_soon(self, "call_soon_threadsafe", args, nargsf, kwnames, 1);
}

static PyObject *loop_schedule_at(UvcLoop *self, const char *name, double when, PyObject *const *args,
                                  Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *context;
    if (uvc_loop_check_closed(self) < 0 || (self->debug && loop_check_thread(self) < 0) ||
        parse_callback_args(name, args, nargs, kwnames, 1, &context) < 0) {
        return NULL;
    }
    if (isnan(when)) {
        PyErr_Format(PyExc_ValueError, "%s(): the time must not be NaN", name);
        return NULL;
    }
    if (self->debug && loop_debug_checks(self, name, args[1]) < 0) {
        return NULL;
    }
    UvcHandle *h = uvc_handle_new_queued(self->st, self->st->TimerHandleType, (PyObject *)self,
                                         args[1], args + 2, nargs - 2, context);
    if (h == NULL) {
        return NULL;
    }
    h->when = when;
    if (self->debug) {
        PyObject *r = PyObject_CallMethod((PyObject *)self, "_capture_source_traceback", "O", (PyObject *)h);
        Py_XDECREF(r);
        if (r == NULL) {
            Py_DECREF(h);
            return NULL;
        }
    }
    if (loop_push_timer(self, h) < 0) {
        Py_DECREF(h);
        return NULL;
    }
    return (PyObject *)h;
}

static int parse_time(const char *name, const char *what, PyObject *o, double *out)
{
    if (!PyFloat_Check(o) && !PyLong_Check(o) && !PyIndex_Check(o) &&
        !PyObject_HasAttrString(o, "__float__")) {
        PyErr_Format(PyExc_TypeError, "%s(): %s must be a number, not %.100s", name, what,
                     Py_TYPE(o)->tp_name);
        return -1;
    }
    *out = PyFloat_AsDouble(o);
    return (*out == -1.0 && PyErr_Occurred()) ? -1 : 0;
}

static PyObject *loop_call_later(UvcLoop *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    double delay;
    if (nargs < 1) {
        PyErr_SetString(PyExc_TypeError, "call_later() missing the delay argument");
        return NULL;
    }
    if (parse_time("call_later", "delay", args[0], &delay) < 0) {
        return NULL;
    }
    return loop_schedule_at(self, "call_later", uvc_loop_time() + delay, args, nargs, kwnames);
}

static PyObject *loop_call_at(UvcLoop *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    double when;
    if (nargs < 1) {
        PyErr_SetString(PyExc_TypeError, "call_at() missing the when argument");
        return NULL;
    }
    if (parse_time("call_at", "when", args[0], &when) < 0) {
        return NULL;
    }
    return loop_schedule_at(self, "call_at", when, args, nargs, kwnames);
}

static PyObject *loop_create_future(UvcLoop *self, PyObject *unused)
{
    PyObject *arg = (PyObject *)self;
    return PyObject_Vectorcall(self->st->asyncio_Future, &arg, 0, self->st->kwnames_loop);
}

static PyObject *loop_create_task(UvcLoop *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    PyObject *coro = NULL, *name = Py_None, *context = Py_None;
    if (nargs != 1) {
        PyErr_Format(PyExc_TypeError, "create_task() takes 1 positional argument (%zd given)", nargs);
        return NULL;
    }
    coro = args[0];
    Py_ssize_t nk = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    for (Py_ssize_t i = 0; i < nk; i++) {
        PyObject *k = PyTuple_GET_ITEM(kwnames, i);
        if ((PyUnicode_CompareWithASCIIString(k, "name") == 0)) {
            name = args[nargs + i];
#if PY_VERSION_HEX >= 0x030B0000
        } else if ((PyUnicode_CompareWithASCIIString(k, "context") == 0)) {
            context = args[nargs + i];
#endif
        } else {
            PyErr_Format(PyExc_TypeError, "create_task() got an unexpected keyword argument %R", k);
            return NULL;
        }
    }
    /* Checked before the Task exists: its constructor's call_soon would refuse too, but only
     * after a Task that can never run was made (and later reported as destroyed pending). */
    if (uvc_loop_check_closed(self) < 0 || (self->debug && loop_check_thread(self) < 0)) {
        return NULL;
    }
    if (self->task_factory == NULL) {
        PyObject *stack[4] = {coro, (PyObject *)self, name, context};
        return PyObject_Vectorcall(self->st->asyncio_Task, stack, 1,
                                   context == Py_None ? self->st->kwnames_loop_name
                                                      : self->st->kwnames_loop_name_ctx);
    }
    PyObject *stack[3] = {(PyObject *)self, coro, context};
    PyObject *task = PyObject_Vectorcall(self->task_factory, stack, 2,
                                         context == Py_None ? NULL : self->st->kwnames_context);
    if (task == NULL || name == Py_None) {
        return task;
    }
    PyObject *r = PyObject_CallMethod(task, "set_name", "O", name);
    if (r == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_AttributeError)) {
            Py_DECREF(task);
            return NULL;
        }
        PyErr_Clear();
    }
    Py_XDECREF(r);
    return task;
}

static PyObject *loop_set_task_factory(UvcLoop *self, PyObject *factory)
{
    if (factory != Py_None && !PyCallable_Check(factory)) {
        PyErr_SetString(PyExc_TypeError, "task factory must be a callable or None");
        return NULL;
    }
    Py_XSETREF(self->task_factory, factory == Py_None ? NULL : Py_NewRef(factory));
    Py_RETURN_NONE;
}

static PyObject *loop_get_task_factory(UvcLoop *self, PyObject *unused)
{
    return Py_NewRef(self->task_factory ? self->task_factory : Py_None);
}

static PyObject *loop_add_reader(UvcLoop *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    if (uvc_loop_check_closed(self) < 0 || loop_check_thread(self) < 0) {
        return NULL;
    }
    return uvc_poll_add(self, args, PyVectorcall_NARGS(nargsf), kwnames, 0);
}

static PyObject *loop_add_writer(UvcLoop *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    if (uvc_loop_check_closed(self) < 0 || loop_check_thread(self) < 0) {
        return NULL;
    }
    return uvc_poll_add(self, args, PyVectorcall_NARGS(nargsf), kwnames, 1);
}

static PyObject *loop_remove_reader(UvcLoop *self, PyObject *fd)
{
    if (loop_check_thread(self) < 0) {
        return NULL;
    }
    if (self->closed) {
        Py_RETURN_FALSE;
    }
    return uvc_poll_remove(self, fd, 0);
}

static PyObject *loop_remove_writer(UvcLoop *self, PyObject *fd)
{
    if (loop_check_thread(self) < 0) {
        return NULL;
    }
    if (self->closed) {
        Py_RETURN_FALSE;
    }
    return uvc_poll_remove(self, fd, 1);
}

/* ---- signal wakeup: Python's C signal handler writes signal numbers to a socket we poll ---- */

static void loop_on_signal_wakeup(uv_poll_t *p, int status, int events)
{
    UvcLoop *loop = p->data;
    uvc_loop_acquire(loop);
    loop->st->signal_pending = 0;
    char buf[256];
    PyObject *nums = PyBytes_FromStringAndSize(NULL, 0);
    for (;;) {
        ssize_t n = read(loop->sig_rfd, buf, sizeof(buf));
        if (n <= 0) {
            break;
        }
        if (nums != NULL) {
            PyObject *chunk = PyBytes_FromStringAndSize(buf, n);
            PyBytes_ConcatAndDel(&nums, chunk);
        }
    }
    /* Runs Python-level signal handlers (SIGINT's default raises KeyboardInterrupt here). */
    if (PyErr_CheckSignals() < 0) {
        Py_XDECREF(nums);
        loop_stash_exception(loop);
        return;
    }
    if (nums == NULL) {
        uvc_loop_handle_callback_error(loop, "Error reading the signal wakeup socket", NULL, NULL);
        return;
    }
    if (PyBytes_GET_SIZE(nums) > 0 && loop->signal_wakeup != NULL) {
        PyObject *r = PyObject_CallOneArg(loop->signal_wakeup, nums);
        if (r == NULL) {
            uvc_loop_handle_callback_error(loop, "Error dispatching signals", NULL, NULL);
        }
        Py_XDECREF(r);
    }
    Py_DECREF(nums);
}

static void loop_free_handle_cb(uv_handle_t *h) { PyMem_RawFree(h); }

static void loop_stop_signal_poll(UvcLoop *self)
{
    if (self->sigpoll != NULL) {
        uv_poll_stop(self->sigpoll);
        uv_close((uv_handle_t *)self->sigpoll, loop_free_handle_cb);
        self->sigpoll = NULL;
    }
    self->sig_rfd = -1;
    self->sig_started = 0;
    Py_CLEAR(self->signal_wakeup);
}

/* The wake-up socket was closed under the loop: stop polling it rather than let libuv abort.
 * Signals then reach Python at the next wake-up; run_forever installs a fresh socketpair. */
static void loop_check_signal_poll(UvcLoop *loop)
{
    loop->sig_started = 0;
    if (loop->sigpoll != NULL && uvc_fd_is_stale(loop->sig_rfd, loop->sig_dev, loop->sig_ino)) {
        loop_stop_signal_poll(loop);
    }
}

static PyObject *loop_set_signal_wakeup(UvcLoop *self, PyObject *args)
{
    int fd;
    PyObject *cb;
    if (!PyArg_ParseTuple(args, "iO:_set_signal_wakeup", &fd, &cb)) {
        return NULL;
    }
    if (uvc_loop_check_closed(self) < 0) {
        return NULL;
    }
    loop_stop_signal_poll(self);
    dev_t dev;
    ino_t ino;
    /* a watcher a closed file left on this number would make uv_poll_init fail (EEXIST) */
    if (uvc_poll_release_fd(self, fd) < 0) {
        return NULL;
    }
    if (uvc_fd_identity(fd, &dev, &ino) < 0) {
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    uv_poll_t *p = PyMem_RawMalloc(sizeof(uv_poll_t));
    if (p == NULL) {
        return PyErr_NoMemory();
    }
    int err = uv_poll_init(self->uv, p, fd);
    if (err < 0) {
        PyMem_RawFree(p);
        errno = -err;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    p->data = self;
    uv_poll_start(p, UV_READABLE, loop_on_signal_wakeup);
    uv_unref((uv_handle_t *)p);
    self->sigpoll = p;
    self->sig_rfd = fd;
    self->sig_dev = dev;
    self->sig_ino = ino;
    self->sig_started = 1;
    self->signal_wakeup = Py_NewRef(cb);
    Py_RETURN_NONE;
}

static PyObject *loop_clear_signal_wakeup(UvcLoop *self, PyObject *unused)
{
    if (!self->closed) {
        loop_stop_signal_poll(self);
    }
    Py_RETURN_NONE;
}

/* ---- lifetime -------------------------------------------------------------------------- */

static void loop_clear_queues(UvcLoop *self)
{
    UvcHandle *h;
    while ((h = loop_pop_ready(self)) != NULL) {
        uvc_handle_release(h);
    }
    while (self->timers_len > 0) {
        h = self->timers[--self->timers_len];
        h->scheduled = 0;
        uvc_handle_release(h);
    }
    self->timers_cancelled = 0;
}

static void loop_close_walk_cb(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h)) {
        /* A handle its owner forgot; the owner's object is gone or will see a closed loop. */
        uv_close(h, NULL);
    }
}

/* Close every libuv handle we own and the uv loop itself. Safe to call twice. */
static void loop_close_uv(UvcLoop *self)
{
    if (self->uv == NULL) {
        return;
    }
    uvc_fanout_flush(self);     /* held fan-out frames, before their transports close */
    uvc_stream_close_all(self); /* transports and servers (stream.c) */
    uvc_poll_close_all(self);
    loop_stop_signal_poll(self);
    uv_close((uv_handle_t *)self->timer, loop_free_handle_cb);
    uv_close((uv_handle_t *)self->wakeup, loop_free_handle_cb);
    uv_close((uv_handle_t *)self->prepare, loop_free_handle_cb);
    uv_close((uv_handle_t *)self->check, loop_free_handle_cb);
    self->timer = NULL;
    self->wakeup = NULL;
    self->prepare = NULL;
    self->check = NULL;
    uvc_dns_cancel_all(self);
    uv_run(self->uv, UV_RUN_NOWAIT);
    while (uv_loop_close(self->uv) == UV_EBUSY) {
        uv_walk(self->uv, loop_close_walk_cb, NULL);
        if (self->dns_pending != NULL) {
            /* A lookup a worker thread already runs cannot be withdrawn and the uv loop cannot
             * close under it: wait for it without holding the GIL (its callback takes it). */
            self->released = PyEval_SaveThread();
            uv_run(self->uv, UV_RUN_ONCE);
            uvc_loop_acquire(self);
        }
        else {
            uv_run(self->uv, UV_RUN_NOWAIT);
        }
    }
    PyMem_RawFree(self->uv);
    self->uv = NULL;
}

static PyObject *loop_close_core(UvcLoop *self, PyObject *unused)
{
    if (self->running) {
        PyErr_SetString(PyExc_RuntimeError, "Cannot close a running event loop");
        return NULL;
    }
    if (self->closed) {
        Py_RETURN_NONE;
    }
    self->closed = 1;
    loop_clear_queues(self);
    loop_close_uv(self);
    Py_RETURN_NONE;
}

static int loop_init_uv(UvcLoop *self)
{
    self->uv = PyMem_RawMalloc(sizeof(uv_loop_t));
    self->timer = PyMem_RawMalloc(sizeof(uv_timer_t));
    self->wakeup = PyMem_RawMalloc(sizeof(uv_async_t));
    self->prepare = PyMem_RawMalloc(sizeof(uv_prepare_t));
    self->check = PyMem_RawMalloc(sizeof(uv_check_t));
    if (!self->uv || !self->timer || !self->wakeup || !self->prepare || !self->check) {
        PyErr_NoMemory();
        return -1;
    }
    int err = uv_loop_init(self->uv);
    if (err < 0) {
        PyMem_RawFree(self->uv);
        self->uv = NULL;
        PyErr_Format(PyExc_OSError, "uv_loop_init failed: %s", uv_strerror(err));
        return -1;
    }
    self->uv->data = self;
    uv_timer_init(self->uv, self->timer);
    uv_async_init(self->uv, self->wakeup, loop_on_wakeup);
    uv_prepare_init(self->uv, self->prepare);
    uv_check_init(self->uv, self->check);
    self->timer->data = self->wakeup->data = self->prepare->data = self->check->data = self;
    uv_prepare_start(self->prepare, loop_on_prepare);
    uv_check_start(self->check, loop_on_check);
    /* The loop's own handles must not keep uv_run alive except the wakeup handle, which is
     * what a blocked iteration waits on when nothing else is pending. */
    uv_unref((uv_handle_t *)self->prepare);
    uv_unref((uv_handle_t *)self->check);
    return 0;
}

static PyObject *loop_tp_new(PyTypeObject *tp, PyObject *args, PyObject *kwds)
{
    uvc_state *st = uvc_state_from_type(tp);
    if (st == NULL) {
        return NULL;
    }
    UvcLoop *self = (UvcLoop *)tp->tp_alloc(tp, 0);
    if (self == NULL) {
        return NULL;
    }
    self->st = st;
    self->module = Py_NewRef(PyType_GetModule(st->LoopType));
    self->sig_rfd = -1;
    self->slow_callback_duration = 0.1;
    self->pollers = PyDict_New();
    self->pollers_started = PyList_New(0);
    if (self->pollers == NULL || self->pollers_started == NULL || loop_init_uv(self) < 0) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static int loop_traverse(UvcLoop *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->module);
    /* queued handles are mostly untracked: handle.c explains how they are visited */
    for (Py_ssize_t i = 0; i < self->ready_len; i++) {
        int r = uvc_handle_traverse_queued(self->ready[(self->ready_head + i) % self->ready_cap],
                                           visit, arg);
        if (r != 0) {
            return r;
        }
    }
    for (Py_ssize_t i = 0; i < self->timers_len; i++) {
        int r = uvc_handle_traverse_queued(self->timers[i], visit, arg);
        if (r != 0) {
            return r;
        }
    }
    Py_VISIT(self->pollers);
    Py_VISIT(self->pollers_started);
    Py_VISIT(self->task_factory);
    Py_VISIT(self->pending_exc);
    Py_VISIT(self->signal_wakeup);
    Py_VISIT(self->dict);
    return uvc_fanout_traverse_dirty(self, visit, arg);
}

static int loop_clear(UvcLoop *self)
{
    loop_clear_queues(self);
    uvc_fanout_clear_dirty(self);
    Py_CLEAR(self->pollers);
    Py_CLEAR(self->pollers_started);
    Py_CLEAR(self->task_factory);
    Py_CLEAR(self->pending_exc);
    Py_CLEAR(self->signal_wakeup);
    Py_CLEAR(self->dict);
    return 0;
}

static void loop_finalize(UvcLoop *self)
{
    if (self->closed || self->uv == NULL) {
        return;
    }
    PyObject *exc = PyErr_GetRaisedException_compat();
    if (PyErr_WarnFormat(PyExc_ResourceWarning, 1, "unclosed event loop %R", (PyObject *)self) < 0) {
        PyErr_WriteUnraisable((PyObject *)self);
    }
    PyErr_SetRaisedException_compat(exc);
}

static void loop_dealloc(UvcLoop *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    if (PyObject_CallFinalizerFromDealloc((PyObject *)self) < 0) {
        return;
    }
    PyObject_GC_UnTrack(self);
    if (self->weakreflist != NULL) {
        PyObject_ClearWeakRefs((PyObject *)self);
    }
    self->closed = 1;
    loop_clear(self);
    if (self->uv != NULL) {
        loop_close_uv(self);
    } else {
        PyMem_RawFree(self->timer);
        PyMem_RawFree(self->wakeup);
        PyMem_RawFree(self->prepare);
        PyMem_RawFree(self->check);
    }
    PyMem_Free(self->ready);
    PyMem_Free(self->timers);
    Py_CLEAR(self->module);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyObject *loop_get_slow(UvcLoop *self, void *c) { return PyFloat_FromDouble(self->slow_callback_duration); }
static int loop_set_slow(UvcLoop *self, PyObject *v, void *c)
{
    double d = v ? PyFloat_AsDouble(v) : -1;
    if (d == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (d < 0) {
        PyErr_SetString(PyExc_ValueError, "slow_callback_duration must be a non-negative number");
        return -1;
    }
    self->slow_callback_duration = d;
    return 0;
}
static PyObject *loop_get_thread_id(UvcLoop *self, void *c)
{
    if (self->thread_id == 0) {
        Py_RETURN_NONE;
    }
    return PyLong_FromUnsignedLong(self->thread_id);
}
static PyObject *loop_get_stopping(UvcLoop *self, void *c) { return PyBool_FromLong(self->stopping); }
static PyObject *loop_get_ready_count(UvcLoop *self, void *c) { return PyLong_FromSsize_t(self->ready_len); }
static PyObject *loop_get_timer_count(UvcLoop *self, void *c)
{
    return PyLong_FromSsize_t(self->timers_len - self->timers_cancelled);
}

static PyObject *loop_scheduled_list(UvcLoop *self, void *c)
{
    PyObject *l = PyList_New(0);
    for (Py_ssize_t i = 0; l != NULL && i < self->timers_len; i++) {
        if (PyList_Append(l, (PyObject *)self->timers[i]) < 0) {
            Py_CLEAR(l);
        }
    }
    return l;
}

static PyGetSetDef loop_getset[] = {
    {"slow_callback_duration", (getter)loop_get_slow, (setter)loop_set_slow,
     "Callbacks slower than this many seconds are logged in debug mode.", NULL},
    {"_thread_id", (getter)loop_get_thread_id, NULL, NULL, NULL},
    {"_stopping", (getter)loop_get_stopping, NULL, NULL, NULL},
    {"_ready_count", (getter)loop_get_ready_count, NULL, NULL, NULL},
    {"_timer_count", (getter)loop_get_timer_count, NULL, NULL, NULL},
    {"_scheduled", (getter)loop_scheduled_list, NULL, NULL, NULL},
    {NULL},
};

static PyMemberDef loop_members[] = {
    {"__weaklistoffset__", T_PYSSIZET, offsetof(UvcLoop, weakreflist), READONLY},
    {"__dictoffset__", T_PYSSIZET, offsetof(UvcLoop, dict), READONLY},
    {NULL},
};

#define FASTKW (METH_FASTCALL | METH_KEYWORDS)
static PyMethodDef loop_methods[] = {
    {"_run", (PyCFunction)loop_run, METH_NOARGS, "Run iterations until stop(); run_forever wraps this."},
    {"_close", (PyCFunction)loop_close_core, METH_NOARGS, "Release the libuv loop; close() wraps this."},
    {"_set_signal_wakeup", (PyCFunction)loop_set_signal_wakeup, METH_VARARGS, NULL},
    {"_metrics", (PyCFunction)uvc_loop_metrics, METH_NOARGS,
     "(iterations, callbacks_run, ready, timers, fd_watchers, active_handles, idle_time_ns or None)"},
    {"_set_telemetry", (PyCFunction)uvc_loop_set_telemetry, METH_VARARGS,
     "_set_telemetry(timed, idle_time): time ready callbacks; account idle time (cannot be undone)"},
    {"_clear_signal_wakeup", (PyCFunction)loop_clear_signal_wakeup, METH_NOARGS, NULL},
    {"stop", (PyCFunction)loop_stop, METH_NOARGS, "Stop the loop after the current batch of callbacks."},
    {"time", (PyCFunction)loop_time, METH_NOARGS, "The loop's monotonic clock, in seconds."},
    {"is_running", (PyCFunction)loop_is_running, METH_NOARGS, "True while the loop runs."},
    {"is_closed", (PyCFunction)loop_is_closed, METH_NOARGS, "True once close() was called."},
    {"get_debug", (PyCFunction)loop_get_debug, METH_NOARGS, "Is debug mode on?"},
    {"set_debug", (PyCFunction)loop_set_debug, METH_O, "Turn debug mode on or off."},
    {"call_soon", (PyCFunction)(void (*)(void))loop_call_soon, FASTKW,
     "call_soon(callback, *args, context=None) -> Handle"},
    {"call_soon_threadsafe", (PyCFunction)(void (*)(void))loop_call_soon_threadsafe, FASTKW,
     "call_soon_threadsafe(callback, *args, context=None) -> Handle; wakes the loop."},
    {"call_later", (PyCFunction)(void (*)(void))loop_call_later, FASTKW,
     "call_later(delay, callback, *args, context=None) -> TimerHandle"},
    {"call_at", (PyCFunction)(void (*)(void))loop_call_at, FASTKW,
     "call_at(when, callback, *args, context=None) -> TimerHandle"},
    {"create_future", (PyCFunction)loop_create_future, METH_NOARGS, "A new asyncio.Future bound to this loop."},
    {"create_task", (PyCFunction)(void (*)(void))loop_create_task, FASTKW,
     "create_task(coro, *, name=None, context=None) -> asyncio.Task"},
    {"set_task_factory", (PyCFunction)loop_set_task_factory, METH_O, NULL},
    {"get_task_factory", (PyCFunction)loop_get_task_factory, METH_NOARGS, NULL},
    {"add_reader", (PyCFunction)(void (*)(void))loop_add_reader, FASTKW,
     "add_reader(fd, callback, *args): call back whenever fd is readable."},
    {"add_writer", (PyCFunction)(void (*)(void))loop_add_writer, FASTKW,
     "add_writer(fd, callback, *args): call back whenever fd is writable."},
    {"remove_reader", (PyCFunction)loop_remove_reader, METH_O, "Stop watching fd for reading; True if it was."},
    {"remove_writer", (PyCFunction)loop_remove_writer, METH_O, "Stop watching fd for writing; True if it was."},
    {NULL},
};

static PyType_Slot loop_slots[] = {
    {Py_tp_new, loop_tp_new},
    {Py_tp_dealloc, loop_dealloc},
    {Py_tp_finalize, loop_finalize},
    {Py_tp_traverse, loop_traverse},
    {Py_tp_clear, loop_clear},
    {Py_tp_methods, loop_methods},
    {Py_tp_getset, loop_getset},
    {Py_tp_members, loop_members},
    {Py_tp_doc, "The C core of uvcore.Loop: a libuv event loop (use uvcore.Loop)."},
    {0, NULL},
};

static PyType_Spec loop_spec = {
    .name = "uvcore._uvcore.Loop",
    .basicsize = sizeof(UvcLoop),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_BASETYPE,
    .slots = loop_slots,
};

int uvc_loop_module_init(PyObject *m, uvc_state *st)
{
    st->kwnames_loop = Py_BuildValue("(s)", "loop");
    st->kwnames_context = Py_BuildValue("(s)", "context");
    st->kwnames_loop_name = Py_BuildValue("(ss)", "loop", "name");
    st->kwnames_loop_name_ctx = Py_BuildValue("(sss)", "loop", "name", "context");
    st->str_call_exception_handler = PyUnicode_InternFromString("call_exception_handler");
    if (!st->kwnames_loop || !st->kwnames_context || !st->kwnames_loop_name ||
        !st->kwnames_loop_name_ctx || !st->str_call_exception_handler) {
        return -1;
    }
    if (uvc_add_type(m, &uvc_poller_spec, NULL, &st->PollerType) < 0 ||
        PyModule_AddFunctions(m, loop_functions) < 0) {
        return -1;
    }
    return uvc_add_type(m, &loop_spec, NULL, &st->LoopType);
}
