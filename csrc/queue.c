/* queue.c: uvcore.Queue, LifoQueue and PriorityQueue, asyncio.Queue's semantics in C.
 * Items live in the same containers asyncio uses (a collections.deque, a list, a heapq list)
 * exposed as `_queue`; waiters are loop Futures in deques (`_getters`, `_putters`), so code
 * that peeks at those keeps working. put()/get()/join() return a QueueAwaitable that finishes
 * on its first send when it need not wait: no Future, no loop round trip. */
#include "uvcore.h"
#include <math.h>
#include <structmember.h>
#include <pythread.h>

#if PY_VERSION_HEX < 0x030A0000
/* am_send and its result type are 3.10+; on 3.9 the same values drive tp_iternext. */
typedef enum { PYGEN_RETURN = 0, PYGEN_ERROR = -1, PYGEN_NEXT = 1 } PySendResult;
#endif

/* Entries of st->queue_cache, a tuple built once at module init: the container callables
 * used on hot paths and the interned attribute names of the slow paths. */
enum {
    QC_DEQUE,
    QC_DEQUE_APPEND,
    QC_DEQUE_POPLEFT,
    QC_DEQUE_REMOVE,
    QC_HEAPPUSH,
    QC_HEAPPOP,
    QC_S_CREATE_FUTURE,
    QC_S_BLOCKING,
    QC_S_DONE,
    QC_S_CANCELLED,
    QC_S_CANCEL,
    QC_S_SET_RESULT,
    QC_S_RESULT,
    QC_S_INIT,
    QC_S_PUT,
    QC_S_GET,
    QC_S_FORMAT,
    QC_S_APPEND,
    QC_S_POPLEFT,
    QC_S_POP,
    QC_EXTRA, /* capsule owning the uvc_queue_extra below */
    QC_COUNT
};
#define QC(st, i) PyTuple_GET_ITEM((st)->queue_cache, (i))

enum { UVC_QUEUE_FIFO, UVC_QUEUE_LIFO, UVC_QUEUE_PRIO };

/* queue.c's private per-module data, owned by a capsule in queue_cache; every queue holds a
 * reference to that capsule, so the data outlives the queues and their awaitables whatever
 * the order of teardown. The freelist recycles QueueAwaitables: on the fast path they live
 * for one await, and malloc/free plus GC linking were a fifth of its cost. Recycled objects
 * keep their reference to the type, so the type outlives them. */
#define UVC_QUEUE_FREELIST_MAX 256
typedef struct UvcQueueOp UvcQueueOp;
typedef struct {
    PyTypeObject *deque_type;  /* collections.deque (a static type: never freed) */
    PyCFunction deque_append;  /* deque.append's C function (METH_O), or NULL */
    PyCFunction deque_popleft; /* deque.popleft's (METH_NOARGS), or NULL */
    int nfree;
    UvcQueueOp *freelist[UVC_QUEUE_FREELIST_MAX];
} uvc_queue_extra;

typedef struct {
    PyObject_HEAD
    uvc_state *st;
    PyObject *module;     /* strong: keeps st alive */
    PyObject *x_owner;    /* strong: the capsule owning x */
    uvc_queue_extra *x;
    PyObject *queue;      /* `_queue`: deque (FIFO) or list (LIFO, heap); may be replaced by _init */
    PyObject *getters;    /* deque of Futures of suspended get()s, oldest first */
    PyObject *putters;    /* deque of Futures of suspended put()s */
    PyObject *joiners;    /* deque of Futures of suspended join()s */
    PyObject *maxsize;    /* as given, for `maxsize` and repr */
    PyObject *loop;       /* bound at the first wait, like asyncio's _LoopBoundMixin */
    PyObject *dict;
    PyObject *weakreflist;
    Py_ssize_t capacity;  /* maxsize as a size: full() when qsize >= capacity; 0 = unbounded */
    Py_ssize_t unfinished;
    unsigned long wait_thread; /* thread whose loop made the newest waiter future */
    char is_shutdown;
    unsigned char kind;   /* UVC_QUEUE_*, from the uvcore base class */
    unsigned char custom; /* a Python subclass overrides _init/_put/_get: call them */
} UvcQueue;

enum { OP_GET, OP_PUT, OP_JOIN, OP_ANEXT };
enum { OP_INIT, OP_WAITING, OP_DONE };

/* The awaitable returned by put()/get()/join()/__anext__(). It behaves like the coroutine
 * asyncio would return (send/throw/close, usable by create_task), but runs the operation in
 * its first send and only yields a Future when the operation has to wait. */
struct UvcQueueOp {
    PyObject_HEAD
    UvcQueue *queue;
    PyObject *item;       /* put()'s item until it is stored */
    PyObject *waiter;     /* the Future we yielded while OP_WAITING */
    unsigned char kind;
    unsigned char state;
    unsigned char running;
    unsigned char finalized; /* tp_finalize ran: the GC will not run it again, do not recycle */
};

/* ------------------------------------------------------------------------------------ */
/* Containers                                                                            */

static inline int uvc_queue_check_init(UvcQueue *q)
{
    if (q->queue == NULL) {
        PyErr_Format(PyExc_AttributeError, "'%s' object has no attribute '_queue'",
                     _PyType_Name(Py_TYPE(q)));
        return -1;
    }
    return 0;
}

/* Number of items, or -1 with an exception (a custom `_queue` may fail len()). */
static Py_ssize_t uvc_queue_size(UvcQueue *q)
{
    PyObject *c = q->queue;
    if (c != NULL) {
        /* The deque keeps its length in ob_size, as len() reads it. */
        if (Py_IS_TYPE(c, q->x->deque_type)) {
            return Py_SIZE(c);
        }
        if (PyList_CheckExact(c)) {
            return PyList_GET_SIZE(c);
        }
        return PyObject_Size(c);
    }
    uvc_queue_check_init(q);
    return -1;
}

static inline int uvc_queue_is_full(UvcQueue *q)
{
    if (q->capacity <= 0) {
        return 0;
    }
    Py_ssize_t n = uvc_queue_size(q);
    if (n < 0) {
        return -1;
    }
    return n >= q->capacity;
}

