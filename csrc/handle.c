/* handle.c: Handle and TimerHandle, the objects call_soon/call_later return. A handle runs
 * its callback inside its contextvars.Context; errors go to the loop's exception handler as
 * asyncio reports them. TimerHandle adds a deadline and its place in the loop's heap. */
#include "loop.h"

/* GC and allocation. call_soon/call_later make a handle per call and most live only while
 * the loop's ready queue or timer heap holds them, so the per-handle cost is what the
 * collector and the allocator add:
 * - Dead handles of our two exact types go on a freelist in the module state and are reused.
 * - A queued handle (uvc_handle_new_queued) is not tracked: while the queue holds the only
 *   reference, the loop's tp_traverse visits what the handle holds as if the loop held it
 *   (exact, so a cycle through an unreachable loop is still collected). When the caller also
 *   kept the handle, the collector sees its references as coming from outside: what it holds
 *   stays alive while it is queued, which it would anyway since the loop will run it. When it
 *   leaves the queue still referenced elsewhere, uvc_handle_release() tracks it, so cycles
 *   through it (an object keeping its own TimerHandle) are collected as before.
 * - The contextvars.Context copied for a handle without context= is private to the handle
 *   and untracked too; the handle's traverse visits its contents while the handle holds the
 *   only reference, and it is tracked the moment it escapes (get_context()). */
#define UVC_HANDLE_FREELIST_MAX 512

static void handle_clear_args(UvcHandle *h)
{
    if (h->argtuple != NULL) {
        Py_CLEAR(h->argtuple);
    } else {
        for (Py_ssize_t i = 0; i < h->nargs; i++) {
            Py_CLEAR(h->inline_args[i]);
        }
    }
    h->nargs = 0;
    h->argv = h->inline_args;
}

static int handle_traverse(UvcHandle *h, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(h));
    Py_VISIT(h->callback);
    if (h->argtuple != NULL) {
        Py_VISIT(h->argtuple);
    } else {
        for (Py_ssize_t i = 0; i < h->nargs; i++) {
            Py_VISIT(h->inline_args[i]);
        }
    }
    if (h->context != NULL && h->own_context && Py_REFCNT(h->context) == 1 &&
        !PyObject_GC_IsTracked(h->context)) {
        int r = Py_TYPE(h->context)->tp_traverse(h->context, visit, arg);
        if (r != 0) {
            return r;
        }
    } else {
        Py_VISIT(h->context);
    }
    Py_VISIT(h->loop);
    Py_VISIT(h->source_traceback);
    return 0;
}

/* Our private context copy is about to be shared (or outlive us): let the GC see it. */
static void handle_expose_context(UvcHandle *h)
{
    if (h->context != NULL && h->own_context && !PyObject_GC_IsTracked(h->context)) {
        PyObject_GC_Track(h->context);
    }
    h->own_context = 0;
}

static int handle_clear(UvcHandle *h)
{
    Py_CLEAR(h->callback);
    handle_clear_args(h);
    /* tracked again before our reference goes: the Context's dealloc expects it tracked */
    handle_expose_context(h);
    Py_CLEAR(h->context);
    Py_CLEAR(h->loop);
    Py_CLEAR(h->source_traceback);
    return 0;
}

static void handle_dealloc(UvcHandle *h)
{
    PyTypeObject *tp = Py_TYPE(h);
    PyObject_GC_UnTrack(h);
    if (h->weakreflist != NULL) {
        PyObject_ClearWeakRefs((PyObject *)h);
    }
    handle_clear(h);
    uvc_state *st = h->st;
    if (st != NULL && (tp == st->HandleType || tp == st->TimerHandleType) &&
        st->handle_numfree < UVC_HANDLE_FREELIST_MAX) {
        h->callback = (PyObject *)st->handle_freelist;
        st->handle_freelist = h;
        st->handle_numfree++;
    } else {
        tp->tp_free(h);
    }
    Py_DECREF(tp);
}

void uvc_handle_freelist_clear(uvc_state *st)
{
    while (st->handle_freelist != NULL) {
        UvcHandle *h = st->handle_freelist;
        st->handle_freelist = (UvcHandle *)h->callback;
        PyObject_GC_Del(h);
    }
    st->handle_numfree = 0;
}

