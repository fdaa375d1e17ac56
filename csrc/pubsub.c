/* pubsub.c: uvcore.PubSub, the in-memory publish/subscribe broker, and uvcore.Subscription,
 * its native async iterator. Channels and glob patterns map to UvcChannel entries that keep
 * intrusive lists of borrowed links to subscriptions; publish pushes one shared message
 * reference into each subscriber's ring buffer, all in C. A backend (the Redis bridge) can
 * attach with _set_bridge() to learn when a channel gains its first or loses its last local
 * subscriber, and injects messages for local delivery with publish_local(). */
#include "uvcore.h"

#include <stdint.h>
#include <string.h>
#include <pythread.h>
#include "structmember.h"

#if PY_VERSION_HEX >= 0x030C0000
#define UVC_EXC_SAVE(name) PyObject *name = PyErr_GetRaisedException()
#define UVC_EXC_RESTORE(name) PyErr_SetRaisedException(name)
#else
#define UVC_EXC_SAVE(name)                                                                 \
    PyObject *name##_t, *name##_v, *name##_tb;                                             \
    PyErr_Fetch(&name##_t, &name##_v, &name##_tb)
#define UVC_EXC_RESTORE(name) PyErr_Restore(name##_t, name##_v, name##_tb)
#endif

/* Results of one step of an awaitable (the values of PySendResult, which is 3.10+). */
enum { UVC_SEND_ERROR = -1, UVC_SEND_RETURN = 0, UVC_SEND_NEXT = 1 };


typedef enum { OV_DROP_OLDEST, OV_DROP_NEWEST, OV_BLOCK, OV_DISCONNECT } uvc_overflow;
static const char *const overflow_names[] = {"drop_oldest", "drop_newest", "block", "disconnect"};

/* ACTIVE: linked into the broker. ENDED: the broker closed; what is buffered is still read,
 * then StopAsyncIteration. CLOSED: aclose()d; buffer discarded. OVERFLOWED: disconnected by
 * the "disconnect" policy; the iterator raises SubscriberOverflow. */
typedef enum { SUB_ACTIVE, SUB_ENDED, SUB_CLOSED, SUB_OVERFLOWED } uvc_sub_state;

typedef struct UvcChannel UvcChannel;
typedef struct UvcSubscription UvcSubscription;
typedef struct UvcPubSub UvcPubSub;

/* A subscription's membership in one channel or pattern. The subscription owns its links
 * (embedded or in an array it allocates); the channel's list only borrows them, and each
 * link holds a strong reference to its channel, so a channel outlives all its links. */
typedef struct uvc_link {
    struct uvc_link *prev, *next;
    UvcSubscription *sub; /* NULL in a channel's sentinel */
    UvcChannel *chan;
} uvc_link;

struct UvcChannel {
    PyObject_HEAD
    PyObject *name;    /* exact str */
    uvc_link head;     /* sentinel of a circular list of links, in subscription order */
    Py_ssize_t nsubs;
    Py_ssize_t nblock; /* subscribers with overflow="block": publish must check for room */
    int is_pattern;
};

/* A publish that waits for room (overflow="block") shares one counter among the messages
 * it left in subscribers' pending queues; when the last one enters a ring the publisher's
 * future gets the receiver count. */
typedef struct {
    Py_ssize_t outstanding;
    Py_ssize_t receivers;
    uint64_t epoch; /* the broker's wait_epoch when counted in its nwaits */
} uvc_pubwait;

/* fut and pw are NULL for a message a backend queued without waiting (publish_local_queued):
 * nobody is told when it enters the ring. */
typedef struct uvc_pending {
    struct uvc_pending *next;
    PyObject *msg; /* strong */
    PyObject *fut; /* strong: the publisher's future (one reference per node, so GC can visit it) */
    uvc_pubwait *pw;
} uvc_pending;

struct UvcSubscription {
    PyObject_HEAD
    UvcPubSub *broker; /* strong: unlinking needs the broker's tables */
    PyObject *name;    /* str, or tuple of str when subscribed to several */
    uvc_link *links;   /* &link0 or a PyMem array */
    Py_ssize_t nlinks; /* 0 once unlinked */
    uvc_link link0;
    PyObject **buf;    /* ring buffer, allocated on first message, power-of-two capacity */
    Py_ssize_t cap, head, count, maxsize; /* maxsize 0: unbounded */
    uvc_pending *pend_head, *pend_tail;   /* messages of blocked publishers, in order */
    Py_ssize_t npending;
    PyObject *waiter; /* future of a suspended __anext__, or NULL */
    uint64_t last_seq; /* last publish that reached us: a message is delivered once */
    uint64_t dropped;
    uvc_overflow overflow;
    uvc_sub_state state;
    PyObject *weakreflist;
};

struct UvcPubSub {
    PyObject_HEAD
    uvc_state *st;
    PyObject *module;     /* keeps st alive */
    PyObject *channels;   /* dict: exact name -> UvcChannel */
    PyObject *patterns;   /* dict: pattern -> UvcChannel */
    UvcChannel **pats;    /* the patterns again, borrowed, as an array for publish */
    Py_ssize_t npats, pats_cap;
    PyObject *bridge;     /* backend notified of first/last local subscriber, or NULL */
    PyObject *s_set_result, *s_create_future, *s_done, *s_cancelled; /* interned names */
    uint64_t seq, published, delivered, dropped;
    Py_ssize_t nsubs;
    /* Futures that some other call may complete: suspended __anext__ awaitables and
     * blocked publishers. All of them belong to the loop of one thread, wait_thread
     * (enforced when one is made), so a call from another thread can be refused before it
     * changes anything. Waits counted under an older wait_epoch were found stale (their
     * loop closed) and are no longer counted. */
    Py_ssize_t nwaits;
    unsigned long wait_thread;
    uint64_t wait_epoch;
    Py_ssize_t def_maxsize;
    uvc_overflow def_overflow;
    int closed;
    PyObject *weakreflist;
};

/* The two awaitables: Ready completes on its first step with a value; Wait is a suspended
 * __anext__ that waits on a future from the running loop and then takes the next message. */
typedef struct {
    PyObject_HEAD
    PyObject *value;
} UvcReady;

typedef struct {
    PyObject_HEAD
    UvcSubscription *sub;
    PyObject *fut;
    PyObject *fut_iter;
    uint64_t epoch; /* broker's wait_epoch when fut was counted in nwaits */
} UvcWait;

/* ---------------------------------------------------------------- small helpers */

/* A growable array of owned references, with inline room for the common case. */
typedef struct {
    PyObject **items;
    Py_ssize_t n, cap;
    PyObject *inline_items[8];
} uvc_vec;

static void uvc_vec_init(uvc_vec *v)
{
    v->items = v->inline_items;
    v->n = 0;
    v->cap = 8;
}

/* Steals o. On allocation failure returns -1 and o is still the caller's. */
static int uvc_vec_push(uvc_vec *v, PyObject *o)
{
    if (v->n == v->cap) {
        Py_ssize_t ncap = v->cap * 2;
        PyObject **n;
        if (v->items == v->inline_items) {
            n = PyMem_Malloc(ncap * sizeof(PyObject *));
            if (n != NULL) {
                memcpy(n, v->items, v->n * sizeof(PyObject *));
            }
        } else {
            n = PyMem_Realloc(v->items, ncap * sizeof(PyObject *));
        }
        if (n == NULL) {
            return -1;
        }
        v->items = n;
        v->cap = ncap;
    }
    v->items[v->n++] = o;
    return 0;
}

static void uvc_vec_free(uvc_vec *v)
{
    if (v->items != v->inline_items) {
        PyMem_Free(v->items);
    }
    uvc_vec_init(v);
}

/* Drops every reference (may run arbitrary code) and frees the array. */
static void uvc_vec_clear(uvc_vec *v)
{
    for (Py_ssize_t i = 0; i < v->n; i++) {
        Py_DECREF(v->items[i]);
    }
    uvc_vec_free(v);
}

static void uvc_set_stop_iteration(PyObject *value)
{
    if (value == Py_None) {
        PyErr_SetNone(PyExc_StopIteration);
    } else if (PyTuple_Check(value) || PyExceptionInstance_Check(value)) {
        /* These would be taken as constructor arguments or as the exception itself. */
        PyObject *e = PyObject_CallOneArg(PyExc_StopIteration, value);
        if (e != NULL) {
            PyErr_SetObject(PyExc_StopIteration, e);
            Py_DECREF(e);
        }
    } else {
        PyErr_SetObject(PyExc_StopIteration, value);
    }
}

/* A step's outcome as tp_iternext / send() report it: the yielded value, or NULL with
 * StopIteration(value) set for a return, or NULL with the error already set. Steals r. */
static PyObject *uvc_send_result(int st, PyObject *r)
{
    if (st == UVC_SEND_NEXT) {
        return r;
    }
    if (st == UVC_SEND_RETURN) {
        uvc_set_stop_iteration(r);
        Py_DECREF(r);
    }
    return NULL;
}

/* gen.throw()-style arguments: raise them. Always returns NULL. */
static PyObject *uvc_raise_thrown(PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 1 || nargs > 3) {
        PyErr_SetString(PyExc_TypeError, "throw() takes 1 to 3 arguments");
        return NULL;
    }
    PyObject *typ = args[0];
    if (PyExceptionInstance_Check(typ)) {
        PyErr_SetObject((PyObject *)Py_TYPE(typ), typ);
    } else if (PyExceptionClass_Check(typ)) {
        PyErr_SetObject(typ, nargs > 1 ? args[1] : Py_None);
    } else {
        PyErr_Format(PyExc_TypeError,
                     "exceptions must be classes or instances deriving from BaseException, not %s",
                     Py_TYPE(typ)->tp_name);
    }
    return NULL;
}

/* One step of the awaitable iterator it (send arg into it). */
static int uvc_iter_send(PyObject *it, PyObject *arg, PyObject **result)
{
#if PY_VERSION_HEX >= 0x030A0000
    return (int)PyIter_Send(it, arg, result);
#else
    PyObject *r;
    if (arg == Py_None && Py_TYPE(it)->tp_iternext != NULL) {
        r = Py_TYPE(it)->tp_iternext(it);
    } else {
        r = PyObject_CallMethod(it, "send", "O", arg);
    }
    if (r != NULL) {
        *result = r;
        return UVC_SEND_NEXT;
    }
    if (PyErr_Occurred() == NULL) {
        *result = Py_NewRef(Py_None);
        return UVC_SEND_RETURN;
    }
    if (PyErr_ExceptionMatches(PyExc_StopIteration)) {
        PyObject *t, *v, *tb;
        PyErr_Fetch(&t, &v, &tb);
        PyErr_NormalizeException(&t, &v, &tb);
        PyObject *val = v != NULL ? PyObject_GetAttrString(v, "value") : Py_NewRef(Py_None);
        Py_XDECREF(t);
        Py_XDECREF(v);
        Py_XDECREF(tb);
        if (val == NULL) {
            *result = NULL;
            return UVC_SEND_ERROR;
        }
        *result = val;
        return UVC_SEND_RETURN;
    }
    *result = NULL;
    return UVC_SEND_ERROR;
#endif
}