/* What asyncio's Queue._put does for this kind; used by _put() and the fast path. */
static int uvc_queue_builtin_put(UvcQueue *q, PyObject *item)
{
    uvc_state *st = q->st;
    PyObject *c = q->queue, *r;
    if (uvc_queue_check_init(q) < 0) {
        return -1;
    }
    Py_INCREF(c); /* item's __lt__ (heappush) may run code that replaces _queue */
    PyObject *args[2] = {c, item};
    switch (q->kind) {
    case UVC_QUEUE_FIFO:
        if (Py_IS_TYPE(c, q->x->deque_type)) {
            uvc_queue_extra *x = q->x;
            r = x->deque_append ? x->deque_append(c, item)
                                     : PyObject_Vectorcall(QC(st, QC_DEQUE_APPEND), args, 2, NULL);
        } else {
            r = PyObject_VectorcallMethod(QC(st, QC_S_APPEND), args,
                                          2 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
        }
        break;
    case UVC_QUEUE_LIFO:
        if (PyList_CheckExact(c)) {
            int rc = PyList_Append(c, item);
            Py_DECREF(c);
            return rc;
        }
        r = PyObject_VectorcallMethod(QC(st, QC_S_APPEND), args, 2 | PY_VECTORCALL_ARGUMENTS_OFFSET,
                                      NULL);
        break;
    default:
        r = PyObject_Vectorcall(QC(st, QC_HEAPPUSH), args, 2, NULL);
        break;
    }
    Py_DECREF(c);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    return 0;
}

/* What asyncio's Queue._get does for this kind. New reference. */
static PyObject *uvc_queue_builtin_get(UvcQueue *q)
{
    uvc_state *st = q->st;
    PyObject *c = q->queue, *r;
    if (uvc_queue_check_init(q) < 0) {
        return NULL;
    }
    Py_INCREF(c);
    switch (q->kind) {
    case UVC_QUEUE_FIFO:
        if (Py_IS_TYPE(c, q->x->deque_type)) {
            uvc_queue_extra *x = q->x;
            r = x->deque_popleft ? x->deque_popleft(c, NULL)
                                      : PyObject_Vectorcall(QC(st, QC_DEQUE_POPLEFT), &c, 1, NULL);
        } else {
            r = PyObject_VectorcallMethod(QC(st, QC_S_POPLEFT), &c, 1 | PY_VECTORCALL_ARGUMENTS_OFFSET,
                                          NULL);
        }
        break;
    case UVC_QUEUE_LIFO:
        if (PyList_CheckExact(c) && PyList_GET_SIZE(c) > 0) {
            Py_ssize_t n = PyList_GET_SIZE(c);
            r = Py_NewRef(PyList_GET_ITEM(c, n - 1));
            if (PyList_SetSlice(c, n - 1, n, NULL) < 0) {
                Py_CLEAR(r);
            }
        } else {
            r = PyObject_VectorcallMethod(QC(st, QC_S_POP), &c, 1 | PY_VECTORCALL_ARGUMENTS_OFFSET,
                                          NULL);
        }
        break;
    default:
        r = PyObject_Vectorcall(QC(st, QC_HEAPPOP), &c, 1, NULL);
        break;
    }
    Py_DECREF(c);
    return r;
}

static int uvc_queue_store(UvcQueue *q, PyObject *item)
{
    if (!q->custom) {
        return uvc_queue_builtin_put(q, item);
    }
    PyObject *args[2] = {(PyObject *)q, item};
    PyObject *r = PyObject_VectorcallMethod(QC(q->st, QC_S_PUT), args,
                                            2 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    return 0;
}

static PyObject *uvc_queue_take(UvcQueue *q)
{
    if (!q->custom) {
        return uvc_queue_builtin_get(q);
    }
    PyObject *self = (PyObject *)q;
    return PyObject_VectorcallMethod(QC(q->st, QC_S_GET), &self,
                                     1 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
}

static PyObject *uvc_queue_new_container(UvcQueue *q)
{
    if (q->kind == UVC_QUEUE_FIFO) {
        return PyObject_CallNoArgs(QC(q->st, QC_DEQUE));
    }
    return PyList_New(0);
}

/* ------------------------------------------------------------------------------------ */
/* Waiters                                                                               */

/* Waiter deques are never NULL except after tp_clear broke a reference cycle. */
static inline Py_ssize_t uvc_waiters_len(PyObject *waiters)
{
    return waiters != NULL ? Py_SIZE(waiters) : 0;
}

static inline PyObject *uvc_queue_call_method0(uvc_state *st, PyObject *obj, int name)
{
    return PyObject_VectorcallMethod(QC(st, name), &obj, 1 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
}

/* 1 if fut.<name>() is true, 0 if false, -1 on error. */
static int uvc_queue_fut_test(uvc_state *st, PyObject *fut, int name)
{
    PyObject *r = uvc_queue_call_method0(st, fut, name);
    if (r == NULL) {
        return -1;
    }
    int t = PyObject_IsTrue(r);
    Py_DECREF(r);
    return t;
}

static int uvc_queue_fut_set_result(uvc_state *st, PyObject *fut, PyObject *value)
{
    PyObject *args[2] = {fut, value};
    PyObject *r = PyObject_VectorcallMethod(QC(st, QC_S_SET_RESULT), args,
                                            2 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    return 0;
}

/* Wake the oldest waiter of `waiters` that is still pending (asyncio's _wakeup_next). */
static int uvc_queue_wakeup_next(UvcQueue *q, PyObject *waiters)
{
    uvc_state *st = q->st;
    int rc = 0;
    if (waiters == NULL) {
        return 0;
    }
    Py_INCREF(waiters);
    while (Py_SIZE(waiters) > 0) {
        PyObject *w = PyObject_Vectorcall(QC(st, QC_DEQUE_POPLEFT), &waiters, 1, NULL);
        if (w == NULL) {
            rc = -1;
            break;
        }
        int done = uvc_queue_fut_test(st, w, QC_S_DONE);
        if (done == 0) {
            rc = uvc_queue_fut_set_result(st, w, Py_None);
        }
        Py_DECREF(w);
        if (done != 1) {
            rc = done < 0 ? -1 : rc;
            break;
        }
    }
    Py_DECREF(waiters);
    return rc;
}

/* Resolve every pending waiter of `waiters` with value and empty it. */
static int uvc_queue_wakeup_all(UvcQueue *q, PyObject *waiters, PyObject *value)
{
    uvc_state *st = q->st;
    int rc = 0;
    if (waiters == NULL) {
        return 0;
    }
    Py_INCREF(waiters);
    while (Py_SIZE(waiters) > 0) {
        PyObject *w = PyObject_Vectorcall(QC(st, QC_DEQUE_POPLEFT), &waiters, 1, NULL);
        if (w == NULL) {
            rc = -1;
            break;
        }
        int done = uvc_queue_fut_test(st, w, QC_S_DONE);
        if (done == 0) {
            done = uvc_queue_fut_set_result(st, w, value);
        }
        Py_DECREF(w);
        if (done < 0) {
            rc = -1;
            break;
        }
    }
    Py_DECREF(waiters);
    return rc;
}

/* The running loop, binding the queue to it on first use. New reference. */
static PyObject *uvc_queue_get_loop(UvcQueue *q)
{
    PyObject *running = PyObject_CallNoArgs(q->st->get_running_loop);
    if (running == NULL) {
        return NULL;
    }
    if (q->loop == NULL && running != Py_None) {
        q->loop = Py_NewRef(running);
    }
    if (running == q->loop) {
        return running;
    }
    if (running == Py_None && q->loop == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "no running event loop");
    } else {
        PyErr_Format(PyExc_RuntimeError, "%R is bound to a different event loop", (PyObject *)q);
    }
    Py_DECREF(running);
    return NULL;
}

/* A new Future of the bound loop, appended to waiters and marked ready to be yielded to a
 * Task (what Future.__await__ does). New reference. */
static PyObject *uvc_queue_new_waiter(UvcQueue *q, PyObject *waiters)
{
    uvc_state *st = q->st;
    if (waiters == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "the queue has been cleared");
        return NULL;
    }
    PyObject *loop = uvc_queue_get_loop(q);
    if (loop == NULL) {
        return NULL;
    }
    PyObject *fut = uvc_queue_call_method0(st, loop, QC_S_CREATE_FUTURE);
    Py_DECREF(loop);
    if (fut == NULL) {
        return NULL;
    }
    q->wait_thread = PyThread_get_thread_ident();
    PyObject *args[2] = {waiters, fut};
    PyObject *r = PyObject_Vectorcall(QC(st, QC_DEQUE_APPEND), args, 2, NULL);
    if (r == NULL) {
        goto error;
    }
    Py_DECREF(r);
    if (PyObject_SetAttr(fut, QC(st, QC_S_BLOCKING), Py_True) < 0) {
        goto error;
    }
    return fut;
error:
    Py_DECREF(fut);
    return NULL;
}

/* ------------------------------------------------------------------------------------ */
/* Non-waiting operations                                                                */

/* Waking a waiter from another thread would set its Future there: the loop's call_soon
 * refuses, the Future is left done with its task never resumed, and the item is already
 * moved. So refuse before changing anything, while some task waits on this queue. */
static int uvc_queue_check_thread(UvcQueue *q)
{
    if (q->wait_thread != 0 && q->wait_thread != PyThread_get_thread_ident() &&
        (uvc_waiters_len(q->getters) > 0 || uvc_waiters_len(q->putters) > 0 ||
         uvc_waiters_len(q->joiners) > 0)) {
        PyErr_SetString(PyExc_RuntimeError,
                        "Queue used from a thread other than the one whose event loop waits on "
                        "it; use loop.call_soon_threadsafe()");
        return -1;
    }
    return 0;
}

/* put_nowait(): 0, or -1 with QueueShutDown/QueueFull/an error of _put. */
static int uvc_queue_put_nowait_impl(UvcQueue *q, PyObject *item)
{
    if (uvc_queue_check_thread(q) < 0) {
        return -1;
    }
    if (q->is_shutdown) {
        PyErr_SetNone(q->st->QueueShutDown);
        return -1;
    }
    int full = uvc_queue_is_full(q);
    if (full != 0) {
        if (full > 0) {
            PyErr_SetNone(q->st->QueueFull);
        }
        return -1;
    }
    if (uvc_queue_store(q, item) < 0) {
        return -1;
    }
    q->unfinished++;
    if (uvc_waiters_len(q->getters) > 0) {
        return uvc_queue_wakeup_next(q, q->getters);
    }
    return 0;
}

/* Take an item when there is one (the queue is known not to be empty). New reference. */
static PyObject *uvc_queue_take_and_wake(UvcQueue *q)
{
    if (uvc_queue_check_thread(q) < 0) {
        return NULL;
    }
    PyObject *item = uvc_queue_take(q);
    if (item == NULL) {
        return NULL;
    }
    if (uvc_waiters_len(q->putters) > 0 && uvc_queue_wakeup_next(q, q->putters) < 0) {
        Py_DECREF(item);
        return NULL;
    }
    return item;
}

static PyObject *uvc_queue_get_nowait_impl(UvcQueue *q)
{
    Py_ssize_t n = uvc_queue_size(q);
    if (n < 0) {
        return NULL;
    }
    if (n == 0) {
        PyErr_SetNone(q->is_shutdown ? q->st->QueueShutDown : q->st->QueueEmpty);
        return NULL;
    }
    return uvc_queue_take_and_wake(q);
}

static int uvc_queue_finish_tasks(UvcQueue *q)
{
    if (uvc_waiters_len(q->joiners) > 0) {
        return uvc_queue_wakeup_all(q, q->joiners, Py_True);
    }
    return 0;
}

/* ------------------------------------------------------------------------------------ */
/* QueueAwaitable                                                                        */

static PyObject *uvc_queue_op_new(UvcQueue *q, int kind, PyObject *item)
{
    uvc_queue_extra *x = q->x;
    UvcQueueOp *op;
    if (x->nfree > 0) {
        op = x->freelist[--x->nfree];
        _Py_NewReference((PyObject *)op); /* as CPython's freelists do; type ref kept */
    } else {
        op = PyObject_GC_New(UvcQueueOp, q->st->QueueAwaitableType);
        if (op == NULL) {
            return NULL;
        }
        op->finalized = 0;
    }
    op->queue = (UvcQueue *)Py_NewRef(q);
    op->item = Py_XNewRef(item);
    op->waiter = NULL;
    op->kind = (unsigned char)kind;
    op->state = OP_INIT;
    op->running = 0;
    PyObject_GC_Track(op);
    return (PyObject *)op;
}

static PyObject *uvc_queue_op_waiters(UvcQueueOp *op)
{
    switch (op->kind) {
    case OP_PUT:
        return op->queue->putters;
    case OP_JOIN:
        return op->queue->joiners;
    default:
        return op->queue->getters;
    }
}

/* The waiting operation was interrupted (an exception thrown in, close(), or its Future
 * failed): do what asyncio's `except:` clause does. Our Future is cancelled and dropped
 * from its deque; a getter (putter) that had already been woken passes the wakeup on to
 * the next one, so no item (slot) is left with nobody to take it. Keeps the exception set. */
static void uvc_queue_op_abandon(UvcQueueOp *op)
{
    UvcQueue *q = op->queue;
    uvc_state *st = q->st;
    PyObject *fut = op->waiter;
    PyObject *et, *ev, *etb;
    op->waiter = NULL;
    op->state = OP_DONE;
    Py_CLEAR(op->item);
    if (fut == NULL) {
        return;
    }
    PyErr_Fetch(&et, &ev, &etb);
    PyObject *r = uvc_queue_call_method0(st, fut, QC_S_CANCEL);
    if (r == NULL) {
        /* Typically the loop is closed (a task collected after it): the Future is dropped
         * from the queue below all the same, so it cannot swallow a wakeup. */
        PyErr_Clear();
    }
    Py_XDECREF(r);
    PyObject *args[2] = {uvc_queue_op_waiters(op), fut};
    r = args[0] ? PyObject_Vectorcall(QC(st, QC_DEQUE_REMOVE), args, 2, NULL) : Py_NewRef(Py_None);
    if (r == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_ValueError)) {
            goto error;
        }
        PyErr_Clear(); /* already taken off by a wakeup or shutdown() */
    } else {
        Py_DECREF(r);
    }
    if (op->kind != OP_JOIN) {
        int ready;
        if (op->kind == OP_PUT) {
            int full = uvc_queue_is_full(q);
            ready = full < 0 ? -1 : !full;
        } else {
            Py_ssize_t n = uvc_queue_size(q);
            ready = n < 0 ? -1 : n > 0;
        }
        if (ready < 0) {
            goto error;
        }
        if (ready) {
            int cancelled = uvc_queue_fut_test(st, fut, QC_S_CANCELLED);
            if (cancelled < 0) {
                goto error;
            }
            if (!cancelled &&
                uvc_queue_wakeup_next(q, op->kind == OP_PUT ? q->putters : q->getters) < 0) {
                goto error;
            }
        }
    }
    Py_DECREF(fut);
    PyErr_Restore(et, ev, etb);
    return;
error:
    /* The interrupting exception wins; the cleanup failure is reported, not lost. */
    PyErr_WriteUnraisable(fut);
    Py_DECREF(fut);
    PyErr_Restore(et, ev, etb);
}

/* Suspend on a new Future of `waiters`: PYGEN_NEXT with the Future as *result. */
static PySendResult uvc_queue_op_suspend(UvcQueueOp *op, PyObject *waiters, PyObject **result)
{
    PyObject *fut = uvc_queue_new_waiter(op->queue, waiters);
    if (fut == NULL) {
        op->state = OP_DONE;
        return PYGEN_ERROR;
    }
    op->waiter = Py_NewRef(fut);
    op->state = OP_WAITING;
    *result = fut;
    return PYGEN_NEXT;
}

/* One step of the operation, the body of send(None). */
static PySendResult uvc_queue_op_step(UvcQueueOp *op, PyObject **result)
{
    UvcQueue *q = op->queue;
    uvc_state *st = q->st;

    if (op->state == OP_WAITING) {
        /* Resumed by the Task: as after `await fut`, the Future must be done and its
         * outcome (normally None; CancelledError if it was cancelled) is ours. */
        PyObject *fut = op->waiter;
        int done = uvc_queue_fut_test(st, fut, QC_S_DONE);
        if (done == 0) {
            PyErr_SetString(PyExc_RuntimeError, "await wasn't used with future");
        }
        PyObject *r = done == 1 ? uvc_queue_call_method0(st, fut, QC_S_RESULT) : NULL;
        if (r == NULL) {
            uvc_queue_op_abandon(op);
            return PYGEN_ERROR;
        }
        Py_DECREF(r);
        Py_CLEAR(op->waiter);
        if (op->kind == OP_JOIN) {
            op->state = OP_DONE;
            *result = Py_NewRef(Py_None);
            return PYGEN_RETURN;
        }
        op->state = OP_INIT;
    } else if (op->state == OP_DONE) {
        PyErr_SetString(PyExc_RuntimeError, "cannot reuse already awaited queue operation");
        return PYGEN_ERROR;
    }

    switch (op->kind) {
    case OP_GET:
    case OP_ANEXT: {
        Py_ssize_t n = uvc_queue_size(q);
        if (n > 0) {
            PyObject *item = uvc_queue_take_and_wake(q);
            op->state = OP_DONE;
            if (item == NULL) {
                return PYGEN_ERROR;
            }
            *result = item;
            return PYGEN_RETURN;
        }
        if (n < 0) {
            op->state = OP_DONE;
            return PYGEN_ERROR;
        }
        if (q->is_shutdown) {
            op->state = OP_DONE;
            PyErr_SetNone(op->kind == OP_ANEXT ? PyExc_StopAsyncIteration : st->QueueShutDown);
            return PYGEN_ERROR;
        }
        return uvc_queue_op_suspend(op, q->getters, result);
    }
    case OP_PUT: {
        int full = uvc_queue_is_full(q);
        if (full == 0) {
            int rc = uvc_queue_put_nowait_impl(q, op->item);
            op->state = OP_DONE;
            Py_CLEAR(op->item);
            if (rc < 0) {
                return PYGEN_ERROR;
            }
            *result = Py_NewRef(Py_None);
            return PYGEN_RETURN;
        }
        if (full < 0 || q->is_shutdown) {
            op->state = OP_DONE;
            Py_CLEAR(op->item);
            if (full > 0) {
                PyErr_SetNone(st->QueueShutDown);
            }
            return PYGEN_ERROR;
        }
        return uvc_queue_op_suspend(op, q->putters, result);
    }
    default: /* OP_JOIN, first step */
        if (q->unfinished > 0) {
            return uvc_queue_op_suspend(op, q->joiners, result);
        }
        op->state = OP_DONE;
        *result = Py_NewRef(Py_None);
        return PYGEN_RETURN;
    }
}

/* The common case of a first send, with nothing that could run Python code: a plain
 * Queue (deque storage, no hooks) that is not shut down and can put/get at once.
 * Returns PYGEN_NEXT to mean "not handled here" (this path never suspends). */
static inline PySendResult uvc_queue_op_fast(UvcQueueOp *op, PyObject **result)
{
    UvcQueue *q = op->queue;
    uvc_queue_extra *x = q->x;
    PyObject *c = q->queue;
    if (q->kind != UVC_QUEUE_FIFO || q->custom || c == NULL || !Py_IS_TYPE(c, x->deque_type)) {
        return PYGEN_NEXT;
    }
    if (op->kind == OP_PUT) {
        if (q->is_shutdown || (q->capacity > 0 && Py_SIZE(c) >= q->capacity) ||
            x->deque_append == NULL) {
            return PYGEN_NEXT;
        }
        PyObject *r = x->deque_append(c, op->item);
        op->state = OP_DONE;
        Py_CLEAR(op->item);
        if (r == NULL) {
            return PYGEN_ERROR;
        }
        Py_DECREF(r);
        q->unfinished++;
        if (uvc_waiters_len(q->getters) > 0 && uvc_queue_wakeup_next(q, q->getters) < 0) {
            return PYGEN_ERROR;
        }
        *result = Py_NewRef(Py_None);
        return PYGEN_RETURN;
    }
    if ((op->kind == OP_GET || op->kind == OP_ANEXT) && Py_SIZE(c) > 0 && x->deque_popleft) {
        PyObject *item = x->deque_popleft(c, NULL);
        op->state = OP_DONE;
        if (item == NULL) {
            return PYGEN_ERROR;
        }
        if (uvc_waiters_len(q->putters) > 0 && uvc_queue_wakeup_next(q, q->putters) < 0) {
            Py_DECREF(item);
            return PYGEN_ERROR;
        }
        *result = item;
        return PYGEN_RETURN;
    }
    return PYGEN_NEXT;
}

static PySendResult uvc_queue_op_send_impl(UvcQueueOp *op, PyObject **result)
{
    if (op->state == OP_INIT && op->queue != NULL && !op->running) {
        PySendResult r = uvc_queue_op_fast(op, result);
        if (r != PYGEN_NEXT) {
            return r;
        }
    }
    if (op->queue == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "queue operation has been cleared");
        return PYGEN_ERROR;
    }
    if (op->running) {
        PyErr_SetString(PyExc_ValueError, "queue operation already executing");
        return PYGEN_ERROR;
    }
    op->running = 1;
    PySendResult r = uvc_queue_op_step(op, result);
    op->running = 0;
    if (r == PYGEN_ERROR && PyErr_ExceptionMatches(PyExc_StopIteration)) {
        /* A StopIteration out of a hook (_get, __lt__...) must not pass for our return
         * value: as PEP 479 does for coroutines, it becomes a RuntimeError. */
        PyObject *et, *ev, *etb;
        PyErr_Fetch(&et, &ev, &etb);
        PyErr_NormalizeException(&et, &ev, &etb);
        if (etb != NULL) {
            PyException_SetTraceback(ev, etb);
        }
        PyErr_SetString(PyExc_RuntimeError, "queue operation raised StopIteration");
        PyObject *t2, *v2, *tb2;
        PyErr_Fetch(&t2, &v2, &tb2);
        PyErr_NormalizeException(&t2, &v2, &tb2);
        PyException_SetCause(v2, Py_NewRef(ev));
        PyException_SetContext(v2, ev); /* steals ev */
        Py_XDECREF(et);
        Py_XDECREF(etb);
        PyErr_Restore(t2, v2, tb2);
    }
    return r;
}