/* An untracked handle with every field set, or NULL with an exception set. */
static UvcHandle *handle_make(uvc_state *st, PyTypeObject *tp, PyObject *loop, PyObject *callback,
                              PyObject *const *args, Py_ssize_t nargs, PyObject *context)
{
    PyObject *argtuple = NULL;
    if (nargs > UVC_HANDLE_INLINE_ARGS) {
        argtuple = PyTuple_New(nargs);
        if (argtuple == NULL) {
            return NULL;
        }
        for (Py_ssize_t i = 0; i < nargs; i++) {
            PyTuple_SET_ITEM(argtuple, i, Py_NewRef(args[i]));
        }
    }
    int own_context = 0;
    if (context == NULL || context == Py_None) {
        context = PyContext_CopyCurrent();
        if (context == NULL) {
            Py_XDECREF(argtuple);
            return NULL;
        }
        /* a fresh copy only this handle references: see the comment at the top */
        PyObject_GC_UnTrack(context);
        own_context = 1;
    } else {
        Py_INCREF(context);
    }
    UvcHandle *h = st->handle_freelist;
    if (h != NULL && (tp == st->HandleType || tp == st->TimerHandleType)) {
        st->handle_freelist = (UvcHandle *)h->callback;
        st->handle_numfree--;
        PyObject_Init((PyObject *)h, tp);
    } else {
        h = PyObject_GC_New(UvcHandle, tp);
        if (h == NULL) {
            Py_XDECREF(argtuple);
            Py_DECREF(context);
            return NULL;
        }
    }
    h->callback = Py_NewRef(callback);
    h->nargs = nargs;
    h->argtuple = argtuple;
    if (argtuple != NULL) {
        h->argv = &PyTuple_GET_ITEM(argtuple, 0);
    } else {
        h->argv = h->inline_args;
        for (Py_ssize_t i = 0; i < nargs; i++) {
            h->inline_args[i] = Py_NewRef(args[i]);
        }
    }
    h->context = context;
    h->own_context = own_context;
    h->loop = Py_NewRef(loop);
    h->source_traceback = NULL;
    h->weakreflist = NULL;
    h->st = st;
    h->cancelled = 0;
    h->when = 0;
    h->seq = 0;
    h->scheduled = 0;
    return h;
}

UvcHandle *uvc_handle_new(uvc_state *st, PyTypeObject *tp, PyObject *loop, PyObject *callback,
                          PyObject *const *args, Py_ssize_t nargs, PyObject *context)
{
    UvcHandle *h = handle_make(st, tp, loop, callback, args, nargs, context);
    if (h != NULL) {
        PyObject_GC_Track(h);
    }
    return h;
}

UvcHandle *uvc_handle_new_queued(uvc_state *st, PyTypeObject *tp, PyObject *loop,
                                 PyObject *callback, PyObject *const *args, Py_ssize_t nargs,
                                 PyObject *context)
{
    return handle_make(st, tp, loop, callback, args, nargs, context);
}

void uvc_handle_release(UvcHandle *h)
{
    if (Py_REFCNT(h) > 1 && !PyObject_GC_IsTracked((PyObject *)h)) {
        PyObject_GC_Track(h);
    }
    Py_DECREF(h);
}

int uvc_handle_traverse_queued(UvcHandle *h, visitproc visit, void *arg)
{
    if (PyObject_GC_IsTracked((PyObject *)h)) {
        Py_VISIT(h);
        return 0;
    }
    if (Py_REFCNT(h) == 1) {
        return handle_traverse(h, visit, arg);
    }
    return 0; /* also held elsewhere: its references count as external while it is queued */
}

PyObject *uvc_handle_args_tuple(UvcHandle *h)
{
    if (h->argtuple != NULL) {
        return Py_NewRef(h->argtuple);
    }
    PyObject *t = PyTuple_New(h->nargs);
    for (Py_ssize_t i = 0; t != NULL && i < h->nargs; i++) {
        PyTuple_SET_ITEM(t, i, Py_NewRef(h->inline_args[i]));
    }
    return t;
}

/* Python-level constructor, for code that builds handles itself (tests do). */
static PyObject *handle_tp_new(PyTypeObject *tp, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"callback", "args", "loop", "context", NULL};
    PyObject *cb, *cbargs, *loop, *ctx = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOO|O:Handle", kwlist, &cb, &cbargs, &loop, &ctx)) {
        return NULL;
    }
    PyObject *seq = PySequence_Tuple(cbargs);
    if (seq == NULL) {
        return NULL;
    }
    uvc_state *st = uvc_state_from_type(tp);
    UvcHandle *h = st ? uvc_handle_new(st, tp, loop, cb, &PyTuple_GET_ITEM(seq, 0),
                                       PyTuple_GET_SIZE(seq), ctx)
                      : NULL;
    Py_DECREF(seq);
    return (PyObject *)h;
}