/* An exact str for a channel name (new reference), or NULL with TypeError/ValueError. */
static PyObject *uvc_channel_name(PyObject *name, const char *what)
{
    if (!PyUnicode_Check(name)) {
        PyErr_Format(PyExc_TypeError, "%s must be a str, not %.100s", what, Py_TYPE(name)->tp_name);
        return NULL;
    }
    if (PyUnicode_GET_LENGTH(name) == 0) {
        PyErr_Format(PyExc_ValueError, "%s must not be empty", what);
        return NULL;
    }
    if (PyUnicode_CheckExact(name)) {
        return Py_NewRef(name);
    }
    /* A str subclass could run Python code in __hash__/__eq__ inside our tables. */
    return PyUnicode_FromObject(name);
}

/* ---------------------------------------------------------------- glob patterns */

/* Redis-style globs: * ? [abc] [^abc] [a-z] and backslash escapes, matched per code point. */
typedef struct {
    int kind;
    const void *data;
    Py_ssize_t len;
} uvc_text;

static uvc_text uvc_text_of(PyObject *s)
{
    uvc_text t = {PyUnicode_KIND(s), PyUnicode_DATA(s), PyUnicode_GET_LENGTH(s)};
    return t;
}

#define CH(t, i) PyUnicode_READ((t)->kind, (t)->data, (i))

static int uvc_glob_is_pattern(PyObject *s)
{
    uvc_text t = uvc_text_of(s);
    for (Py_ssize_t i = 0; i < t.len; i++) {
        Py_UCS4 c = CH(&t, i);
        if (c == '*' || c == '?' || c == '[' || c == '\\') {
            return 1;
        }
    }
    return 0;
}

/* Match code point c against the class starting just after '[' at *pi; leaves *pi just
 * after the closing ']'. Patterns are validated first, so the ']' exists. */
static int uvc_glob_class(const uvc_text *p, Py_ssize_t *pi, Py_UCS4 c)
{
    Py_ssize_t i = *pi;
    int negate = 0, hit = 0;
    if (i < p->len && CH(p, i) == '^') {
        negate = 1;
        i++;
    }
    while (i < p->len && CH(p, i) != ']') {
        Py_UCS4 lo = CH(p, i);
        if (lo == '\\' && i + 1 < p->len) {
            lo = CH(p, ++i);
        }
        if (i + 2 < p->len && CH(p, i + 1) == '-' && CH(p, i + 2) != ']') {
            Py_ssize_t j = i + 2;
            Py_UCS4 hi = CH(p, j);
            if (hi == '\\' && j + 1 < p->len) {
                hi = CH(p, ++j);
            }
            if (lo > hi) {
                Py_UCS4 tmp = lo;
                lo = hi;
                hi = tmp;
            }
            hit |= (c >= lo && c <= hi);
            i = j + 1;
        } else {
            hit |= (c == lo);
            i++;
        }
    }
    *pi = i + 1;
    return hit != negate;
}

/* Iterative matcher: '*' remembers where it was so a later mismatch retries one character
 * further, which keeps the cost at O(len(pattern) * len(text)) in the worst case. */
static int uvc_glob_match(PyObject *pattern, PyObject *text)
{
    uvc_text pt = uvc_text_of(pattern), tt = uvc_text_of(text);
    const uvc_text *p = &pt, *s = &tt;
    Py_ssize_t pi = 0, si = 0, star_p = -1, star_s = 0;
    while (si < s->len) {
        if (pi < p->len) {
            Py_UCS4 c = CH(p, pi);
            if (c == '*') {
                while (pi < p->len && CH(p, pi) == '*') {
                    pi++;
                }
                if (pi == p->len) {
                    return 1;
                }
                star_p = pi;
                star_s = si;
                continue;
            }
            if (c == '?') {
                pi++;
                si++;
                continue;
            }
            if (c == '[') {
                Py_ssize_t np = pi + 1;
                if (uvc_glob_class(p, &np, CH(s, si))) {
                    pi = np;
                    si++;
                    continue;
                }
            } else {
                Py_ssize_t adv = 1;
                if (c == '\\' && pi + 1 < p->len) {
                    c = CH(p, pi + 1);
                    adv = 2;
                }
                if (c == CH(s, si)) {
                    pi += adv;
                    si++;
                    continue;
                }
            }
        }
        if (star_p < 0) {
            return 0;
        }
        pi = star_p;
        si = ++star_s;
    }
    while (pi < p->len && CH(p, pi) == '*') {
        pi++;
    }
    return pi == p->len;
}

/* 0 if the pattern is well formed, else -1 with ValueError. */
static int uvc_glob_validate(PyObject *pattern)
{
    uvc_text t = uvc_text_of(pattern);
    for (Py_ssize_t i = 0; i < t.len; i++) {
        Py_UCS4 c = CH(&t, i);
        if (c == '\\') {
            if (i + 1 >= t.len) {
                PyErr_Format(PyExc_ValueError, "bad pattern %R: trailing backslash", pattern);
                return -1;
            }
            i++;
        } else if (c == '[') {
            Py_ssize_t j = i + 1;
            if (j < t.len && CH(&t, j) == '^') {
                j++;
            }
            while (j < t.len && CH(&t, j) != ']') {
                j += (CH(&t, j) == '\\') ? 2 : 1;
            }
            if (j >= t.len) {
                PyErr_Format(PyExc_ValueError, "bad pattern %R: '[' without a closing ']'", pattern);
                return -1;
            }
            i = j;
        }
    }
    return 0;
}

#undef CH

/* ---------------------------------------------------------------- Ready awaitable */

static PyObject *uvc_ready_new(uvc_state *st, PyObject *value)
{
    UvcReady *r = PyObject_GC_New(UvcReady, st->PubSubReadyType);
    if (r == NULL) {
        return NULL;
    }
    r->value = Py_NewRef(value);
    PyObject_GC_Track(r);
    return (PyObject *)r;
}

/* Like uvc_ready_new but steals value (which may be NULL: then returns NULL). */
static PyObject *uvc_ready_steal(uvc_state *st, PyObject *value)
{
    if (value == NULL) {
        return NULL;
    }
    PyObject *r = uvc_ready_new(st, value);
    Py_DECREF(value);
    return r;
}

static int ready_traverse(UvcReady *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->value);
    return 0;
}

static int ready_clear(UvcReady *self)
{
    Py_CLEAR(self->value);
    return 0;
}