#if PY_VERSION_HEX >= 0x030A0000
static PySendResult uvc_queue_op_am_send(PyObject *self, PyObject *arg, PyObject **result)
{
    return uvc_queue_op_send_impl((UvcQueueOp *)self, result);
}
#endif

/* Raise StopIteration(value) the way a returning generator does (safe for tuples). */
static void uvc_queue_set_stop_iteration(PyObject *value)
{
    if (value == Py_None) {
        PyErr_SetNone(PyExc_StopIteration);
        return;
    }
    PyObject *exc = PyObject_CallOneArg(PyExc_StopIteration, value);
    if (exc != NULL) {
        PyErr_SetObject(PyExc_StopIteration, exc);
        Py_DECREF(exc);
    }
}

static PyObject *uvc_queue_op_iternext(PyObject *self)
{
    PyObject *result = NULL;
    PySendResult r = uvc_queue_op_send_impl((UvcQueueOp *)self, &result);
    if (r == PYGEN_NEXT) {
        return result;
    }
    if (r == PYGEN_RETURN) {
        uvc_queue_set_stop_iteration(result);
        Py_DECREF(result);
    }
    return NULL;
}

static PyObject *uvc_queue_op_send(PyObject *self, PyObject *arg)
{
    return uvc_queue_op_iternext(self);
}