static PyObject *timer_handle_tp_new(PyTypeObject *tp, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"when", "callback", "args", "loop", "context", NULL};
    double when;
    PyObject *cb, *cbargs, *loop, *ctx = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "dOOO|O:TimerHandle", kwlist, &when, &cb, &cbargs,
                                     &loop, &ctx)) {
        return NULL;
    }
    PyObject *seq = PySequence_Tuple(cbargs);
    if (seq == NULL) {
        return NULL;
    }
    uvc_state *st = uvc_state_from_type(tp);
    UvcHandle *h = st ? uvc_handle_new(st, tp, loop, cb, &PyTuple_GET_ITEM(seq, 0),
                                       PyTuple_GET_SIZE(seq), ctx)
                      : NULL;
    Py_DECREF(seq);
    if (h != NULL) {
        h->when = when;
    }
    return (PyObject *)h;
}

/* asyncio's own text for the callback; from 3.13 asyncio shows the arguments in debug mode
 * only, so the loop's debug flag is passed on as Handle._repr_info does. */
static PyObject *format_callback(UvcHandle *h)
{
    PyObject *fh = PyImport_ImportModule("asyncio.format_helpers");
    if (fh == NULL) {
        return NULL;
    }
    PyObject *fn = PyObject_GetAttrString(fh, "_format_callback_source");
    Py_DECREF(fh);
    if (fn == NULL) {
        return NULL;
    }
    PyObject *args = uvc_handle_args_tuple(h);
    if (args == NULL) {
        Py_DECREF(fn);
        return NULL;
    }
    PyObject *s = NULL;
#if PY_VERSION_HEX >= 0x030D0000
    PyObject *debug = PyObject_CallMethod(h->loop, "get_debug", NULL);
    if (debug != NULL) {
        PyObject *stack[3] = {h->callback, args, debug};
        PyObject *kw = Py_BuildValue("(s)", "debug");
        s = kw ? PyObject_Vectorcall(fn, stack, 2, kw) : NULL;
        Py_XDECREF(kw);
        Py_DECREF(debug);
    }
#else
    s = PyObject_CallFunctionObjArgs(fn, h->callback, args, NULL);
#endif
    Py_DECREF(args);
    Py_DECREF(fn);
    return s;
}

/* " created at file:line" from the debug-mode source traceback, as asyncio's repr ends, or
 * "" without one. New reference. */
static PyObject *format_created_at(UvcHandle *h)
{
    PyObject *tb = h->source_traceback;
    if (tb == NULL || !PySequence_Check(tb) || PySequence_Size(tb) <= 0) {
        PyErr_Clear();
        return PyUnicode_FromString("");
    }
    PyObject *frame = PySequence_GetItem(tb, PySequence_Size(tb) - 1);
    if (frame == NULL) {
        return NULL;
    }
    PyObject *file = PySequence_GetItem(frame, 0);
    PyObject *line = file ? PySequence_GetItem(frame, 1) : NULL;
    Py_DECREF(frame);
    PyObject *r = line ? PyUnicode_FromFormat(" created at %S:%S", file, line) : NULL;
    Py_XDECREF(file);
    Py_XDECREF(line);
    return r;
}

static PyObject *handle_run_error_context(UvcHandle *h, PyObject *exc)
{
    PyObject *src = format_callback(h);
    if (src == NULL) {
        PyErr_Clear();
        src = PyObject_Repr(h->callback);
        if (src == NULL) {
            return NULL;
        }
    }
    PyObject *ctx = Py_BuildValue("{s:N,s:O,s:O}", "message",
                                  PyUnicode_FromFormat("Exception in callback %U", src),
                                  "exception", exc, "handle", (PyObject *)h);
    Py_DECREF(src);
    if (ctx != NULL && h->source_traceback != NULL &&
        PyDict_SetItemString(ctx, "source_traceback", h->source_traceback) < 0) {
        Py_CLEAR(ctx);
    }
    return ctx;
}

int uvc_handle_run(UvcHandle *h)
{
    if (h->cancelled) {
        return 0;
    }
    if (PyContext_Enter(h->context) < 0) {
        goto error;
    }
    PyObject *res = PyObject_Vectorcall(h->callback, h->argv, h->nargs, NULL);
    if (PyContext_Exit(h->context) < 0) {
        Py_XDECREF(res);
        goto error;
    }
    if (res != NULL) {
        Py_DECREF(res);
        return 0;
    }
error:;
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb != NULL && value != NULL) {
        PyException_SetTraceback(value, tb);
    }
    if (!PyErr_GivenExceptionMatches(type, PyExc_Exception)) {
        PyErr_Restore(type, value, tb);
        return -1;
    }
    PyObject *ctx = handle_run_error_context(h, value);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
    if (ctx == NULL) {
        PyErr_WriteUnraisable(h->callback);
        return 0;
    }
    uvc_loop_report(h->loop, ctx);
    Py_DECREF(ctx);
    return 0;
}