static void ready_dealloc(UvcReady *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    ready_clear(self);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyObject *ready_iternext(UvcReady *self)
{
    uvc_set_stop_iteration(self->value != NULL ? self->value : Py_None);
    return NULL;
}

#if PY_VERSION_HEX >= 0x030A0000
static PySendResult ready_am_send(UvcReady *self, PyObject *arg, PyObject **result)
{
    *result = Py_NewRef(self->value != NULL ? self->value : Py_None);
    return PYGEN_RETURN;
}
#endif

static PyObject *ready_send(UvcReady *self, PyObject *arg) { return ready_iternext(self); }

static PyObject *ready_throw(UvcReady *self, PyObject *const *args, Py_ssize_t nargs)
{
    return uvc_raise_thrown(args, nargs);
}

static PyObject *ready_close(UvcReady *self, PyObject *unused) { Py_RETURN_NONE; }

static PyMethodDef ready_methods[] = {
    {"send", (PyCFunction)ready_send, METH_O, NULL},
    {"throw", (PyCFunction)(void (*)(void))ready_throw, METH_FASTCALL, NULL},
    {"close", (PyCFunction)ready_close, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot ready_slots[] = {
    {Py_tp_doc, "An awaitable that completes at once with a value (internal)."},
    {Py_tp_dealloc, ready_dealloc},
    {Py_tp_traverse, ready_traverse},
    {Py_tp_clear, ready_clear},
    {Py_tp_iter, PyObject_SelfIter},
    {Py_tp_iternext, ready_iternext},
    {Py_tp_methods, ready_methods},
    {Py_am_await, PyObject_SelfIter},
#if PY_VERSION_HEX >= 0x030A0000
    {Py_am_send, ready_am_send},
#endif
    {0, NULL},
};

static PyType_Spec ready_spec = {
    .name = "uvcore._uvcore._PubSubReady",
    .basicsize = sizeof(UvcReady),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = ready_slots,
};

/* ---------------------------------------------------------------- PubWaiting awaitable */

/* The awaitable of a publish() that waits for room in a subscriber with overflow="block".
 * A bare Future would do for `await`, but asyncio.create_task() and TaskGroup want a
 * coroutine; with send/throw/close/__await__ this passes collections.abc.Coroutine, as Ready
 * does. Awaiting it yields the publisher's future until the receiver count is known. */
typedef struct {
    PyObject_HEAD
    PyObject *fut;      /* NULL once finished */
    PyObject *fut_iter; /* the future's iterator, from the first step */
} UvcPubWaiting;

static PyObject *uvc_pubwaiting_new(uvc_state *st, PyObject *fut)
{
    UvcPubWaiting *w = PyObject_GC_New(UvcPubWaiting, st->PubSubPubWaitingType);
    if (w == NULL) {
        return NULL;
    }
    w->fut = Py_NewRef(fut);
    w->fut_iter = NULL;
    PyObject_GC_Track(w);
    return (PyObject *)w;
}

static int pubwaiting_traverse(UvcPubWaiting *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->fut);
    Py_VISIT(self->fut_iter);
    return 0;
}

static int pubwaiting_clear(UvcPubWaiting *self)
{
    Py_CLEAR(self->fut_iter);
    Py_CLEAR(self->fut);
    return 0;
}

static void pubwaiting_dealloc(UvcPubWaiting *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    pubwaiting_clear(self);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static int pubwaiting_step(UvcPubWaiting *self, PyObject *arg, PyObject **result)
{
    *result = NULL;
    if (self->fut == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "cannot reuse an already awaited publish()");
        return UVC_SEND_ERROR;
    }
    if (self->fut_iter == NULL) {
        PyAsyncMethods *am = Py_TYPE(self->fut)->tp_as_async;
        if (am == NULL || am->am_await == NULL) {
            PyErr_Format(PyExc_TypeError, "create_future() returned a non-awaitable %.100s",
                         Py_TYPE(self->fut)->tp_name);
            return UVC_SEND_ERROR;
        }
        if ((self->fut_iter = am->am_await(self->fut)) == NULL) {
            return UVC_SEND_ERROR;
        }
    }
    int st = uvc_iter_send(self->fut_iter, arg, result);
    if (st != UVC_SEND_NEXT) {
        pubwaiting_clear(self);
    }
    return st;
}

static PyObject *pubwaiting_iternext(UvcPubWaiting *self)
{
    PyObject *r;
    int st = pubwaiting_step(self, Py_None, &r);
    return uvc_send_result(st, r);
}

static PyObject *pubwaiting_send(UvcPubWaiting *self, PyObject *arg)
{
    PyObject *r;
    int st = pubwaiting_step(self, arg, &r);
    return uvc_send_result(st, r);
}

#if PY_VERSION_HEX >= 0x030A0000
static PySendResult pubwaiting_am_send(UvcPubWaiting *self, PyObject *arg, PyObject **result)
{
    return (PySendResult)pubwaiting_step(self, arg, result);
}
#endif

/* The publish was interrupted (a task cancelled while it was not suspended on the future):
 * cancel the future, which withdraws its messages still waiting for room, as cancelling an
 * awaiting task does. */
static void uvc_pubwaiting_withdraw(UvcPubWaiting *self)
{
    PyObject *fut = self->fut;
    if (fut == NULL) {
        return;
    }
    UVC_EXC_SAVE(exc);
    PyObject *r = PyObject_CallMethod(fut, "cancel", NULL);
    if (r == NULL) {
        PyErr_WriteUnraisable(fut);
    }
    Py_XDECREF(r);
    UVC_EXC_RESTORE(exc);
    pubwaiting_clear(self);
}

static PyObject *pubwaiting_throw(UvcPubWaiting *self, PyObject *const *args, Py_ssize_t nargs)
{
    uvc_pubwaiting_withdraw(self);
    return uvc_raise_thrown(args, nargs);
}

static PyObject *pubwaiting_close(UvcPubWaiting *self, PyObject *unused)
{
    if (self->fut_iter != NULL) { /* closed while suspended: as if cancelled */
        uvc_pubwaiting_withdraw(self);
    }
    Py_RETURN_NONE;
}

static PyMethodDef pubwaiting_methods[] = {
    {"send", (PyCFunction)pubwaiting_send, METH_O, NULL},
    {"throw", (PyCFunction)(void (*)(void))pubwaiting_throw, METH_FASTCALL, NULL},
    {"close", (PyCFunction)pubwaiting_close, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot pubwaiting_slots[] = {
    {Py_tp_doc, "The awaitable of a publish() that waits for room (internal)."},
    {Py_tp_dealloc, pubwaiting_dealloc},
    {Py_tp_traverse, pubwaiting_traverse},
    {Py_tp_clear, pubwaiting_clear},
    {Py_tp_iter, PyObject_SelfIter},
    {Py_tp_iternext, pubwaiting_iternext},
    {Py_tp_methods, pubwaiting_methods},
    {Py_am_await, PyObject_SelfIter},
#if PY_VERSION_HEX >= 0x030A0000
    {Py_am_send, pubwaiting_am_send},
#endif
    {0, NULL},
};

static PyType_Spec pubwaiting_spec = {
    .name = "uvcore._uvcore._PubSubPublishWait",
    .basicsize = sizeof(UvcPubWaiting),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = pubwaiting_slots,
};

/* ---------------------------------------------------------------- channels */

static UvcChannel *uvc_channel_new(uvc_state *st, PyObject *name, int is_pattern)
{
    UvcChannel *c = PyObject_New(UvcChannel, st->PubSubChannelType);
    if (c == NULL) {
        return NULL;
    }
    c->name = Py_NewRef(name);
    c->head.prev = c->head.next = &c->head;
    c->head.sub = NULL;
    c->head.chan = c;
    c->nsubs = 0;
    c->nblock = 0;
    c->is_pattern = is_pattern;
    return c;
}

static void channel_dealloc(UvcChannel *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    Py_CLEAR(self->name);
    PyObject_Free(self);
    Py_DECREF(tp);
}

static PyType_Slot channel_slots[] = {
    {Py_tp_doc, "A channel or pattern of a PubSub and its subscribers (internal)."},
    {Py_tp_dealloc, channel_dealloc},
    {0, NULL},
};

/* Not GC-tracked: it holds only its name (a str) and borrowed links. */
static PyType_Spec channel_spec = {
    .name = "uvcore._uvcore._PubSubChannel",
    .basicsize = sizeof(UvcChannel),
    .flags = Py_TPFLAGS_DEFAULT,
    .slots = channel_slots,
};

/* ---------------------------------------------------------------- bridge hooks */

/* Tell the backend that a channel gained its first, or lost its last, local subscriber.
 * Returns -1 with an exception set if the hook raised. */
static int uvc_bridge_notify(UvcPubSub *ps, UvcChannel *chan, int added)
{
    if (ps->bridge == NULL) {
        return 0;
    }
    PyObject *bridge = Py_NewRef(ps->bridge);
    PyObject *r = PyObject_CallMethod(bridge, added ? "on_first_subscriber" : "on_last_subscriber",
                                      "OO", chan->name, chan->is_pattern ? Py_True : Py_False);
    Py_DECREF(bridge);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    return 0;
}

/* ---------------------------------------------------------------- subscription core */

static void uvc_ring_free(UvcSubscription *s)
{
    PyMem_Free(s->buf);
    s->buf = NULL;
    s->cap = s->head = s->count = 0;
}

/* Append msg (a new reference is taken). -1 on allocation failure, nothing changed. */
static int uvc_ring_push(UvcSubscription *s, PyObject *msg)
{
    if (s->count == s->cap) {
        Py_ssize_t ncap = s->cap ? s->cap * 2 : 8;
        PyObject **nbuf = PyMem_Malloc(ncap * sizeof(PyObject *));
        if (nbuf == NULL) {
            return -1;
        }
        for (Py_ssize_t i = 0; i < s->count; i++) {
            nbuf[i] = s->buf[(s->head + i) & (s->cap - 1)];
        }
        PyMem_Free(s->buf);
        s->buf = nbuf;
        s->cap = ncap;
        s->head = 0;
    }
    s->buf[(s->head + s->count) & (s->cap - 1)] = Py_NewRef(msg);
    s->count++;
    return 0;
}

/* Remove and return the oldest message (the reference passes to the caller). A large
 * buffer is given back once drained, so a subscription idles small after a burst. */
static PyObject *uvc_ring_pop(UvcSubscription *s)
{
    PyObject *msg = s->buf[s->head];
    s->head = (s->head + 1) & (s->cap - 1);
    if (--s->count == 0) {
        s->head = 0;
        if (s->cap >= 64) {
            uvc_ring_free(s);
        }
    }
    return msg;
}

/* Move every buffered message into garbage (or drop it now if that fails). */
static void uvc_ring_drain_into(UvcSubscription *s, uvc_vec *garbage)
{
    while (s->count > 0) {
        PyObject *m = s->buf[s->head];
        s->head = (s->head + 1) & (s->cap - 1);
        s->count--;
        if (garbage == NULL || uvc_vec_push(garbage, m) < 0) {
            Py_DECREF(m);
        }
    }
    uvc_ring_free(s);
}

static int uvc_sub_full(UvcSubscription *s)
{
    return s->npending > 0 || (s->maxsize > 0 && s->count >= s->maxsize);
}

/* Drop patterns left without subscribers from the broker's array, keeping the order of
 * the others: only `only` if given, else every empty one, in a single pass. */
static void uvc_pats_remove_empty(UvcPubSub *ps, UvcChannel *only)
{
    Py_ssize_t j = 0;
    for (Py_ssize_t i = 0; i < ps->npats; i++) {
        UvcChannel *p = ps->pats[i];
        int drop = only != NULL ? (p == only) : (p->nsubs == 0);
        if (!drop) {
            ps->pats[j++] = p;
        }
    }
    ps->npats = j;
}

/* Unlink from every channel/pattern; channels left empty leave the broker and the bridge is
 * told. Safe to call more than once; runs no Python code except bridge hooks, whose errors
 * are reported as unraisable (this runs from finalizers too). */
static void uvc_sub_unlink(UvcSubscription *s)
{
    UvcPubSub *ps = s->broker;
    Py_ssize_t n = s->nlinks;
    if (n == 0 || ps == NULL) {
        return;
    }
    UVC_EXC_SAVE(exc);
    uvc_link *links = s->links;
    uvc_vec emptied; /* channels left without subscribers (references) */
    uvc_vec_init(&emptied);
    Py_ssize_t gone_pats = 0;
    s->nlinks = 0;
    ps->nsubs--;
    for (Py_ssize_t i = 0; i < n; i++) {
        uvc_link *l = &links[i];
        UvcChannel *chan = l->chan;
        l->prev->next = l->next;
        l->next->prev = l->prev;
        l->prev = l->next = NULL;
        l->chan = NULL;
        chan->nsubs--;
        if (s->overflow == OV_BLOCK) {
            chan->nblock--;
        }
        if (chan->nsubs == 0) {
            PyObject *table = chan->is_pattern ? ps->patterns : ps->channels;
            if (table != NULL && PyDict_GetItemWithError(table, chan->name) == (PyObject *)chan) {
                if (PyDict_DelItem(table, chan->name) < 0) {
                    PyErr_Clear();
                }
            }
            PyErr_Clear();
            if (uvc_vec_push(&emptied, (PyObject *)chan) == 0) {
                /* The link's reference now belongs to emptied; emptied patterns leave the
                 * array in one pass below, so that leaving many patterns stays linear. */
                gone_pats += chan->is_pattern;
                continue;
            }
            if (chan->is_pattern) { /* out of memory: remove it alone, now */
                uvc_pats_remove_empty(ps, chan);
            }
        }
        Py_DECREF(chan);
    }
    if (links != &s->link0) {
        PyMem_Free(links);
        s->links = &s->link0;
    }
    if (gone_pats > 0) {
        uvc_pats_remove_empty(ps, NULL);
    }
    for (Py_ssize_t i = 0; i < emptied.n && ps->bridge != NULL; i++) {
        if (uvc_bridge_notify(ps, (UvcChannel *)emptied.items[i], 0) < 0) {
            PyErr_WriteUnraisable((PyObject *)ps);
        }
    }
    uvc_vec_clear(&emptied);
    UVC_EXC_RESTORE(exc);
}

/* Resolve a blocked publisher's share: when its last pending message is settled, its future
 * gets the receiver count. Takes the node's reference to fut. */
static void uvc_pubwait_settle(UvcPubSub *ps, uvc_pubwait *pw, PyObject *fut)
{
    if (pw == NULL) {
        return; /* queued by a backend: nobody waits */
    }
    if (--pw->outstanding == 0) {
        if (pw->epoch == ps->wait_epoch) {
            ps->nwaits--;
        }
        PyObject *done = PyObject_CallMethodNoArgs(fut, ps->s_done);
        if (done == NULL) {
            PyErr_WriteUnraisable(fut);
        } else {
            if (done == Py_False) {
                PyObject *n = PyLong_FromSsize_t(pw->receivers);
                PyObject *r = n ? PyObject_CallMethodOneArg(fut, ps->s_set_result, n) : NULL;
                Py_XDECREF(n);
                if (r == NULL) {
                    PyErr_WriteUnraisable(fut);
                }
                Py_XDECREF(r);
            }
            Py_DECREF(done);
        }
        PyMem_Free(pw);
    }
    Py_DECREF(fut);
}

/* Give every pending (blocked-publisher) message up: the publishers are released. */
static void uvc_sub_release_pending(UvcSubscription *s, int count_dropped)
{
    while (s->pend_head != NULL) {
        uvc_pending *node = s->pend_head;
        s->pend_head = node->next;
        if (s->pend_head == NULL) {
            s->pend_tail = NULL;
        }
        s->npending--;
        if (count_dropped) {
            s->dropped++;
            if (s->broker) {
                s->broker->dropped++;
            }
        }
        Py_DECREF(node->msg);
        uvc_pubwait_settle(s->broker, node->pw, node->fut);
        PyMem_Free(node);
    }
}

/* After a message left the ring, move blocked publishers' messages in while there is room.
 * A publisher whose await was cancelled has withdrawn its message. */
static void uvc_sub_refill(UvcSubscription *s)
{
    UvcPubSub *ps = s->broker;
    while (s->pend_head != NULL && (s->state == SUB_ACTIVE || s->state == SUB_ENDED) &&
           (s->maxsize == 0 || s->count < s->maxsize)) {
        uvc_pending *node = s->pend_head;
        s->pend_head = node->next;
        if (s->pend_head == NULL) {
            s->pend_tail = NULL;
        }
        s->npending--;
        int withdrawn = 0;
        PyObject *c = node->fut != NULL ? PyObject_CallMethodNoArgs(node->fut, ps->s_cancelled)
                                        : Py_NewRef(Py_False);
        if (c == NULL) {
            PyErr_WriteUnraisable(node->fut);
        } else {
            withdrawn = (c == Py_True);
            Py_DECREF(c);
        }
        if (withdrawn || uvc_ring_push(s, node->msg) < 0) {
            s->dropped++;
            ps->dropped++;
        }
        Py_DECREF(node->msg);
        uvc_pubwait_settle(ps, node->pw, node->fut);
        PyMem_Free(node);
    }
}

/* 1 when fut's loop is closed; 0 otherwise or when that cannot be told (errors are
 * discarded: the caller is handling an exception already, which stays set). */
static int uvc_future_loop_closed(PyObject *fut)
{
    PyObject *exc = PyErr_GetRaisedException_compat();
    int closed = 0;
    PyObject *loop = PyObject_CallMethod(fut, "get_loop", NULL);
    if (loop != NULL) {
        PyObject *r = PyObject_CallMethod(loop, "is_closed", NULL);
        closed = (r == Py_True);
        Py_XDECREF(r);
        Py_DECREF(loop);
    }
    PyErr_Clear();
    PyErr_SetRaisedException_compat(exc);
    return closed;
}

/* Wake a suspended __anext__ (the future gets None; the message is taken when it resumes,
 * so a cancelled waiter loses nothing). Takes the reference to fut. */
static void uvc_wake(UvcPubSub *ps, PyObject *fut)
{
    PyObject *r = PyObject_CallMethodOneArg(fut, ps->s_set_result, Py_None);
    if (r == NULL) {
        /* Already cancelled (its task was cancelled): nothing to wake. Or its loop was
         * closed under a suspended task (a subscription outliving its loop, then closed
         * or published to): the task is gone with its loop, nothing to wake either. */
        if (PyErr_ExceptionMatches(ps->st->InvalidStateError) ||
            (PyErr_ExceptionMatches(PyExc_RuntimeError) && uvc_future_loop_closed(fut))) {
            PyErr_Clear();
        } else {
            PyErr_WriteUnraisable(fut);
        }
    }
    Py_XDECREF(r);
    Py_DECREF(fut);
}

static void uvc_sub_wake(UvcSubscription *s)
{
    if (s->waiter != NULL) {
        PyObject *w = s->waiter;
        s->waiter = NULL;
        uvc_wake(s->broker, w);
    }
}

/* End the subscription. CLOSED discards what is buffered; ENDED (broker closing) keeps it to
 * be read. Publishers blocked on it are released; a suspended __anext__ is woken. */
static void uvc_sub_end(UvcSubscription *s, uvc_sub_state how)
{
    if (s->state == SUB_ACTIVE || (s->state == SUB_ENDED && how == SUB_CLOSED)) {
        s->state = how;
    }
    uvc_sub_unlink(s);
    uvc_sub_release_pending(s, how == SUB_ENDED);
    if (s->state == SUB_CLOSED) {
        uvc_ring_drain_into(s, NULL);
    }
    uvc_sub_wake(s);
}

/* ---------------------------------------------------------------- thread ownership */

static int uvc_collect_subs(UvcPubSub *ps, uvc_vec *out);

/* 1 if fut can still be completed by someone (not done, its loop open), else 0. When that
 * cannot be told, 1: the caller then refuses, which is the safe answer. */
static int uvc_future_alive(UvcPubSub *ps, PyObject *fut)
{
    PyObject *done = PyObject_CallMethodNoArgs(fut, ps->s_done);
    if (done == NULL) {
        PyErr_Clear();
        return 1;
    }
    int is_done = (done == Py_True);
    Py_DECREF(done);
    return !is_done && !uvc_future_loop_closed(fut);
}

/* Does a counted wait remain that another thread could still complete? Slow (it visits every
 * subscription), so only asked when another thread comes while waits are counted: a task
 * left suspended when its loop was closed must not bar other threads for good. 1, 0 or -1. */
static int uvc_pubsub_waits_alive(UvcPubSub *ps)
{
    uvc_vec subs, futs;
    uvc_vec_init(&subs);
    uvc_vec_init(&futs);
    int alive = -1;
    if (uvc_collect_subs(ps, &subs) < 0) {
        goto done;
    }
    /* Futures are gathered first: asking them runs Python code, which could unlink. */
    for (Py_ssize_t i = 0; i < subs.n; i++) {
        UvcSubscription *s = (UvcSubscription *)subs.items[i];
        if (s->waiter != NULL && uvc_vec_push(&futs, Py_NewRef(s->waiter)) < 0) {
            Py_DECREF(s->waiter);
            PyErr_NoMemory();
            goto done;
        }
        for (uvc_pending *n = s->pend_head; n != NULL; n = n->next) {
            if (n->fut != NULL && uvc_vec_push(&futs, Py_NewRef(n->fut)) < 0) {
                Py_DECREF(n->fut);
                PyErr_NoMemory();
                goto done;
            }
        }
    }
    alive = 0;
    for (Py_ssize_t i = 0; i < futs.n && !alive; i++) {
        alive = uvc_future_alive(ps, futs.items[i]);
    }
done:
    uvc_vec_clear(&futs);
    uvc_vec_clear(&subs);
    return alive;
}

/* Completing a waiting task's future from another thread would set it there: the loop's
 * call_soon refuses (or, with debug off, the loop is not woken), and the task may never
 * resume. So while futures of this broker are pending (suspended __anext__, blocked
 * publishers), every call that may complete one must come from their thread, and new ones
 * may only be made there: checked before anything changes. */
static int uvc_pubsub_check_thread(UvcPubSub *ps, const char *fname)
{
    if (ps->nwaits > 0 && ps->wait_thread != PyThread_get_thread_ident()) {
        int alive = uvc_pubsub_waits_alive(ps);
        if (alive < 0) {
            return -1;
        }
        if (alive) {
            PyErr_Format(PyExc_RuntimeError,
                         "%s() called from a thread other than the one whose event loop has "
                         "tasks waiting on this PubSub; one thread's loop uses it at a time "
                         "(use loop.call_soon_threadsafe() to hand work over)",
                         fname);
            return -1;
        }
        ps->wait_epoch++; /* every counted wait is stale: stop counting them */
        ps->nwaits = 0;
    }
    return 0;
}

/* Before making a future that another call will complete: count it, in this thread. Returns
 * the epoch to remember with it, after uvc_pubsub_check_thread() succeeded. */
static uint64_t uvc_pubsub_count_wait(UvcPubSub *ps)
{
    ps->wait_thread = PyThread_get_thread_ident();
    ps->nwaits++;
    return ps->wait_epoch;
}

/* ---------------------------------------------------------------- Wait awaitable */

static int wait_traverse(UvcWait *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->sub);
    Py_VISIT(self->fut);
    Py_VISIT(self->fut_iter);
    return 0;
}

/* Forget our future; if the subscription still points at it, nobody waits on it anymore. */
static void wait_forget(UvcWait *self)
{
    if (self->fut != NULL && self->sub != NULL && self->sub->broker != NULL &&
        self->epoch == self->sub->broker->wait_epoch) {
        self->sub->broker->nwaits--;
    }
    if (self->sub != NULL && self->fut != NULL && self->sub->waiter == self->fut) {
        Py_CLEAR(self->sub->waiter);
    }
    Py_CLEAR(self->fut_iter);
    Py_CLEAR(self->fut);
}

static int wait_clear(UvcWait *self)
{
    wait_forget(self);
    Py_CLEAR(self->sub);
    return 0;
}

static void wait_dealloc(UvcWait *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    wait_clear(self);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyObject *uvc_sub_take(UvcSubscription *s);

/* One step: take a message if there is one, end or fail if the subscription did, otherwise
 * suspend on a future from the running loop (created only here, when we must wait). */
static int wait_step(UvcWait *self, PyObject *arg, PyObject **result)
{
    *result = NULL;
    UvcSubscription *s = self->sub;
    if (s == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "cannot reuse an already awaited __anext__()");
        return UVC_SEND_ERROR;
    }
    for (;;) {
        if (self->fut_iter != NULL) {
            PyObject *r = NULL;
            int st = uvc_iter_send(self->fut_iter, arg, &r);
            if (st == UVC_SEND_NEXT) {
                *result = r;
                return UVC_SEND_NEXT;
            }
            wait_forget(self);
            if (st == UVC_SEND_ERROR) {
                Py_CLEAR(self->sub);
                return UVC_SEND_ERROR;
            }
            Py_DECREF(r);
            arg = Py_None;
        }
        if (s->count > 0) {
            if (s->pend_head != NULL && uvc_pubsub_check_thread(s->broker, "__anext__") < 0) {
                return UVC_SEND_ERROR; /* taking would let a blocked publisher in */
            }
            *result = uvc_sub_take(s);
            Py_CLEAR(self->sub);
            return *result != NULL ? UVC_SEND_RETURN : UVC_SEND_ERROR;
        }
        if (s->state == SUB_OVERFLOWED) {
            PyErr_Format(s->broker->st->SubscriberOverflow,
                         "subscriber to %R fell more than %zd messages behind and was disconnected",
                         s->name, s->maxsize);
            Py_CLEAR(self->sub);
            return UVC_SEND_ERROR;
        }
        if (s->state != SUB_ACTIVE) {
            PyErr_SetNone(PyExc_StopAsyncIteration);
            Py_CLEAR(self->sub);
            return UVC_SEND_ERROR;
        }
        if (s->waiter != NULL) {
            /* A stale waiter left by a cancelled task, or by one whose loop was closed
             * under it, may still be here; a live one means two tasks iterate one
             * subscription at once, which we refuse. */
            PyObject *done = PyObject_CallMethodNoArgs(s->waiter, s->broker->s_done);
            if (done == NULL) {
                return UVC_SEND_ERROR;
            }
            int is_done = (done == Py_True);
            Py_DECREF(done);
            if (!is_done && !uvc_future_loop_closed(s->waiter)) {
                PyErr_SetString(PyExc_RuntimeError,
                                "this Subscription is already being awaited by another task");
                return UVC_SEND_ERROR;
            }
            Py_CLEAR(s->waiter);
        }
        if (uvc_pubsub_check_thread(s->broker, "__anext__") < 0) {
            return UVC_SEND_ERROR;
        }
        uvc_state *st = s->broker->st;
        PyObject *loop = PyObject_CallNoArgs(st->get_running_loop);
        if (loop == NULL) {
            return UVC_SEND_ERROR;
        }
        if (loop == Py_None) {
            Py_DECREF(loop);
            PyErr_SetString(PyExc_RuntimeError, "no running event loop");
            return UVC_SEND_ERROR;
        }
        PyObject *fut = PyObject_CallMethodNoArgs(loop, s->broker->s_create_future);
        Py_DECREF(loop);
        if (fut == NULL) {
            return UVC_SEND_ERROR;
        }
        PyAsyncMethods *am = Py_TYPE(fut)->tp_as_async;
        if (am == NULL || am->am_await == NULL) {
            PyErr_Format(PyExc_TypeError, "create_future() returned a non-awaitable %.100s",
                         Py_TYPE(fut)->tp_name);
            Py_DECREF(fut);
            return UVC_SEND_ERROR;
        }
        PyObject *it = am->am_await(fut);
        if (it == NULL) {
            Py_DECREF(fut);
            return UVC_SEND_ERROR;
        }
        if (s->waiter != NULL || s->state != SUB_ACTIVE || s->count > 0) {
            /* create_future() ran code that changed the subscription: look again */
            Py_DECREF(it);
            Py_DECREF(fut);
            continue;
        }
        if (uvc_pubsub_check_thread(s->broker, "__anext__") < 0) {
            Py_DECREF(it);
            Py_DECREF(fut);
            return UVC_SEND_ERROR;
        }
        self->fut = fut;
        self->fut_iter = it;
        self->epoch = uvc_pubsub_count_wait(s->broker);
        s->waiter = Py_NewRef(fut);
    }
}

static PyObject *wait_iternext(UvcWait *self)
{
    PyObject *r;
    int st = wait_step(self, Py_None, &r);
    return uvc_send_result(st, r);
}

#if PY_VERSION_HEX >= 0x030A0000
static PySendResult wait_am_send(UvcWait *self, PyObject *arg, PyObject **result)
{
    return (PySendResult)wait_step(self, arg, result);
}
#endif

static PyObject *wait_send(UvcWait *self, PyObject *arg)
{
    PyObject *r;
    int st = wait_step(self, arg, &r);
    return uvc_send_result(st, r);
}

static PyObject *wait_throw(UvcWait *self, PyObject *const *args, Py_ssize_t nargs)
{
    wait_forget(self);
    Py_CLEAR(self->sub);
    return uvc_raise_thrown(args, nargs);
}

static PyObject *wait_close(UvcWait *self, PyObject *unused)
{
    wait_forget(self);
    Py_CLEAR(self->sub);
    Py_RETURN_NONE;
}

static PyMethodDef wait_methods[] = {
    {"send", (PyCFunction)wait_send, METH_O, NULL},
    {"throw", (PyCFunction)(void (*)(void))wait_throw, METH_FASTCALL, NULL},
    {"close", (PyCFunction)wait_close, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot wait_slots[] = {
    {Py_tp_doc, "The awaitable of a Subscription.__anext__() that has to wait (internal)."},
    {Py_tp_dealloc, wait_dealloc},
    {Py_tp_traverse, wait_traverse},
    {Py_tp_clear, wait_clear},
    {Py_tp_iter, PyObject_SelfIter},
    {Py_tp_iternext, wait_iternext},
    {Py_tp_methods, wait_methods},
    {Py_am_await, PyObject_SelfIter},
#if PY_VERSION_HEX >= 0x030A0000
    {Py_am_send, wait_am_send},
#endif
    {0, NULL},
};

static PyType_Spec wait_spec = {
    .name = "uvcore._uvcore._SubscriptionNext",
    .basicsize = sizeof(UvcWait),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = wait_slots,
};

/* ---------------------------------------------------------------- Subscription type */

/* Pop the next message (new reference) and let a blocked publisher in. */
static PyObject *uvc_sub_take(UvcSubscription *s)
{
    PyObject *msg = uvc_ring_pop(s);
    if (s->pend_head != NULL) {
        uvc_sub_refill(s);
    }
    return msg;
}

static PyObject *sub_anext(UvcSubscription *s)
{
    uvc_state *st = s->broker->st;
    if (s->count > 0) {
        if (s->pend_head != NULL && uvc_pubsub_check_thread(s->broker, "__anext__") < 0) {
            return NULL; /* taking would let a blocked publisher in */
        }
        return uvc_ready_steal(st, uvc_sub_take(s));
    }
    /* Otherwise the awaitable does the rest, including ending or failing: raising from
     * __anext__ itself crashes builtins.anext(it, default) in CPython 3.10-3.13. */
    UvcWait *w = PyObject_GC_New(UvcWait, st->PubSubWaitType);
    if (w == NULL) {
        return NULL;
    }
    w->sub = (UvcSubscription *)Py_NewRef(s);
    w->fut = NULL;
    w->fut_iter = NULL;
    w->epoch = 0;
    PyObject_GC_Track(w);
    return (PyObject *)w;
}

static PyObject *sub_aclose(UvcSubscription *s, PyObject *unused)
{
    if (s->broker != NULL && uvc_pubsub_check_thread(s->broker, "aclose") < 0) {
        return NULL;
    }
    uvc_sub_end(s, SUB_CLOSED);
    return uvc_ready_new(s->broker->st, Py_None);
}

static PyObject *sub_aenter(UvcSubscription *s, PyObject *unused)
{
    return uvc_ready_new(s->broker->st, (PyObject *)s);
}

static PyObject *sub_aexit(UvcSubscription *s, PyObject *const *args, Py_ssize_t nargs)
{
    if (s->broker != NULL && uvc_pubsub_check_thread(s->broker, "__aexit__") < 0) {
        return NULL;
    }
    uvc_sub_end(s, SUB_CLOSED);
    return uvc_ready_new(s->broker->st, Py_False);
}

static PyObject *sub_get_channel(UvcSubscription *s, void *c) { return Py_NewRef(s->name); }
static PyObject *sub_get_pending(UvcSubscription *s, void *c) { return PyLong_FromSsize_t(s->count + s->npending); }
static PyObject *sub_get_dropped(UvcSubscription *s, void *c) { return PyLong_FromUnsignedLongLong(s->dropped); }
static PyObject *sub_get_maxsize(UvcSubscription *s, void *c) { return PyLong_FromSsize_t(s->maxsize); }
static PyObject *sub_get_overflow(UvcSubscription *s, void *c) { return PyUnicode_FromString(overflow_names[s->overflow]); }
static PyObject *sub_get_closed(UvcSubscription *s, void *c) { return PyBool_FromLong(s->state != SUB_ACTIVE); }

static PyObject *sub_get_is_pattern(UvcSubscription *s, void *c)
{
    PyObject *names = s->name;
    if (PyUnicode_Check(names)) {
        return PyBool_FromLong(uvc_glob_is_pattern(names));
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(names); i++) {
        if (uvc_glob_is_pattern(PyTuple_GET_ITEM(names, i))) {
            Py_RETURN_TRUE;
        }
    }
    Py_RETURN_FALSE;
}

static PyObject *sub_repr(UvcSubscription *s)
{
    static const char *const states[] = {"active", "ended", "closed", "overflowed"};
    return PyUnicode_FromFormat("<uvcore.Subscription %R pending=%zd dropped=%llu %s>", s->name,
                                s->count + s->npending, (unsigned long long)s->dropped, states[s->state]);
}

static int sub_traverse(UvcSubscription *s, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(s));
    Py_VISIT(s->broker);
    Py_VISIT(s->name);
    Py_VISIT(s->waiter);
    for (Py_ssize_t i = 0; i < s->count; i++) {
        Py_VISIT(s->buf[(s->head + i) & (s->cap - 1)]);
    }
    for (uvc_pending *n = s->pend_head; n != NULL; n = n->next) {
        Py_VISIT(n->msg);
        Py_VISIT(n->fut);
    }
    return 0;
}

/* PEP 442 finalizer: runs before tp_clear for cyclic garbage and from dealloc otherwise, so
 * this is where a forgotten subscription leaves the broker (the leak-free guarantee). */
static void sub_finalize(UvcSubscription *s)
{
    UVC_EXC_SAVE(exc);
    if (s->broker != NULL) {
        uvc_sub_unlink(s);
        uvc_sub_release_pending(s, 0);
        if (s->state == SUB_ACTIVE) {
            s->state = SUB_CLOSED;
        }
    }
    UVC_EXC_RESTORE(exc);
}

static int sub_clear(UvcSubscription *s)
{
    if (s->broker != NULL) {
        uvc_sub_unlink(s);
        /* Drop pending nodes without calling into futures: they are garbage too. */
        while (s->pend_head != NULL) {
            uvc_pending *node = s->pend_head;
            s->pend_head = node->next;
            if (node->pw != NULL && --node->pw->outstanding == 0) {
                if (node->pw->epoch == s->broker->wait_epoch) {
                    s->broker->nwaits--;
                }
                PyMem_Free(node->pw);
            }
            Py_DECREF(node->msg);
            Py_XDECREF(node->fut);
            PyMem_Free(node);
        }
        s->pend_tail = NULL;
        s->npending = 0;
    }
    uvc_ring_drain_into(s, NULL);
    Py_CLEAR(s->waiter);
    Py_CLEAR(s->name);
    Py_CLEAR(s->broker);
    return 0;
}

static void sub_dealloc(UvcSubscription *s)
{
    if (PyObject_CallFinalizerFromDealloc((PyObject *)s) < 0) {
        return; /* resurrected */
    }
    PyTypeObject *tp = Py_TYPE(s);
    PyObject_GC_UnTrack(s);
    if (s->weakreflist != NULL) {
        PyObject_ClearWeakRefs((PyObject *)s);
    }
    sub_clear(s);
    tp->tp_free(s);
    Py_DECREF(tp);
}

static PyMethodDef sub_methods[] = {
    {"aclose", (PyCFunction)sub_aclose, METH_NOARGS,
     "Unsubscribe now and end the iterator; buffered messages are discarded. Awaitable."},
    {"__aenter__", (PyCFunction)sub_aenter, METH_NOARGS, NULL},
    {"__aexit__", (PyCFunction)(void (*)(void))sub_aexit, METH_FASTCALL, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef sub_getset[] = {
    {"channel", (getter)sub_get_channel, NULL, "The channel or pattern (a tuple if several).", NULL},
    {"pending", (getter)sub_get_pending, NULL, "Messages waiting to be read.", NULL},
    {"dropped", (getter)sub_get_dropped, NULL, "Messages this subscriber lost to its overflow policy.", NULL},
    {"maxsize", (getter)sub_get_maxsize, NULL, "Buffer size (0: unbounded).", NULL},
    {"overflow", (getter)sub_get_overflow, NULL, "The overflow policy.", NULL},
    {"closed", (getter)sub_get_closed, NULL, "True once unsubscribed.", NULL},
    {"is_pattern", (getter)sub_get_is_pattern, NULL, "True if a glob pattern is involved.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMemberDef sub_members[] = {
    {"__weaklistoffset__", T_PYSSIZET, offsetof(UvcSubscription, weakreflist), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot sub_slots[] = {
    {Py_tp_doc, "A subscription to a PubSub channel or pattern: an async iterator of messages.\n\n"
                "Made by PubSub.subscribe(); registered at once. Use `async for`, or\n"
                "`async with` to unsubscribe on exit."},
    {Py_tp_dealloc, sub_dealloc},
    {Py_tp_finalize, sub_finalize},
    {Py_tp_traverse, sub_traverse},
    {Py_tp_clear, sub_clear},
    {Py_tp_repr, sub_repr},
    {Py_tp_methods, sub_methods},
    {Py_tp_getset, sub_getset},
    {Py_tp_members, sub_members},
    {Py_am_aiter, PyObject_SelfIter},
    {Py_am_anext, sub_anext},
    {0, NULL},
};

static PyType_Spec sub_spec = {
    .name = "uvcore.Subscription",
    .basicsize = sizeof(UvcSubscription),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC
#if PY_VERSION_HEX >= 0x030A0000
             | Py_TPFLAGS_DISALLOW_INSTANTIATION
#endif
    ,
    .slots = sub_slots,
};

/* ---------------------------------------------------------------- PubSub: subscribe */

static int uvc_parse_overflow(PyObject *o, uvc_overflow *out)
{
    if (!PyUnicode_Check(o)) {
        PyErr_Format(PyExc_TypeError, "overflow must be a str, not %.100s", Py_TYPE(o)->tp_name);
        return -1;
    }
    for (int i = 0; i < 4; i++) {
        if (PyUnicode_CompareWithASCIIString(o, overflow_names[i]) == 0) {
            *out = (uvc_overflow)i;
            return 0;
        }
    }
    PyErr_Format(PyExc_ValueError,
                 "overflow must be 'drop_oldest', 'drop_newest', 'block' or 'disconnect', not %R", o);
    return -1;
}

static int uvc_parse_maxsize(PyObject *o, Py_ssize_t *out)
{
    if (!PyLong_Check(o) || PyBool_Check(o)) {
        PyErr_Format(PyExc_TypeError, "maxsize must be an int, not %.100s", Py_TYPE(o)->tp_name);
        return -1;
    }
    Py_ssize_t n = PyLong_AsSsize_t(o);
    if (n == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (n < 0) {
        PyErr_Format(PyExc_ValueError, "maxsize must be >= 0 (0 means unbounded), not %zd", n);
        return -1;
    }
    *out = n;
    return 0;
}

/* The names to subscribe to: a tuple of validated exact str, without duplicates. */
static PyObject *uvc_subscribe_names(PyObject *arg)
{
    if (PyUnicode_Check(arg)) {
        PyObject *name = uvc_channel_name(arg, "channel");
        if (name == NULL) {
            return NULL;
        }
        if (uvc_glob_is_pattern(name) && uvc_glob_validate(name) < 0) {
            Py_DECREF(name);
            return NULL;
        }
        PyObject *t = PyTuple_Pack(1, name);
        Py_DECREF(name);
        return t;
    }
    if (PyBytes_Check(arg) || PyByteArray_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "channel must be a str (or an iterable of str), not bytes");
        return NULL;
    }
    PyObject *seq = PySequence_Fast(arg, "channel must be a str or an iterable of str");
    if (seq == NULL) {
        return NULL;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject *out = PyList_New(0);
    PyObject *seen = PySet_New(NULL); /* a set, so that many names stay linear */
    if (out == NULL || seen == NULL) {
        goto error;
    }
    if (n == 0) {
        PyErr_SetString(PyExc_ValueError, "subscribe() needs at least one channel or pattern");
        goto error;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *name = uvc_channel_name(PySequence_Fast_GET_ITEM(seq, i), "channel");
        if (name == NULL) {
            goto error;
        }
        if (uvc_glob_is_pattern(name) && uvc_glob_validate(name) < 0) {
            Py_DECREF(name);
            goto error;
        }
        Py_ssize_t before = PySet_GET_SIZE(seen);
        if (PySet_Add(seen, name) < 0 ||
            (PySet_GET_SIZE(seen) != before && PyList_Append(out, name) < 0)) {
            Py_DECREF(name);
            goto error;
        }
        Py_DECREF(name);
    }
    Py_DECREF(seq);
    Py_DECREF(seen);
    PyObject *t = PyList_AsTuple(out);
    Py_DECREF(out);
    return t;
error:
    Py_DECREF(seq);
    Py_XDECREF(out);
    Py_XDECREF(seen);
    return NULL;
}

static PyObject *ps_subscribe(UvcPubSub *ps, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"channel", "maxsize", "overflow", NULL};
    PyObject *arg, *maxsize_o = NULL, *overflow_o = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|$OO:subscribe", kwlist, &arg, &maxsize_o, &overflow_o)) {
        return NULL;
    }
    Py_ssize_t maxsize = ps->def_maxsize;
    uvc_overflow overflow = ps->def_overflow;
    if (maxsize_o != NULL && maxsize_o != Py_None && uvc_parse_maxsize(maxsize_o, &maxsize) < 0) {
        return NULL;
    }
    if (overflow_o != NULL && overflow_o != Py_None && uvc_parse_overflow(overflow_o, &overflow) < 0) {
        return NULL;
    }
    if (ps->closed) {
        PyErr_SetString(PyExc_RuntimeError, "subscribe() on a closed PubSub");
        return NULL;
    }
    PyObject *names = uvc_subscribe_names(arg);
    if (names == NULL) {
        return NULL;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(names);
    uvc_vec created;
    uvc_vec_init(&created);

    UvcSubscription *s = PyObject_GC_New(UvcSubscription, ps->st->SubscriptionType);
    if (s == NULL) {
        Py_DECREF(names);
        return NULL;
    }
    s->broker = (UvcPubSub *)Py_NewRef(ps);
    if (n == 1 && PyUnicode_Check(arg)) {
        s->name = Py_NewRef(PyTuple_GET_ITEM(names, 0));
    } else {
        s->name = Py_NewRef(names);
    }
    s->links = &s->link0;
    s->nlinks = 0;
    s->buf = NULL;
    s->cap = s->head = s->count = 0;
    s->maxsize = maxsize;
    s->pend_head = s->pend_tail = NULL;
    s->npending = 0;
    s->waiter = NULL;
    s->last_seq = 0;
    s->dropped = 0;
    s->overflow = overflow;
    s->state = SUB_ACTIVE;
    s->weakreflist = NULL;
    PyObject_GC_Track(s);
    if (n > 1) {
        s->links = PyMem_Calloc(n, sizeof(uvc_link));
        if (s->links == NULL) {
            s->links = &s->link0;
            PyErr_NoMemory();
            goto error;
        }
    }

    /* Link into each channel/pattern (making it if new); collect the new ones for the bridge. */
    ps->nsubs++;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *name = PyTuple_GET_ITEM(names, i);
        int is_pat = uvc_glob_is_pattern(name);
        PyObject *table = is_pat ? ps->patterns : ps->channels;
        UvcChannel *chan = (UvcChannel *)PyDict_GetItemWithError(table, name);
        int fresh = 0;
        if (chan == NULL) {
            if (PyErr_Occurred()) {
                goto link_error;
            }
            if (is_pat && ps->npats == ps->pats_cap) {
                Py_ssize_t ncap = ps->pats_cap ? ps->pats_cap * 2 : 8;
                UvcChannel **np = PyMem_Realloc(ps->pats, ncap * sizeof(UvcChannel *));
                if (np == NULL) {
                    PyErr_NoMemory();
                    goto link_error;
                }
                ps->pats = np;
                ps->pats_cap = ncap;
            }
            chan = uvc_channel_new(ps->st, name, is_pat);
            if (chan == NULL) {
                goto link_error;
            }
            if (PyDict_SetItem(table, name, (PyObject *)chan) < 0) {
                Py_DECREF(chan);
                goto link_error;
            }
            Py_DECREF(chan); /* the table holds it */
            if (is_pat) {
                ps->pats[ps->npats++] = chan;
            }
            fresh = 1;
        }
        uvc_link *l = &s->links[s->nlinks++];
        l->sub = s;
        l->chan = (UvcChannel *)Py_NewRef(chan);
        l->prev = chan->head.prev;
        l->next = &chan->head;
        chan->head.prev->next = l;
        chan->head.prev = l;
        chan->nsubs++;
        chan->nblock += (overflow == OV_BLOCK);
        if (fresh && ps->bridge != NULL && uvc_vec_push(&created, Py_NewRef(chan)) < 0) {
            Py_DECREF(chan);
            PyErr_NoMemory();
            goto link_error;
        }
    }
    Py_DECREF(names);
    for (Py_ssize_t i = 0; i < created.n; i++) {
        if (uvc_bridge_notify(ps, (UvcChannel *)created.items[i], 1) < 0) {
            uvc_vec_clear(&created);
            uvc_sub_end(s, SUB_CLOSED);
            Py_DECREF(s);
            return NULL;
        }
    }
    uvc_vec_clear(&created);
    return (PyObject *)s;

link_error:
    uvc_vec_clear(&created);
    if (s->nlinks == 0) {
        ps->nsubs--;
    } else {
        uvc_sub_unlink(s);
    }
error:
    s->state = SUB_CLOSED;
    Py_DECREF(names);
    Py_DECREF(s);
    return NULL;
}

/* ---------------------------------------------------------------- PubSub: publish */

/* State of one fan-out. While it walks the channel lists no Python code may run (it could
 * unlink the very link being visited), so wake-ups, unlinks and reference drops that could
 * run code are collected here and done afterwards. */
typedef struct {
    UvcPubSub *ps;
    PyObject *msg;
    uint64_t seq;
    Py_ssize_t receivers;
    PyObject *fut;    /* blocked-publisher future, or NULL */
    uvc_pubwait *pw;
    int queue;        /* a backend's publish_local_queued: full "block" subscribers queue it */
    uvc_vec wake;       /* futures of suspended __anext__ */
    uvc_vec garbage;    /* messages dropped from buffers */
    uvc_vec disconnect; /* subscriptions that overflowed with "disconnect" */
} uvc_fanout;

static void uvc_deliver(uvc_fanout *f, UvcSubscription *s)
{
    UvcPubSub *ps = f->ps;
    if (s->last_seq == f->seq) {
        return; /* several of its patterns matched: once is enough */
    }
    s->last_seq = f->seq;
    if (s->state != SUB_ACTIVE) {
        return;
    }
    if (!uvc_sub_full(s)) {
        if (uvc_ring_push(s, f->msg) < 0) {
            s->dropped++;
            ps->dropped++;
            return;
        }
        f->receivers++;
        ps->delivered++;
        if (s->waiter != NULL) {
            if (uvc_vec_push(&f->wake, s->waiter) == 0) {
                s->waiter = NULL;
            }
        }
        return;
    }
    switch (s->overflow) {
    case OV_DROP_OLDEST: {
        if (s->count == 0) { /* only pending messages: cannot happen without "block" */
            break;
        }
        PyObject *old = s->buf[s->head];
        s->head = (s->head + 1) & (s->cap - 1);
        s->buf[(s->head + s->count - 1) & (s->cap - 1)] = Py_NewRef(f->msg);
        if (uvc_vec_push(&f->garbage, old) < 0) {
            Py_DECREF(old); /* out of memory: accept the small re-entrancy risk */
        }
        s->dropped++;
        ps->dropped++;
        f->receivers++;
        ps->delivered++;
        return;
    }
    case OV_BLOCK:
        if (f->fut != NULL || f->queue) {
            uvc_pending *node = PyMem_Malloc(sizeof(uvc_pending));
            if (node != NULL) {
                node->next = NULL;
                node->msg = Py_NewRef(f->msg);
                node->fut = Py_XNewRef(f->fut);
                node->pw = f->pw;
                if (f->pw != NULL) {
                    f->pw->outstanding++;
                }
                if (s->pend_tail != NULL) {
                    s->pend_tail->next = node;
                } else {
                    s->pend_head = node;
                }
                s->pend_tail = node;
                s->npending++;
                f->receivers++;
                ps->delivered++;
                return;
            }
        }
        break; /* publish_nowait refused earlier; only re-entrancy gets here: drop it */
    case OV_DISCONNECT:
        s->state = SUB_OVERFLOWED;
        s->dropped += (uint64_t)s->count + 1;
        ps->dropped += (uint64_t)s->count + 1;
        uvc_ring_drain_into(s, &f->garbage);
        if (uvc_vec_push(&f->disconnect, Py_NewRef(s)) < 0) {
            Py_DECREF(s); /* stays linked but inert (not ACTIVE) until it is closed */
        }
        if (s->waiter != NULL && uvc_vec_push(&f->wake, s->waiter) == 0) {
            s->waiter = NULL;
        }
        return;
    case OV_DROP_NEWEST:
        break;
    }
    s->dropped++;
    ps->dropped++;
}

static void uvc_deliver_channel(uvc_fanout *f, UvcChannel *chan)
{
    for (uvc_link *l = chan->head.next; l != &chan->head; l = l->next) {
        uvc_deliver(f, l->sub);
    }
}

/* Does a subscriber with overflow="block" lack room for one more message? */
static int uvc_channel_blocks(UvcChannel *chan)
{
    if (chan->nblock == 0) {
        return 0;
    }
    for (uvc_link *l = chan->head.next; l != &chan->head; l = l->next) {
        UvcSubscription *s = l->sub;
        if (s->overflow == OV_BLOCK && s->state == SUB_ACTIVE && uvc_sub_full(s)) {
            return 1;
        }
    }
    return 0;
}

/* How a publish treats a full subscriber with overflow="block". */
typedef enum {
    PUB_AWAIT,  /* publish(): wait for room (returns an awaitable) */
    PUB_NOWAIT, /* publish_nowait(): refuse with QueueFull, delivering nothing */
    PUB_QUEUE   /* publish_local_queued(): queue it there, nobody waits (returns the count) */
} uvc_pub_mode;

/* Fan msg out to channel's subscribers and the matching patterns' ones. Returns a new
 * reference: for PUB_AWAIT a coroutine-like awaitable giving the receiver count (which
 * waits on the publisher's future when it must wait for room), otherwise the count. */
static PyObject *uvc_publish(UvcPubSub *ps, PyObject *const *args, Py_ssize_t nargs, uvc_pub_mode mode,
                             const char *fname)
{
    int nowait = (mode != PUB_AWAIT);
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "%s() takes exactly 2 arguments (channel, message) (%zd given)",
                     fname, nargs);
        return NULL;
    }
    if (ps->closed) {
        PyErr_Format(PyExc_RuntimeError, "%s() on a closed PubSub", fname);
        return NULL;
    }
    if (uvc_pubsub_check_thread(ps, fname) < 0) {
        return NULL;
    }
    PyObject *channel = uvc_channel_name(args[0], "channel");
    if (channel == NULL) {
        return NULL;
    }
    PyObject *result = NULL;
    uvc_fanout f;
    f.ps = ps;
    f.msg = args[1];
    f.receivers = 0;
    f.fut = NULL;
    f.pw = NULL;
    f.queue = (mode == PUB_QUEUE);
    PyObject *waiting = NULL; /* made before the fan-out, so nothing fails after it */
    uvc_vec_init(&f.wake);
    uvc_vec_init(&f.garbage);
    uvc_vec_init(&f.disconnect);
    uvc_vec targets; /* strong references: Python code may run before delivery */
    uvc_vec_init(&targets);

    UvcChannel *exact = (UvcChannel *)PyDict_GetItemWithError(ps->channels, channel);
    if (exact == NULL && PyErr_Occurred()) {
        goto done;
    }
    if (exact != NULL && uvc_vec_push(&targets, Py_NewRef(exact)) < 0) {
        Py_DECREF(exact);
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < ps->npats; i++) {
        UvcChannel *p = ps->pats[i];
        if (uvc_glob_match(p->name, channel)) {
            if (uvc_vec_push(&targets, Py_NewRef(p)) < 0) {
                Py_DECREF(p);
                PyErr_NoMemory();
                goto done;
            }
        }
    }

    int blocks = 0;
    for (Py_ssize_t i = 0; i < targets.n && !blocks; i++) {
        blocks = uvc_channel_blocks((UvcChannel *)targets.items[i]);
    }
    if (blocks && mode != PUB_QUEUE) {
        if (mode == PUB_NOWAIT) {
            PyObject *qf = PyObject_GetAttrString(ps->st->asyncio, "QueueFull");
            if (qf != NULL) {
                PyErr_Format(qf, "a subscriber to %R with overflow='block' is full; "
                                 "use 'await publish()' to wait for room", channel);
                Py_DECREF(qf);
            }
            goto done;
        }
        PyObject *loop = PyObject_CallNoArgs(ps->st->get_running_loop);
        if (loop == NULL) {
            goto done;
        }
        if (loop == Py_None) {
            Py_DECREF(loop);
            PyErr_SetString(PyExc_RuntimeError,
                            "publish() must wait for a full subscriber but there is no running event loop");
            goto done;
        }
        f.fut = PyObject_CallMethodNoArgs(loop, ps->s_create_future);
        Py_DECREF(loop);
        if (f.fut == NULL) {
            goto done;
        }
        f.pw = PyMem_Malloc(sizeof(uvc_pubwait));
        if (f.pw == NULL) {
            PyErr_NoMemory();
            goto done;
        }
        f.pw->outstanding = 0;
        f.pw->receivers = 0;
        f.pw->epoch = 0;
        if (ps->closed) { /* create_future() ran code that closed us */
            PyErr_Format(PyExc_RuntimeError, "%s() on a closed PubSub", fname);
            goto done;
        }
        if (uvc_pubsub_check_thread(ps, fname) < 0) { /* the same: it may have waited elsewhere */
            goto done;
        }
        if ((waiting = uvc_pubwaiting_new(ps->st, f.fut)) == NULL) {
            goto done;
        }
    }

    /* The fan-out proper: pure C from here to the end of the loop. */
    f.seq = ++ps->seq;
    ps->published++;
    for (Py_ssize_t i = 0; i < targets.n; i++) {
        uvc_deliver_channel(&f, (UvcChannel *)targets.items[i]);
    }

    if (f.pw != NULL && f.pw->outstanding > 0) {
        f.pw->receivers = f.receivers;
        f.pw->epoch = uvc_pubsub_count_wait(ps);
        f.pw = NULL; /* now owned by the pending nodes */
        result = waiting;
        waiting = NULL;
    } else if (nowait) {
        result = PyLong_FromSsize_t(f.receivers);
    } else {
        result = uvc_ready_steal(ps->st, PyLong_FromSsize_t(f.receivers));
    }

done:;
    UVC_EXC_SAVE(exc);
    for (Py_ssize_t i = 0; i < f.disconnect.n; i++) {
        UvcSubscription *s = (UvcSubscription *)f.disconnect.items[i];
        uvc_sub_unlink(s);
        uvc_sub_release_pending(s, 1);
    }
    for (Py_ssize_t i = 0; i < f.wake.n; i++) {
        uvc_wake(ps, f.wake.items[i]);
    }
    uvc_vec_free(&f.wake);
    uvc_vec_clear(&f.disconnect);
    uvc_vec_clear(&f.garbage);
    uvc_vec_clear(&targets);
    PyMem_Free(f.pw);
    Py_XDECREF(f.fut);
    Py_XDECREF(waiting);
    Py_DECREF(channel);
    UVC_EXC_RESTORE(exc);
    return result;
}

static PyObject *ps_publish(UvcPubSub *ps, PyObject *const *args, Py_ssize_t nargs)
{
    return uvc_publish(ps, args, nargs, PUB_AWAIT, "publish");
}

static PyObject *ps_publish_nowait(UvcPubSub *ps, PyObject *const *args, Py_ssize_t nargs)
{
    return uvc_publish(ps, args, nargs, PUB_NOWAIT, "publish_nowait");
}

static PyObject *ps_publish_local_queued(UvcPubSub *ps, PyObject *const *args, Py_ssize_t nargs)
{
    return uvc_publish(ps, args, nargs, PUB_QUEUE, "publish_local_queued");
}

/* ---------------------------------------------------------------- PubSub: the rest */

/* Every subscription still linked, as new references (for closing them outside the lists). */
static int uvc_collect_subs(UvcPubSub *ps, uvc_vec *out)
{
    PyObject *tables[2] = {ps->channels, ps->patterns};
    for (int t = 0; t < 2; t++) {
        if (tables[t] == NULL) {
            continue;
        }
        Py_ssize_t pos = 0;
        PyObject *key, *value;
        while (PyDict_Next(tables[t], &pos, &key, &value)) {
            UvcChannel *chan = (UvcChannel *)value;
            for (uvc_link *l = chan->head.next; l != &chan->head; l = l->next) {
                if (uvc_vec_push(out, Py_NewRef(l->sub)) < 0) {
                    Py_DECREF(l->sub);
                    PyErr_NoMemory();
                    return -1;
                }
            }
        }
    }
    return 0;
}

static PyObject *uvc_pubsub_close(UvcPubSub *ps)
{
    ps->closed = 1;
    uvc_vec subs;
    uvc_vec_init(&subs);
    int rc = uvc_collect_subs(ps, &subs);
    for (Py_ssize_t i = 0; i < subs.n; i++) {
        uvc_sub_end((UvcSubscription *)subs.items[i], SUB_ENDED);
    }
    uvc_vec_clear(&subs);
    if (rc < 0) {
        return NULL;
    }
    return uvc_ready_new(ps->st, Py_None);
}

static PyObject *ps_aclose(UvcPubSub *ps, PyObject *unused)
{
    if (uvc_pubsub_check_thread(ps, "aclose") < 0) {
        return NULL;
    }
    return uvc_pubsub_close(ps);
}

static PyObject *ps_aenter(UvcPubSub *ps, PyObject *unused) { return uvc_ready_new(ps->st, (PyObject *)ps); }

static PyObject *ps_aexit(UvcPubSub *ps, PyObject *const *args, Py_ssize_t nargs)
{
    if (uvc_pubsub_check_thread(ps, "__aexit__") < 0) {
        return NULL;
    }
    PyObject *r = uvc_pubsub_close(ps);
    if (r == NULL) {
        return NULL;
    }
    Py_DECREF(r);
    return uvc_ready_new(ps->st, Py_False);
}

static int uvc_dict_set_u64(PyObject *d, const char *key, unsigned long long v)
{
    PyObject *o = PyLong_FromUnsignedLongLong(v);
    if (o == NULL) {
        return -1;
    }
    int r = PyDict_SetItemString(d, key, o);
    Py_DECREF(o);
    return r;
}

static PyObject *ps_stats(UvcPubSub *ps, PyObject *unused)
{
    PyObject *d = PyDict_New();
    if (d == NULL) {
        return NULL;
    }
    if (uvc_dict_set_u64(d, "channels", ps->channels ? (unsigned long long)PyDict_GET_SIZE(ps->channels) : 0) < 0 ||
        uvc_dict_set_u64(d, "patterns", ps->patterns ? (unsigned long long)PyDict_GET_SIZE(ps->patterns) : 0) < 0 ||
        uvc_dict_set_u64(d, "subscribers", (unsigned long long)ps->nsubs) < 0 ||
        uvc_dict_set_u64(d, "published", ps->published) < 0 ||
        uvc_dict_set_u64(d, "delivered", ps->delivered) < 0 ||
        uvc_dict_set_u64(d, "dropped", ps->dropped) < 0) {
        Py_DECREF(d);
        return NULL;
    }
    return d;
}

static PyObject *ps_numsub(UvcPubSub *ps, PyObject *name)
{
    if (!PyUnicode_Check(name)) {
        PyErr_Format(PyExc_TypeError, "channel must be a str, not %.100s", Py_TYPE(name)->tp_name);
        return NULL;
    }
    PyObject *table = uvc_glob_is_pattern(name) ? ps->patterns : ps->channels;
    UvcChannel *chan = table ? (UvcChannel *)PyDict_GetItemWithError(table, name) : NULL;
    if (chan == NULL && PyErr_Occurred()) {
        return NULL;
    }
    return PyLong_FromSsize_t(chan ? chan->nsubs : 0);
}

static PyObject *ps_keys(PyObject *table)
{
    return table ? PyDict_Keys(table) : PyList_New(0);
}

static PyObject *ps_channels(UvcPubSub *ps, PyObject *unused) { return ps_keys(ps->channels); }
static PyObject *ps_patterns(UvcPubSub *ps, PyObject *unused) { return ps_keys(ps->patterns); }

static PyObject *ps_set_bridge(UvcPubSub *ps, PyObject *bridge)
{
    if (bridge == Py_None) {
        Py_CLEAR(ps->bridge);
        Py_RETURN_NONE;
    }
    if (!PyObject_HasAttrString(bridge, "on_first_subscriber") ||
        !PyObject_HasAttrString(bridge, "on_last_subscriber")) {
        PyErr_SetString(PyExc_TypeError,
                        "a bridge needs on_first_subscriber(name, is_pattern) and "
                        "on_last_subscriber(name, is_pattern) methods");
        return NULL;
    }
    Py_XSETREF(ps->bridge, Py_NewRef(bridge));
    Py_RETURN_NONE;
}

static PyObject *ps_get_closed(UvcPubSub *ps, void *c) { return PyBool_FromLong(ps->closed); }

static PyObject *ps_repr(UvcPubSub *ps)
{
    return PyUnicode_FromFormat("<%s channels=%zd patterns=%zd subscribers=%zd%s>", Py_TYPE(ps)->tp_name,
                                ps->channels ? PyDict_GET_SIZE(ps->channels) : 0,
                                ps->patterns ? PyDict_GET_SIZE(ps->patterns) : 0, ps->nsubs,
                                ps->closed ? " closed" : "");
}

static PyObject *ps_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"maxsize", "overflow", NULL};
    PyObject *maxsize_o = NULL, *overflow_o = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|$OO:PubSub", kwlist, &maxsize_o, &overflow_o)) {
        return NULL;
    }
    Py_ssize_t maxsize = 1024;
    uvc_overflow overflow = OV_DROP_OLDEST;
    if (maxsize_o != NULL && uvc_parse_maxsize(maxsize_o, &maxsize) < 0) {
        return NULL;
    }
    if (overflow_o != NULL && uvc_parse_overflow(overflow_o, &overflow) < 0) {
        return NULL;
    }
    uvc_state *st = uvc_state_from_type(type);
    if (st == NULL) {
        return NULL;
    }
    UvcPubSub *ps = (UvcPubSub *)type->tp_alloc(type, 0);
    if (ps == NULL) {
        return NULL;
    }
    ps->st = st;
    ps->module = Py_NewRef(PyType_GetModule(st->PubSubType));
    ps->def_maxsize = maxsize;
    ps->def_overflow = overflow;
    if ((ps->channels = PyDict_New()) == NULL || (ps->patterns = PyDict_New()) == NULL ||
        (ps->s_set_result = PyUnicode_InternFromString("set_result")) == NULL ||
        (ps->s_create_future = PyUnicode_InternFromString("create_future")) == NULL ||
        (ps->s_done = PyUnicode_InternFromString("done")) == NULL ||
        (ps->s_cancelled = PyUnicode_InternFromString("cancelled")) == NULL) {
        Py_DECREF(ps);
        return NULL;
    }
    return (PyObject *)ps;
}

static int ps_traverse(UvcPubSub *ps, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(ps));
    Py_VISIT(ps->module);
    Py_VISIT(ps->channels);
    Py_VISIT(ps->patterns);
    Py_VISIT(ps->bridge);
    return 0;
}

static int ps_clear(UvcPubSub *ps)
{
    /* Subscriptions hold the broker, so it is only cleared as part of cyclic garbage, after
     * their finalizers unlinked them. The pattern array borrows from the dict. */
    ps->npats = 0;
    Py_CLEAR(ps->channels);
    Py_CLEAR(ps->patterns);
    Py_CLEAR(ps->bridge);
    return 0;
}

static void ps_dealloc(UvcPubSub *ps)
{
    PyTypeObject *tp = Py_TYPE(ps);
    PyObject_GC_UnTrack(ps);
    if (ps->weakreflist != NULL) {
        PyObject_ClearWeakRefs((PyObject *)ps);
    }
    ps_clear(ps);
    PyMem_Free(ps->pats);
    ps->pats = NULL;
    Py_CLEAR(ps->s_set_result);
    Py_CLEAR(ps->s_create_future);
    Py_CLEAR(ps->s_done);
    Py_CLEAR(ps->s_cancelled);
    Py_CLEAR(ps->module);
    tp->tp_free(ps);
    Py_DECREF(tp);
}

static PyMethodDef ps_methods[] = {
    {"subscribe", (PyCFunction)(void (*)(void))ps_subscribe, METH_VARARGS | METH_KEYWORDS,
     "subscribe(channel_or_pattern, *, maxsize=1024, overflow='drop_oldest') -> Subscription\n\n"
     "Registered at once: nothing published after this call is missed. A name with * ? [ or \\\n"
     "is a glob pattern; an iterable of names subscribes to all of them (each message once)."},
    {"publish", (PyCFunction)(void (*)(void))ps_publish, METH_FASTCALL,
     "publish(channel, message) -> awaitable of the number of local receivers.\n\n"
     "The message is delivered when called; awaiting waits for room in subscribers with\n"
     "overflow='block'. The awaitable behaves as a coroutine (asyncio.create_task takes it)."},
    {"publish_nowait", (PyCFunction)(void (*)(void))ps_publish_nowait, METH_FASTCALL,
     "publish_nowait(channel, message) -> number of local receivers.\n\n"
     "Raises asyncio.QueueFull (delivering nothing) if a subscriber with overflow='block' is full."},
    {"publish_local", (PyCFunction)(void (*)(void))ps_publish, METH_FASTCALL,
     "Like publish(), but always delivers locally: for backends injecting received messages."},
    {"publish_local_nowait", (PyCFunction)(void (*)(void))ps_publish_nowait, METH_FASTCALL,
     "Like publish_nowait(), but always delivers locally: for backends."},
    {"publish_local_queued", (PyCFunction)(void (*)(void))ps_publish_local_queued, METH_FASTCALL,
     "publish_local_queued(channel, message) -> number of local receivers.\n\n"
     "For backends that cannot wait: delivers at once like publish_local_nowait(), but a full\n"
     "subscriber with overflow='block' gets the message in its own pending queue (in order,\n"
     "never dropped) instead of refusing, so it holds back only itself."},
    {"stats", (PyCFunction)ps_stats, METH_NOARGS,
     "stats() -> dict: channels, patterns, subscribers, published, delivered, dropped."},
    {"numsub", (PyCFunction)ps_numsub, METH_O, "numsub(channel_or_pattern) -> local subscriber count."},
    {"channels", (PyCFunction)ps_channels, METH_NOARGS, "Channels that have local subscribers."},
    {"patterns", (PyCFunction)ps_patterns, METH_NOARGS, "Patterns that have local subscribers."},
    {"aclose", (PyCFunction)ps_aclose, METH_NOARGS,
     "Close the broker (awaitable): every iterator ends after what it has buffered; publish\n"
     "and subscribe then raise RuntimeError."},
    {"_set_bridge", (PyCFunction)ps_set_bridge, METH_O,
     "Attach a backend (or None): its on_first_subscriber(name, is_pattern) and\n"
     "on_last_subscriber(name, is_pattern) are called synchronously, possibly from a\n"
     "finalizer, so they must only schedule work."},
    {"__aenter__", (PyCFunction)ps_aenter, METH_NOARGS, NULL},
    {"__aexit__", (PyCFunction)(void (*)(void))ps_aexit, METH_FASTCALL, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef ps_getset[] = {
    {"closed", (getter)ps_get_closed, NULL, "True once aclose() was called.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMemberDef ps_members[] = {
    {"__weaklistoffset__", T_PYSSIZET, offsetof(UvcPubSub, weakreflist), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot ps_slots[] = {
    {Py_tp_doc, "PubSub(*, maxsize=1024, overflow='drop_oldest')\n\n"
                "An in-memory publish/subscribe broker with channels and glob patterns.\n"
                "maxsize/overflow are the defaults for subscribe()."},
    {Py_tp_new, ps_new},
    {Py_tp_dealloc, ps_dealloc},
    {Py_tp_traverse, ps_traverse},
    {Py_tp_clear, ps_clear},
    {Py_tp_repr, ps_repr},
    {Py_tp_methods, ps_methods},
    {Py_tp_getset, ps_getset},
    {Py_tp_members, ps_members},
    {0, NULL},
};

static PyType_Spec ps_spec = {
    .name = "uvcore.PubSub",
    .basicsize = sizeof(UvcPubSub),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_BASETYPE,
    .slots = ps_slots,
};

/* ---------------------------------------------------------------- registration */

/* A type used only internally: not added to the module; instances cannot be made from Python. */
static int uvc_internal_type(PyObject *m, PyType_Spec *spec, PyTypeObject **slot)
{
    PyObject *tp = PyType_FromModuleAndSpec(m, spec, NULL);
    if (tp == NULL) {
        return -1;
    }
    ((PyTypeObject *)tp)->tp_new = NULL;
    *slot = (PyTypeObject *)tp;
    return 0;
}

int uvc_pubsub_module_init(PyObject *m, uvc_state *st)
{
    if (uvc_add_type(m, &ps_spec, NULL, &st->PubSubType) < 0 ||
        uvc_add_type(m, &sub_spec, NULL, &st->SubscriptionType) < 0 ||
        uvc_internal_type(m, &channel_spec, &st->PubSubChannelType) < 0 ||
        uvc_internal_type(m, &ready_spec, &st->PubSubReadyType) < 0 ||
        uvc_internal_type(m, &wait_spec, &st->PubSubWaitType) < 0 ||
        uvc_internal_type(m, &pubwaiting_spec, &st->PubSubPubWaitingType) < 0) {
        return -1;
    }
#if PY_VERSION_HEX < 0x030A0000
    st->SubscriptionType->tp_new = NULL;
#endif
    st->SubscriberOverflow = PyErr_NewExceptionWithDoc(
        "uvcore.SubscriberOverflow",
        "Raised by a Subscription with overflow='disconnect' that fell too far behind; it has\n"
        "been unsubscribed.",
        NULL, NULL);
    if (st->SubscriberOverflow == NULL) {
        return -1;
    }
    Py_INCREF(st->SubscriberOverflow);
    if (PyModule_AddObject(m, "SubscriberOverflow", st->SubscriberOverflow) < 0) {
        Py_DECREF(st->SubscriberOverflow);
        return -1;
    }
    return 0;
}