/* throw(exc) / throw(type[, value[, tb]]): interrupt the operation with an exception. */
static PyObject *uvc_queue_op_throw(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    UvcQueueOp *op = (UvcQueueOp *)self;
    if (nargs < 1 || nargs > 3) {
        PyErr_SetString(PyExc_TypeError, "throw expected 1 to 3 arguments");
        return NULL;
    }
    PyObject *typ = args[0];
    PyObject *val = nargs > 1 ? args[1] : Py_None;
    PyObject *tb = nargs > 2 ? args[2] : Py_None;
    if (tb != Py_None && !PyTraceBack_Check(tb)) {
        PyErr_SetString(PyExc_TypeError, "throw() third argument must be a traceback object");
        return NULL;
    }
    if (PyExceptionInstance_Check(typ)) {
        if (val != Py_None) {
            PyErr_SetString(PyExc_TypeError, "instance exception may not have a separate value");
            return NULL;
        }
        PyErr_SetObject((PyObject *)Py_TYPE(typ), typ);
    } else if (PyExceptionClass_Check(typ)) {
        PyObject *t = Py_NewRef(typ), *v = Py_NewRef(val), *b = NULL;
        PyErr_NormalizeException(&t, &v, &b);
        Py_XDECREF(b);
        PyErr_Restore(t, v, NULL);
    } else {
        PyErr_Format(PyExc_TypeError,
                     "exceptions must be classes or instances deriving from BaseException, "
                     "not %s",
                     Py_TYPE(typ)->tp_name);
        return NULL;
    }
    if (tb != Py_None) {
        PyObject *t, *v, *b;
        PyErr_Fetch(&t, &v, &b);
        Py_XDECREF(b);
        PyErr_Restore(t, v, Py_NewRef(tb));
    }
    if (op->state == OP_WAITING && !op->running && op->queue != NULL) {
        uvc_queue_op_abandon(op);
    } else if (!op->running) {
        op->state = OP_DONE;
        Py_CLEAR(op->item);
    }
    return NULL;
}

static PyObject *uvc_queue_op_close(PyObject *self, PyObject *unused)
{
    UvcQueueOp *op = (UvcQueueOp *)self;
    if (op->running) {
        PyErr_SetString(PyExc_ValueError, "queue operation already executing");
        return NULL;
    }
    if (op->state == OP_WAITING && op->queue != NULL) {
        PyErr_SetNone(PyExc_GeneratorExit);
        uvc_queue_op_abandon(op);
        PyErr_Clear();
    }
    op->state = OP_DONE;
    Py_CLEAR(op->item);
    Py_RETURN_NONE;
}

/* An operation collected while waiting gives up its place, as a collected coroutine's
 * close() would (PEP 442 finaliser, so the queue and Future are still intact). */
static void uvc_queue_op_finalize(PyObject *self)
{
    UvcQueueOp *op = (UvcQueueOp *)self;
    op->finalized = 1;
    if (op->state != OP_WAITING) {
        return;
    }
    PyObject *et, *ev, *etb;
    PyErr_Fetch(&et, &ev, &etb);
    PyObject *r = uvc_queue_op_close(self, NULL);
    if (r == NULL) {
        PyErr_WriteUnraisable(self);
    }
    Py_XDECREF(r);
    PyErr_Restore(et, ev, etb);
}

static int uvc_queue_op_traverse(PyObject *self, visitproc visit, void *arg)
{
    UvcQueueOp *op = (UvcQueueOp *)self;
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(op->queue);
    Py_VISIT(op->item);
    Py_VISIT(op->waiter);
    return 0;
}

static int uvc_queue_op_clear(PyObject *self)
{
    UvcQueueOp *op = (UvcQueueOp *)self;
    Py_CLEAR(op->queue);
    Py_CLEAR(op->item);
    Py_CLEAR(op->waiter);
    return 0;
}