static PyObject *handle_cancel(UvcHandle *h, PyObject *unused)
{
    if (h->cancelled) {
        Py_RETURN_NONE;
    }
    h->cancelled = 1;
    uvc_state *st = h->st;
    int debug = 0;
    if (st != NULL && st->LoopType != NULL && h->loop != NULL &&
        PyObject_TypeCheck(h->loop, st->LoopType)) {
        UvcLoop *loop = (UvcLoop *)h->loop;
        debug = loop->debug;
        if (h->scheduled) {
            uvc_loop_timer_cancelled(loop, h);
        }
    }
    /* Drop the references early, as asyncio does, so a cancelled timer keeps nothing alive
     * while it waits in the heap; debug mode keeps them for the repr. */
    if (!debug) {
        Py_CLEAR(h->callback);
        handle_clear_args(h);
    }
    Py_RETURN_NONE;
}

static PyObject *handle_cancelled(UvcHandle *h, PyObject *unused) { return PyBool_FromLong(h->cancelled); }

static PyObject *handle_get_context(UvcHandle *h, PyObject *unused)
{
    handle_expose_context(h);
    return Py_NewRef(h->context);
}

static PyObject *handle_py_run(UvcHandle *h, PyObject *unused)
{
    if (h->callback == NULL) {
        Py_RETURN_NONE;
    }
    if (uvc_handle_run(h) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *handle_when(UvcHandle *h, PyObject *unused) { return PyFloat_FromDouble(h->when); }

static PyObject *handle_repr(UvcHandle *h)
{
    uvc_state *st = uvc_state_from_type(Py_TYPE(h));
    if (st == NULL) {
        return NULL;
    }
    PyObject *body = h->callback ? format_callback(h) : PyUnicode_FromString("");
    if (body == NULL) {
        return NULL;
    }
    PyObject *created = format_created_at(h);
    if (created == NULL) {
        Py_DECREF(body);
        return NULL;
    }
    const char *state = h->cancelled ? " cancelled" : "";
    const char *sep = PyUnicode_GET_LENGTH(body) ? " " : "";
    PyObject *r;
    if (PyObject_TypeCheck(h, st->TimerHandleType)) {
        PyObject *w = PyFloat_FromDouble(h->when);
        r = w ? PyUnicode_FromFormat("<%s%s when=%R%s%U%U>", _PyType_Name(Py_TYPE(h)), state, w, sep,
                                     body, created)
              : NULL;
        Py_XDECREF(w);
    } else {
        r = PyUnicode_FromFormat("<%s%s%s%U%U>", _PyType_Name(Py_TYPE(h)), state, sep, body, created);
    }
    Py_DECREF(body);
    Py_DECREF(created);
    return r;
}

static PyObject *timer_richcompare(UvcHandle *a, PyObject *other, int op)
{
    if (Py_TYPE(other) != Py_TYPE(a)) {
        Py_RETURN_NOTIMPLEMENTED;
    }
    UvcHandle *b = (UvcHandle *)other;
    if (op == Py_EQ || op == Py_NE) {
        int eq = a == b;
        if (!eq && a->when == b->when && a->cancelled == b->cancelled && a->callback && b->callback) {
            int r = PyObject_RichCompareBool(a->callback, b->callback, Py_EQ);
            if (r < 0) {
                return NULL;
            }
            if (r) {
                PyObject *aa = uvc_handle_args_tuple(a);
                PyObject *ba = aa ? uvc_handle_args_tuple(b) : NULL;
                r = ba ? PyObject_RichCompareBool(aa, ba, Py_EQ) : -1;
                Py_XDECREF(aa);
                Py_XDECREF(ba);
                if (r < 0) {
                    return NULL;
                }
            }
            eq = r;
        }
        return PyBool_FromLong(op == Py_EQ ? eq : !eq);
    }
    Py_RETURN_RICHCOMPARE(a->when, b->when, op);
}

static Py_hash_t timer_hash(UvcHandle *h)
{
    PyObject *w = PyFloat_FromDouble(h->when);
    if (w == NULL) {
        return -1;
    }
    Py_hash_t hv = PyObject_Hash(w);
    Py_DECREF(w);
    return hv;
}

static PyObject *handle_get_callback(UvcHandle *h, void *c) { return Py_NewRef(h->callback ? h->callback : Py_None); }
static PyObject *handle_get_args(UvcHandle *h, void *c) { return uvc_handle_args_tuple(h); }
static PyObject *handle_get_loop(UvcHandle *h, void *c) { return Py_NewRef(h->loop); }
static PyObject *handle_get_cancelled(UvcHandle *h, void *c) { return PyBool_FromLong(h->cancelled); }
static PyObject *handle_get_tb(UvcHandle *h, void *c)
{
    return Py_NewRef(h->source_traceback ? h->source_traceback : Py_None);
}
static int handle_set_tb(UvcHandle *h, PyObject *v, void *c)
{
    Py_XSETREF(h->source_traceback, (v == NULL || v == Py_None) ? NULL : Py_NewRef(v));
    return 0;
}
static PyObject *handle_get_scheduled(UvcHandle *h, void *c) { return PyBool_FromLong(h->scheduled); }
static PyObject *handle_get_when(UvcHandle *h, void *c) { return PyFloat_FromDouble(h->when); }

static PyGetSetDef handle_getset[] = {
    {"_callback", (getter)handle_get_callback, NULL, NULL, NULL},
    {"_args", (getter)handle_get_args, NULL, NULL, NULL},
    {"_loop", (getter)handle_get_loop, NULL, NULL, NULL},
    {"_cancelled", (getter)handle_get_cancelled, NULL, NULL, NULL},
    {"_source_traceback", (getter)handle_get_tb, (setter)handle_set_tb, NULL, NULL},
    {NULL},
};

static PyGetSetDef timer_getset[] = {
    {"_scheduled", (getter)handle_get_scheduled, NULL, NULL, NULL},
    {"_when", (getter)handle_get_when, NULL, NULL, NULL},
    {NULL},
};

static PyMethodDef handle_methods[] = {
    {"cancel", (PyCFunction)handle_cancel, METH_NOARGS, "Cancel the callback; no-op if it already ran."},
    {"cancelled", (PyCFunction)handle_cancelled, METH_NOARGS, "True if cancel() was called."},
    {"get_context", (PyCFunction)handle_get_context, METH_NOARGS, "The contextvars.Context the callback runs in."},
    {"_run", (PyCFunction)handle_py_run, METH_NOARGS, NULL},
    {NULL},
};

static PyMethodDef timer_methods[] = {
    {"when", (PyCFunction)handle_when, METH_NOARGS, "The absolute loop time the callback is scheduled for."},
    {NULL},
};

static PyMemberDef handle_members[] = {
    {"__weaklistoffset__", T_PYSSIZET, offsetof(UvcHandle, weakreflist), READONLY},
    {NULL},
};

static PyType_Slot handle_slots[] = {
    {Py_tp_new, handle_tp_new},
    {Py_tp_dealloc, handle_dealloc},
    {Py_tp_traverse, handle_traverse},
    {Py_tp_clear, handle_clear},
    {Py_tp_methods, handle_methods},
    {Py_tp_getset, handle_getset},
    {Py_tp_members, handle_members},
    {Py_tp_repr, handle_repr},
    {Py_tp_doc, "A callback scheduled by call_soon(); cancel() it to stop it from running."},
    {0, NULL},
};

PyType_Spec uvc_handle_spec = {
    .name = "uvcore.Handle",
    .basicsize = sizeof(UvcHandle),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_BASETYPE,
    .slots = handle_slots,
};

static PyType_Slot timer_slots[] = {
    {Py_tp_new, timer_handle_tp_new},
    {Py_tp_dealloc, handle_dealloc},
    {Py_tp_traverse, handle_traverse},
    {Py_tp_clear, handle_clear},
    {Py_tp_methods, timer_methods},
    {Py_tp_getset, timer_getset},
    {Py_tp_richcompare, timer_richcompare},
    {Py_tp_hash, timer_hash},
    {Py_tp_doc, "A callback scheduled by call_later()/call_at()."},
    {0, NULL},
};

PyType_Spec uvc_timer_handle_spec = {
    .name = "uvcore.TimerHandle",
    .basicsize = sizeof(UvcHandle),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_BASETYPE,
    .slots = timer_slots,
};

int uvc_handle_module_init(PyObject *m, uvc_state *st)
{
    if (uvc_add_type(m, &uvc_handle_spec, NULL, &st->HandleType) < 0) {
        return -1;
    }
    return uvc_add_type(m, &uvc_timer_handle_spec, (PyObject *)st->HandleType, &st->TimerHandleType);
}