static void uvc_queue_op_dealloc(PyObject *self)
{
    UvcQueueOp *op = (UvcQueueOp *)self;
    PyTypeObject *tp = Py_TYPE(self);
    if (op->state == OP_WAITING) {
        if (PyObject_CallFinalizerFromDealloc(self) < 0) {
            return; /* resurrected */
        }
    }
    PyObject_GC_UnTrack(self);
    /* Hold the queue until the end: it keeps the freelist (q->x) alive. */
    UvcQueue *q = op->queue;
    op->queue = NULL;
    Py_CLEAR(op->item);
    Py_CLEAR(op->waiter);
    if (q != NULL && q->x->nfree < UVC_QUEUE_FREELIST_MAX && !op->finalized) {
        q->x->freelist[q->x->nfree++] = op; /* keeps our reference to tp */
    } else {
        PyObject_GC_Del(self);
        Py_DECREF(tp);
    }
    Py_XDECREF(q);
}

static PyObject *uvc_queue_op_await(PyObject *self) { return Py_NewRef(self); }

static const char *uvc_queue_op_names[] = {"get", "put", "join", "__anext__"};

static PyObject *uvc_queue_op_get_qualname(PyObject *self, void *closure)
{
    UvcQueueOp *op = (UvcQueueOp *)self;
    if (op->queue == NULL) {
        return PyUnicode_FromString(uvc_queue_op_names[op->kind]);
    }
    return PyUnicode_FromFormat("%s.%s", _PyType_Name(Py_TYPE(op->queue)),
                                uvc_queue_op_names[op->kind]);
}

static PyObject *uvc_queue_op_get_name(PyObject *self, void *closure)
{
    return PyUnicode_FromString(uvc_queue_op_names[((UvcQueueOp *)self)->kind]);
}

static PyObject *uvc_queue_op_repr(PyObject *self)
{
    static const char *states[] = {"pending", "waiting", "done"};
    UvcQueueOp *op = (UvcQueueOp *)self;
    PyObject *name = uvc_queue_op_get_qualname(self, NULL);
    if (name == NULL) {
        return NULL;
    }
    PyObject *r = PyUnicode_FromFormat("<%s awaitable %s>", PyUnicode_AsUTF8(name), states[op->state]);
    Py_DECREF(name);
    return r;
}

static PyMethodDef uvc_queue_op_methods[] = {
    {"send", uvc_queue_op_send, METH_O, "send(value): resume the operation."},
    {"throw", (PyCFunction)(void (*)(void))uvc_queue_op_throw, METH_FASTCALL,
     "throw(exc): interrupt the operation with an exception."},
    {"close", uvc_queue_op_close, METH_NOARGS, "close(): abandon the operation."},
    {NULL},
};

static PyGetSetDef uvc_queue_op_getset[] = {
    {"__name__", uvc_queue_op_get_name, NULL, NULL, NULL},
    {"__qualname__", uvc_queue_op_get_qualname, NULL, NULL, NULL},
    {NULL},
};

static PyType_Slot uvc_queue_op_slots[] = {
    {Py_tp_dealloc, uvc_queue_op_dealloc},
    {Py_tp_finalize, uvc_queue_op_finalize},
    {Py_tp_traverse, uvc_queue_op_traverse},
    {Py_tp_clear, uvc_queue_op_clear},
    {Py_tp_repr, uvc_queue_op_repr},
    {Py_tp_iter, uvc_queue_op_await},
    {Py_tp_iternext, uvc_queue_op_iternext},
    {Py_tp_methods, uvc_queue_op_methods},
    {Py_tp_getset, uvc_queue_op_getset},
    {Py_am_await, uvc_queue_op_await},
#if PY_VERSION_HEX >= 0x030A0000
    {Py_am_send, uvc_queue_op_am_send},
#endif
    {Py_tp_doc, "Awaitable returned by Queue.put/get/join: completes at once when it need not wait."},
    {0, NULL},
};

static PyType_Spec uvc_queue_op_spec = {
    .name = "uvcore._uvcore.QueueAwaitable",
    .basicsize = sizeof(UvcQueueOp),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = uvc_queue_op_slots,
};

/* ------------------------------------------------------------------------------------ */
/* Queue                                                                                 */

/* The uvcore module owning tp (our type or a Python subclass of one). Borrowed. */
static PyObject *uvc_queue_module_of(PyTypeObject *tp)
{
#if PY_VERSION_HEX >= 0x030B0000
    return PyType_GetModuleByDef(tp, &uvc_module_def);
#else
    PyObject *mro = tp->tp_mro;
    for (Py_ssize_t i = 0; mro != NULL && i < PyTuple_GET_SIZE(mro); i++) {
        PyTypeObject *base = (PyTypeObject *)PyTuple_GET_ITEM(mro, i);
        if (base->tp_flags & Py_TPFLAGS_HEAPTYPE) {
            PyObject *m = ((PyHeapTypeObject *)base)->ht_module;
            if (m != NULL && PyModule_GetDef(m) == &uvc_module_def) {
                return m;
            }
        }
    }
    PyErr_Format(PyExc_TypeError, "%s is not a uvcore type", tp->tp_name);
    return NULL;
#endif
}

/* maxsize as a capacity: full() is `qsize >= maxsize` for maxsize > 0, so a float rounds
 * up (asyncio accepts 1.3: two items fit) and NaN never fills. */
static int uvc_queue_capacity_of(PyObject *maxsize, Py_ssize_t *capacity)
{
    double d;
    if (PyLong_Check(maxsize)) {
        int overflow;
        long v = PyLong_AsLongAndOverflow(maxsize, &overflow);
        if (v == -1 && PyErr_Occurred()) {
            return -1;
        }
        if (overflow != 0) {
            *capacity = overflow > 0 ? PY_SSIZE_T_MAX : 0;
        } else {
            /* long and Py_ssize_t have the same width on every platform we build for. */
            *capacity = v <= 0 ? 0 : (Py_ssize_t)v;
        }
        return 0;
    }
    if (PyFloat_Check(maxsize)) {
        d = PyFloat_AS_DOUBLE(maxsize);
    } else if (PyIndex_Check(maxsize)) {
        PyObject *i = PyNumber_Index(maxsize);
        if (i == NULL) {
            return -1;
        }
        int rc = uvc_queue_capacity_of(i, capacity);
        Py_DECREF(i);
        return rc;
    } else if (Py_TYPE(maxsize)->tp_as_number != NULL && Py_TYPE(maxsize)->tp_as_number->nb_float) {
        d = PyFloat_AsDouble(maxsize);
        if (d == -1.0 && PyErr_Occurred()) {
            return -1;
        }
    } else {
        PyErr_Format(PyExc_TypeError, "maxsize must be a number, not %.200s", Py_TYPE(maxsize)->tp_name);
        return -1;
    }
    if (isnan(d) || d <= 0) {
        *capacity = 0;
    } else if (d >= (double)PY_SSIZE_T_MAX) {
        *capacity = PY_SSIZE_T_MAX;
    } else {
        *capacity = (Py_ssize_t)ceil(d);
    }
    return 0;
}

/* Whether a Python subclass overrides the storage hooks _init/_put/_get. */
static int uvc_queue_detect_custom(UvcQueue *q)
{
    uvc_state *st = q->st;
    PyTypeObject *tp = Py_TYPE(q);
    PyTypeObject *base = q->kind == UVC_QUEUE_PRIO   ? st->PriorityQueueType
                         : q->kind == UVC_QUEUE_LIFO ? st->LifoQueueType
                                                     : st->QueueType;
    if (tp == base) {
        return 0;
    }
    static const int names[] = {QC_S_INIT, QC_S_PUT, QC_S_GET};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (_PyType_Lookup(tp, QC(st, names[i])) != _PyType_Lookup(base, QC(st, names[i]))) {
            return 1;
        }
    }
    return 0;
}

static PyObject *uvc_queue_tp_new(PyTypeObject *tp, PyObject *args, PyObject *kwds)
{
    PyObject *m = uvc_queue_module_of(tp);
    if (m == NULL) {
        return NULL;
    }
    uvc_state *st = uvc_state_of_module(m);
    UvcQueue *q = (UvcQueue *)tp->tp_alloc(tp, 0);
    if (q == NULL) {
        return NULL;
    }
    q->st = st;
    q->module = Py_NewRef(m);
    q->x_owner = Py_NewRef(QC(st, QC_EXTRA));
    q->x = PyCapsule_GetPointer(q->x_owner, "uvcore.queue_extra");
    if (q->x == NULL) {
        Py_DECREF(q);
        return NULL;
    }
    q->kind = PyType_IsSubtype(tp, st->PriorityQueueType) ? UVC_QUEUE_PRIO
              : PyType_IsSubtype(tp, st->LifoQueueType)   ? UVC_QUEUE_LIFO
                                                          : UVC_QUEUE_FIFO;
    q->maxsize = PyLong_FromLong(0);
    /* Usable even if a subclass's __init__ never calls ours: an unbounded queue. */
    if (q->maxsize == NULL || (q->getters = PyObject_CallNoArgs(QC(st, QC_DEQUE))) == NULL ||
        (q->putters = PyObject_CallNoArgs(QC(st, QC_DEQUE))) == NULL ||
        (q->joiners = PyObject_CallNoArgs(QC(st, QC_DEQUE))) == NULL ||
        (q->queue = uvc_queue_new_container(q)) == NULL) {
        Py_DECREF(q);
        return NULL;
    }
    return (PyObject *)q;
}

static int uvc_queue_tp_init(PyObject *self, PyObject *args, PyObject *kwds)
{
    UvcQueue *q = (UvcQueue *)self;
    uvc_state *st = q->st;
    PyObject *maxsize = NULL, *getters = NULL, *putters = NULL, *joiners = NULL;
    Py_ssize_t capacity;
#if PY_VERSION_HEX < 0x030A0000
    /* Python 3.9's asyncio.Queue still takes a (deprecated) loop: bind to it as it does.
     * Without one we bind at the first wait, as 3.10+ does, not to get_event_loop(). */
    static char *kwlist[] = {"maxsize", "loop", NULL};
    PyObject *loop = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|O$O:Queue", kwlist, &maxsize, &loop)) {
        return -1;
    }
    if (loop != Py_None) {
        if (PyErr_WarnEx(PyExc_DeprecationWarning,
                         "The loop argument is deprecated since Python 3.8, "
                         "and scheduled for removal in Python 3.10.",
                         1) < 0) {
            return -1;
        }
        Py_XSETREF(q->loop, Py_NewRef(loop));
    }
#else
    static char *kwlist[] = {"maxsize", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|O:Queue", kwlist, &maxsize)) {
        return -1;
    }
#endif
    if (maxsize == NULL) {
        maxsize = PyLong_FromLong(0);
    } else {
        Py_INCREF(maxsize);
    }
    if (maxsize == NULL || uvc_queue_capacity_of(maxsize, &capacity) < 0) {
        goto error;
    }
    if ((getters = PyObject_CallNoArgs(QC(st, QC_DEQUE))) == NULL ||
        (putters = PyObject_CallNoArgs(QC(st, QC_DEQUE))) == NULL ||
        (joiners = PyObject_CallNoArgs(QC(st, QC_DEQUE))) == NULL) {
        goto error;
    }
    Py_SETREF(q->maxsize, maxsize);
    Py_SETREF(q->getters, getters);
    Py_SETREF(q->putters, putters);
    Py_SETREF(q->joiners, joiners);
    q->capacity = capacity;
    q->unfinished = 0;
    q->custom = (unsigned char)uvc_queue_detect_custom(q);
    PyObject *init_args[2] = {self, q->maxsize};
    PyObject *r = PyObject_VectorcallMethod(QC(st, QC_S_INIT), init_args,
                                            2 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    q->is_shutdown = 0;
    return 0;
error:
    Py_XDECREF(maxsize);
    Py_XDECREF(getters);
    Py_XDECREF(putters);
    Py_XDECREF(joiners);
    return -1;
}

static int uvc_queue_tp_traverse(PyObject *self, visitproc visit, void *arg)
{
    UvcQueue *q = (UvcQueue *)self;
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(q->module);
    Py_VISIT(q->queue);
    Py_VISIT(q->getters);
    Py_VISIT(q->putters);
    Py_VISIT(q->joiners);
    Py_VISIT(q->maxsize);
    Py_VISIT(q->loop);
    Py_VISIT(q->dict);
    return 0;
}

static int uvc_queue_tp_clear(PyObject *self)
{
    UvcQueue *q = (UvcQueue *)self;
    Py_CLEAR(q->queue);
    Py_CLEAR(q->getters);
    Py_CLEAR(q->putters);
    Py_CLEAR(q->joiners);
    Py_CLEAR(q->maxsize);
    Py_CLEAR(q->loop);
    Py_CLEAR(q->dict);
    /* q->module stays until dealloc: methods called during a cycle's teardown still
     * need the state. */
    return 0;
}

static void uvc_queue_tp_dealloc(PyObject *self)
{
    UvcQueue *q = (UvcQueue *)self;
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    if (q->weakreflist != NULL) {
        PyObject_ClearWeakRefs(self);
    }
    uvc_queue_tp_clear(self);
    Py_CLEAR(q->module);
    /* The last reference to x_owner frees x and the recycled awaitables. */
    Py_CLEAR(q->x_owner);
    tp->tp_free(self);
    Py_DECREF(tp);
}

/* The structures above are rebuilt by __init__; a getters/putters/joiners deque is never
 * NULL after tp_new, so the methods below only guard `_queue` (a subclass may delete it). */

static PyObject *uvc_queue_qsize(PyObject *self, PyObject *unused)
{
    Py_ssize_t n = uvc_queue_size((UvcQueue *)self);
    return n < 0 ? NULL : PyLong_FromSsize_t(n);
}

static PyObject *uvc_queue_empty(PyObject *self, PyObject *unused)
{
    Py_ssize_t n = uvc_queue_size((UvcQueue *)self);
    return n < 0 ? NULL : PyBool_FromLong(n == 0);
}

static PyObject *uvc_queue_full(PyObject *self, PyObject *unused)
{
    int full = uvc_queue_is_full((UvcQueue *)self);
    return full < 0 ? NULL : PyBool_FromLong(full);
}

static PyObject *uvc_queue_put(PyObject *self, PyObject *item)
{
    return uvc_queue_op_new((UvcQueue *)self, OP_PUT, item);
}

static PyObject *uvc_queue_get(PyObject *self, PyObject *unused)
{
    return uvc_queue_op_new((UvcQueue *)self, OP_GET, NULL);
}

static PyObject *uvc_queue_join(PyObject *self, PyObject *unused)
{
    return uvc_queue_op_new((UvcQueue *)self, OP_JOIN, NULL);
}

static PyObject *uvc_queue_anext(PyObject *self)
{
    return uvc_queue_op_new((UvcQueue *)self, OP_ANEXT, NULL);
}

static PyObject *uvc_queue_aiter(PyObject *self) { return Py_NewRef(self); }

static PyObject *uvc_queue_put_nowait(PyObject *self, PyObject *item)
{
    if (uvc_queue_put_nowait_impl((UvcQueue *)self, item) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *uvc_queue_get_nowait(PyObject *self, PyObject *unused)
{
    return uvc_queue_get_nowait_impl((UvcQueue *)self);
}

static PyObject *uvc_queue_task_done(PyObject *self, PyObject *unused)
{
    UvcQueue *q = (UvcQueue *)self;
    if (uvc_queue_check_thread(q) < 0) {
        return NULL;
    }
    if (q->unfinished <= 0) {
        PyErr_SetString(PyExc_ValueError, "task_done() called too many times");
        return NULL;
    }
    if (--q->unfinished == 0 && uvc_queue_finish_tasks(q) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *uvc_queue_shutdown(PyObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"immediate", NULL};
    UvcQueue *q = (UvcQueue *)self;
    int immediate = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|p:shutdown", kwlist, &immediate)) {
        return NULL;
    }
    if (uvc_queue_check_thread(q) < 0) {
        return NULL;
    }
    q->is_shutdown = 1;
    if (immediate) {
        for (;;) {
            Py_ssize_t n = uvc_queue_size(q);
            if (n < 0) {
                return NULL;
            }
            if (n == 0) {
                break;
            }
            PyObject *item = uvc_queue_take(q);
            if (item == NULL) {
                return NULL;
            }
            Py_DECREF(item);
            if (q->unfinished > 0) {
                q->unfinished--;
            }
        }
        if (q->unfinished == 0 && uvc_queue_finish_tasks(q) < 0) {
            return NULL;
        }
    }
    /* Every waiter re-checks the queue and raises QueueShutDown where it must. */
    if (uvc_queue_wakeup_all(q, q->getters, Py_None) < 0 ||
        uvc_queue_wakeup_all(q, q->putters, Py_None) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* The storage hooks, overridable in Python subclasses as in asyncio. */
static PyObject *uvc_queue_init_hook(PyObject *self, PyObject *maxsize)
{
    UvcQueue *q = (UvcQueue *)self;
    PyObject *c = uvc_queue_new_container(q);
    if (c == NULL) {
        return NULL;
    }
    Py_XSETREF(q->queue, c);
    Py_RETURN_NONE;
}

static PyObject *uvc_queue_put_hook(PyObject *self, PyObject *item)
{
    if (uvc_queue_builtin_put((UvcQueue *)self, item) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *uvc_queue_get_hook(PyObject *self, PyObject *unused)
{
    return uvc_queue_builtin_get((UvcQueue *)self);
}

static PyObject *uvc_queue_get_loop_method(PyObject *self, PyObject *unused)
{
    return uvc_queue_get_loop((UvcQueue *)self);
}

static PyObject *uvc_queue_wakeup_next_method(PyObject *self, PyObject *waiters)
{
    UvcQueue *q = (UvcQueue *)self;
    if (!Py_IS_TYPE(waiters, q->x->deque_type)) {
        PyErr_SetString(PyExc_TypeError, "_wakeup_next() expects a collections.deque");
        return NULL;
    }
    if (uvc_queue_wakeup_next(q, waiters) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* Append the formatted text to *acc (a str); on failure *acc is cleared. */
static void uvc_queue_append_format(PyObject **acc, const char *fmt, ...)
{
    va_list va;
    va_start(va, fmt);
    PyObject *part = *acc ? PyUnicode_FromFormatV(fmt, va) : NULL;
    va_end(va);
    if (part == NULL) {
        Py_CLEAR(*acc);
        return;
    }
    PyObject *joined = PyUnicode_Concat(*acc, part);
    Py_DECREF(part);
    Py_SETREF(*acc, joined);
}

static PyObject *uvc_queue_format(PyObject *self, PyObject *unused)
{
    UvcQueue *q = (UvcQueue *)self;
    PyObject *s = PyUnicode_FromFormat("maxsize=%R", q->maxsize ? q->maxsize : Py_None);
    if (s != NULL && q->queue != NULL) {
        int nonempty = PyObject_IsTrue(q->queue);
        if (nonempty < 0) {
            Py_CLEAR(s);
        } else if (nonempty) {
            PyObject *items = PySequence_List(q->queue);
            if (items == NULL) {
                Py_CLEAR(s);
            } else {
                uvc_queue_append_format(&s, " _queue=%R", items);
                Py_DECREF(items);
            }
        }
    }
    if (s != NULL && uvc_waiters_len(q->getters) > 0) {
        uvc_queue_append_format(&s, " _getters[%zd]", uvc_waiters_len(q->getters));
    }
    if (s != NULL && uvc_waiters_len(q->putters) > 0) {
        uvc_queue_append_format(&s, " _putters[%zd]", uvc_waiters_len(q->putters));
    }
    if (s != NULL && q->unfinished != 0) {
        uvc_queue_append_format(&s, " tasks=%zd", q->unfinished);
    }
    if (s != NULL && q->is_shutdown) {
        uvc_queue_append_format(&s, " shutdown");
    }
    return s;
}

static PyObject *uvc_queue_repr_impl(PyObject *self, int with_id)
{
    uvc_state *st = ((UvcQueue *)self)->st;
    PyObject *fmt = uvc_queue_call_method0(st, self, QC_S_FORMAT);
    if (fmt == NULL) {
        return NULL;
    }
    PyObject *r;
    if (with_id) {
        /* hex(id(self)), as asyncio prints it */
        PyObject *id = PyLong_FromVoidPtr(self);
        PyObject *hex = id ? PyNumber_ToBase(id, 16) : NULL;
        Py_XDECREF(id);
        r = hex ? PyUnicode_FromFormat("<%s at %U %U>", _PyType_Name(Py_TYPE(self)), hex, fmt) : NULL;
        Py_XDECREF(hex);
    } else {
        r = PyUnicode_FromFormat("<%s %U>", _PyType_Name(Py_TYPE(self)), fmt);
    }
    Py_DECREF(fmt);
    return r;
}

static PyObject *uvc_queue_repr(PyObject *self) { return uvc_queue_repr_impl(self, 1); }
static PyObject *uvc_queue_str(PyObject *self) { return uvc_queue_repr_impl(self, 0); }

static PyObject *uvc_queue_get_maxsize(PyObject *self, void *closure)
{
    PyObject *maxsize = ((UvcQueue *)self)->maxsize;
    return Py_NewRef(maxsize != NULL ? maxsize : Py_None); /* NULL only after tp_clear */
}

static PyObject *uvc_queue_get_bound_loop(PyObject *self, void *closure)
{
    UvcQueue *q = (UvcQueue *)self;
    return Py_NewRef(q->loop ? q->loop : Py_None);
}

static PyMethodDef uvc_queue_methods[] = {
    {"qsize", uvc_queue_qsize, METH_NOARGS, "Number of items in the queue."},
    {"empty", uvc_queue_empty, METH_NOARGS, "Return True if the queue is empty."},
    {"full", uvc_queue_full, METH_NOARGS, "Return True if there are maxsize items in the queue."},
    {"put", uvc_queue_put, METH_O,
     "put(item): awaitable; put item, waiting for a free slot if the queue is full."},
    {"get", uvc_queue_get, METH_NOARGS,
     "get(): awaitable; remove and return an item, waiting until one is available."},
    {"put_nowait", uvc_queue_put_nowait, METH_O,
     "Put an item without waiting; raise QueueFull if there is no free slot."},
    {"get_nowait", uvc_queue_get_nowait, METH_NOARGS,
     "Remove and return an item if one is available, else raise QueueEmpty."},
    {"task_done", uvc_queue_task_done, METH_NOARGS,
     "Indicate that a formerly enqueued item has been processed."},
    {"join", uvc_queue_join, METH_NOARGS,
     "join(): awaitable; wait until every item put has been marked done."},
    {"shutdown", (PyCFunction)(void (*)(void))uvc_queue_shutdown, METH_VARARGS | METH_KEYWORDS,
     "shutdown(immediate=False): make put/get raise QueueShutDown and wake every waiter."},
    {"_init", uvc_queue_init_hook, METH_O, NULL},
    {"_put", uvc_queue_put_hook, METH_O, NULL},
    {"_get", uvc_queue_get_hook, METH_NOARGS, NULL},
    {"_format", uvc_queue_format, METH_NOARGS, NULL},
    {"_get_loop", uvc_queue_get_loop_method, METH_NOARGS, NULL},
    {"_wakeup_next", uvc_queue_wakeup_next_method, METH_O, NULL},
    {"__class_getitem__", Py_GenericAlias, METH_O | METH_CLASS, "See PEP 585."},
    {NULL},
};

static PyMemberDef uvc_queue_members[] = {
    {"_queue", T_OBJECT_EX, offsetof(UvcQueue, queue), 0, NULL},
    {"_getters", T_OBJECT, offsetof(UvcQueue, getters), READONLY, NULL},
    {"_putters", T_OBJECT, offsetof(UvcQueue, putters), READONLY, NULL},
    {"_maxsize", T_OBJECT, offsetof(UvcQueue, maxsize), READONLY, NULL},
    {"_unfinished_tasks", T_PYSSIZET, offsetof(UvcQueue, unfinished), 0, NULL},
    {"_is_shutdown", T_BOOL, offsetof(UvcQueue, is_shutdown), 0, NULL},
    {"__dictoffset__", T_PYSSIZET, offsetof(UvcQueue, dict), READONLY, NULL},
    {"__weaklistoffset__", T_PYSSIZET, offsetof(UvcQueue, weakreflist), READONLY, NULL},
    {NULL},
};

static PyGetSetDef uvc_queue_getset[] = {
    {"maxsize", uvc_queue_get_maxsize, NULL, "Number of items allowed in the queue.", NULL},
    {"_loop", uvc_queue_get_bound_loop, NULL, NULL, NULL},
    {NULL},
};

static PyType_Slot uvc_queue_slots[] = {
    {Py_tp_new, uvc_queue_tp_new},
    {Py_tp_init, uvc_queue_tp_init},
    {Py_tp_dealloc, uvc_queue_tp_dealloc},
    {Py_tp_traverse, uvc_queue_tp_traverse},
    {Py_tp_clear, uvc_queue_tp_clear},
    {Py_tp_repr, uvc_queue_repr},
    {Py_tp_str, uvc_queue_str},
    {Py_tp_methods, uvc_queue_methods},
    {Py_tp_members, uvc_queue_members},
    {Py_tp_getset, uvc_queue_getset},
    {Py_am_aiter, uvc_queue_aiter},
    {Py_am_anext, uvc_queue_anext},
    {Py_tp_doc,
     "Queue(maxsize=0): a FIFO queue for coroutines with asyncio.Queue's semantics.\n\n"
     "`async for item in queue` yields items until the queue is shut down and drained."},
    {0, NULL},
};

static PyType_Slot uvc_lifo_queue_slots[] = {
    {Py_tp_doc, "LifoQueue(maxsize=0): a Queue that retrieves the most recently added item first."},
    {Py_tp_traverse, uvc_queue_tp_traverse},
    {Py_tp_clear, uvc_queue_tp_clear},
    {Py_tp_dealloc, uvc_queue_tp_dealloc},
    {0, NULL},
};

static PyType_Slot uvc_priority_queue_slots[] = {
    {Py_tp_doc, "PriorityQueue(maxsize=0): a Queue that retrieves the lowest item first (heapq)."},
    {Py_tp_traverse, uvc_queue_tp_traverse},
    {Py_tp_clear, uvc_queue_tp_clear},
    {Py_tp_dealloc, uvc_queue_tp_dealloc},
    {0, NULL},
};

#define UVC_QUEUE_FLAGS (Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC)

static PyType_Spec uvc_queue_spec = {
    .name = "uvcore.Queue",
    .basicsize = sizeof(UvcQueue),
    .flags = UVC_QUEUE_FLAGS,
    .slots = uvc_queue_slots,
};

static PyType_Spec uvc_lifo_queue_spec = {
    .name = "uvcore.LifoQueue",
    .basicsize = sizeof(UvcQueue),
    .flags = UVC_QUEUE_FLAGS,
    .slots = uvc_lifo_queue_slots,
};

static PyType_Spec uvc_priority_queue_spec = {
    .name = "uvcore.PriorityQueue",
    .basicsize = sizeof(UvcQueue),
    .flags = UVC_QUEUE_FLAGS,
    .slots = uvc_priority_queue_slots,
};

/* ------------------------------------------------------------------------------------ */
/* Registration                                                                          */

static void uvc_queue_extra_free(PyObject *capsule)
{
    uvc_queue_extra *x = PyCapsule_GetPointer(capsule, "uvcore.queue_extra");
    if (x == NULL) {
        PyErr_Clear();
        return;
    }
    while (x->nfree > 0) {
        PyObject *op = (PyObject *)x->freelist[--x->nfree];
        PyTypeObject *tp = Py_TYPE(op);
        PyObject_GC_Del(op);
        Py_DECREF(tp);
    }
    PyMem_Free(x);
}

/* The C function behind a builtin method descriptor with exactly these flags, or NULL. */
static PyCFunction uvc_queue_method_impl(PyObject *descr, int flags)
{
    if (!Py_IS_TYPE(descr, &PyMethodDescr_Type)) {
        return NULL;
    }
    PyMethodDef *def = ((PyMethodDescrObject *)descr)->d_method;
    return def->ml_flags == flags ? def->ml_meth : NULL;
}

static PyObject *uvc_queue_new_extra(PyObject *cache)
{
    uvc_queue_extra *x = PyMem_Calloc(1, sizeof(uvc_queue_extra));
    if (x == NULL) {
        return PyErr_NoMemory();
    }
    x->deque_type = (PyTypeObject *)PyTuple_GET_ITEM(cache, QC_DEQUE);
    x->deque_append = uvc_queue_method_impl(PyTuple_GET_ITEM(cache, QC_DEQUE_APPEND), METH_O);
    x->deque_popleft = uvc_queue_method_impl(PyTuple_GET_ITEM(cache, QC_DEQUE_POPLEFT), METH_NOARGS);
    PyObject *capsule = PyCapsule_New(x, "uvcore.queue_extra", uvc_queue_extra_free);
    if (capsule == NULL) {
        PyMem_Free(x);
        return NULL;
    }
    return capsule;
}

static PyObject *uvc_queue_build_cache(void)
{
    static const char *names[] = {
        [QC_S_CREATE_FUTURE] = "create_future",
        [QC_S_BLOCKING] = "_asyncio_future_blocking",
        [QC_S_DONE] = "done",
        [QC_S_CANCELLED] = "cancelled",
        [QC_S_CANCEL] = "cancel",
        [QC_S_SET_RESULT] = "set_result",
        [QC_S_RESULT] = "result",
        [QC_S_INIT] = "_init",
        [QC_S_PUT] = "_put",
        [QC_S_GET] = "_get",
        [QC_S_FORMAT] = "_format",
        [QC_S_APPEND] = "append",
        [QC_S_POPLEFT] = "popleft",
        [QC_S_POP] = "pop",
    };
    PyObject *cache = PyTuple_New(QC_COUNT);
    PyObject *collections = NULL, *heapq = NULL;
    if (cache == NULL || (collections = PyImport_ImportModule("collections")) == NULL ||
        (heapq = PyImport_ImportModule("heapq")) == NULL) {
        goto error;
    }
    PyObject *deque = PyObject_GetAttrString(collections, "deque");
    if (deque == NULL) {
        goto error;
    }
    PyTuple_SET_ITEM(cache, QC_DEQUE, deque);
    struct {
        int index;
        PyObject *owner;
        const char *name;
    } attrs[] = {
        {QC_DEQUE_APPEND, deque, "append"},
        {QC_DEQUE_POPLEFT, deque, "popleft"},
        {QC_DEQUE_REMOVE, deque, "remove"},
        {QC_HEAPPUSH, heapq, "heappush"},
        {QC_HEAPPOP, heapq, "heappop"},
    };
    for (size_t i = 0; i < sizeof(attrs) / sizeof(attrs[0]); i++) {
        PyObject *v = PyObject_GetAttrString(attrs[i].owner, attrs[i].name);
        if (v == NULL) {
            goto error;
        }
        PyTuple_SET_ITEM(cache, attrs[i].index, v);
    }
    for (int i = QC_S_CREATE_FUTURE; i < QC_EXTRA; i++) {
        PyObject *s = PyUnicode_InternFromString(names[i]);
        if (s == NULL) {
            goto error;
        }
        PyTuple_SET_ITEM(cache, i, s);
    }
    PyObject *extra = uvc_queue_new_extra(cache);
    if (extra == NULL) {
        goto error;
    }
    PyTuple_SET_ITEM(cache, QC_EXTRA, extra);
    Py_DECREF(collections);
    Py_DECREF(heapq);
    return cache;
error:
    Py_XDECREF(cache);
    Py_XDECREF(collections);
    Py_XDECREF(heapq);
    return NULL;
}

static int uvc_queue_add_object(PyObject *m, const char *name, PyObject *value)
{
    Py_INCREF(value);
    if (PyModule_AddObject(m, name, value) < 0) {
        Py_DECREF(value);
        return -1;
    }
    return 0;
}

int uvc_queue_module_init(PyObject *m, uvc_state *st)
{
    PyObject *bases = NULL;
    if ((st->queue_cache = uvc_queue_build_cache()) == NULL ||
        (st->QueueEmpty = PyObject_GetAttrString(st->asyncio, "QueueEmpty")) == NULL ||
        (st->QueueFull = PyObject_GetAttrString(st->asyncio, "QueueFull")) == NULL) {
        return -1;
    }
    /* asyncio has QueueShutDown from 3.13; before that uvcore defines its own. */
    if (PyObject_HasAttrString(st->asyncio, "QueueShutDown")) {
        st->QueueShutDown = PyObject_GetAttrString(st->asyncio, "QueueShutDown");
    } else {
        st->QueueShutDown = PyErr_NewExceptionWithDoc(
            "uvcore.QueueShutDown", "Raised when putting on to or getting from a shut-down Queue.",
            NULL, NULL);
    }
    if (st->QueueShutDown == NULL || uvc_queue_add_object(m, "QueueEmpty", st->QueueEmpty) < 0 ||
        uvc_queue_add_object(m, "QueueFull", st->QueueFull) < 0 ||
        uvc_queue_add_object(m, "QueueShutDown", st->QueueShutDown) < 0) {
        return -1;
    }
    if (uvc_add_type(m, &uvc_queue_op_spec, NULL, &st->QueueAwaitableType) < 0 ||
        uvc_add_type(m, &uvc_queue_spec, NULL, &st->QueueType) < 0) {
        return -1;
    }
    if ((bases = PyTuple_Pack(1, (PyObject *)st->QueueType)) == NULL) {
        return -1;
    }
    if (uvc_add_type(m, &uvc_lifo_queue_spec, bases, &st->LifoQueueType) < 0 ||
        uvc_add_type(m, &uvc_priority_queue_spec, bases, &st->PriorityQueueType) < 0) {
        Py_DECREF(bases);
        return -1;
    }
    Py_DECREF(bases);
    return 0;
}
