/* uvcore.h: what the C files of uvcore._uvcore share: the module state (heap types,
 * exception types, cached asyncio objects), compatibility shims for Python 3.9-3.13, and
 * each concept's registration function, called once from module.c. */
#ifndef UVCORE_H
#define UVCORE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <uv.h>
#include <structmember.h>

#if PY_VERSION_HEX < 0x030A0000
static inline PyObject *uvc_newref(PyObject *o) { Py_INCREF(o); return o; }
static inline PyObject *uvc_xnewref(PyObject *o) { Py_XINCREF(o); return o; }
#define Py_NewRef(o) uvc_newref((PyObject *)(o))
#define Py_XNewRef(o) uvc_xnewref((PyObject *)(o))
#define Py_IsNone(o) ((o) == Py_None)
#endif

#if PY_VERSION_HEX < 0x030C0000
/* 3.12 added the single-object exception API; older Pythons get it from Fetch/Restore. */
static inline PyObject *PyErr_GetRaisedException_compat(void)
{
    PyObject *t, *v, *tb;
    PyErr_Fetch(&t, &v, &tb);
    if (t == NULL) {
        return NULL;
    }
    PyErr_NormalizeException(&t, &v, &tb);
    if (tb != NULL) {
        PyException_SetTraceback(v, tb);
    }
    Py_DECREF(t);
    Py_XDECREF(tb);
    return v;
}
static inline void PyErr_SetRaisedException_compat(PyObject *exc)
{
    if (exc == NULL) {
        return;
    }
    PyObject *tb = PyException_GetTraceback(exc);
    PyErr_Restore(Py_NewRef((PyObject *)Py_TYPE(exc)), exc, tb);
}
#else
#define PyErr_GetRaisedException_compat PyErr_GetRaisedException
#define PyErr_SetRaisedException_compat PyErr_SetRaisedException
#endif
#if PY_VERSION_HEX < 0x03090000
#error "uvcore needs Python 3.9 or newer"
#endif

/* The instance dict of a transport (asyncio's transports are Python objects: code sets
 * attributes on them and tests patch their methods). Python 3.11 caches a method lookup on an
 * object with a dict slot only when the dict exists, and an empty dict shares its keys with
 * every other empty dict, so one cache entry serves all transports: make it at creation there.
 * 3.12+ cache the lookup for a dict slot still empty, and 3.9/3.10 do not cache at all: the
 * dict is made on the first attribute set. Returns 0, or -1 with an exception. */
static inline int uvc_instance_dict_init(PyObject **slot)
{
#if PY_VERSION_HEX >= 0x030B0000 && PY_VERSION_HEX < 0x030C0000
    *slot = PyDict_New();
    return *slot == NULL ? -1 : 0;
#else
    (void)slot;
    return 0;
#endif
}

typedef struct {
    /* module.c */
    PyObject *asyncio;               /* the asyncio module */
    PyObject *asyncio_Future;        /* asyncio.Future (the C one when available) */
    PyObject *asyncio_Task;
    PyObject *CancelledError;
    PyObject *InvalidStateError;
    PyObject *get_running_loop;      /* asyncio.events._get_running_loop: None if none */
    PyObject *get_event_loop;        /* asyncio.get_event_loop */

    /* loop.c, handle.c, timer.c, poll.c */
    PyTypeObject *LoopType;
    PyTypeObject *HandleType;
    PyTypeObject *TimerHandleType;
    PyTypeObject *PollerType;
    PyObject *kwnames_loop;          /* ("loop",) */
    PyObject *kwnames_context;       /* ("context",) */
    PyObject *kwnames_loop_name;     /* ("loop", "name") */
    PyObject *kwnames_loop_name_ctx; /* ("loop", "name", "context") */
    PyObject *str_call_exception_handler;
    struct UvcHandle *handle_freelist; /* handle.c: dead handles kept for reuse, linked */
    int handle_numfree;               /*   through their callback field */
    int signal_pending;               /* loop.c: a signal with a loop handler arrived */

    /* queue.c */
    PyTypeObject *QueueType;
    PyTypeObject *LifoQueueType;
    PyTypeObject *PriorityQueueType;
    PyObject *QueueEmpty;
    PyObject *QueueFull;
    PyObject *QueueShutDown;
    PyTypeObject *QueueAwaitableType; /* what put()/get()/join() return */
    PyObject *queue_cache;           /* tuple: deque and heapq callables, interned names */
    void *queue_extra;               /* reserved for queue.c's own needs */

    /* pubsub.c */
    PyTypeObject *PubSubType;
    PyTypeObject *SubscriptionType;
    PyObject *SubscriberOverflow;
    PyTypeObject *PubSubChannelType;  /* internal: a channel/pattern and its subscriber list */
    PyTypeObject *PubSubReadyType;    /* internal: awaitable done at once (message waiting) */
    PyTypeObject *PubSubWaitType;     /* internal: awaitable of an __anext__ that must wait */
    PyTypeObject *PubSubPubWaitingType; /* internal: awaitable of a publish() that must wait */
    void *pubsub_extra;              /* reserved for pubsub.c's own needs */

    /* stream.c, tcp.c, unix.c, server.c: stream transports and listeners */
    PyTypeObject *StreamTransportType;
    PyTypeObject *ReadPipeTransportType;  /* pipe transports: one-way StreamTransport layouts */
    PyTypeObject *WritePipeTransportType;
    PyTypeObject *ServerType;        /* server.c's Listener (one listening socket) */
    void *stream_extra;              /* UvcLink *: registry of open transports/listeners */
    PyObject *stream_read_buffer;    /* bytearray every plain-Protocol read goes through */
    PyObject *BufferedProtocol;      /* asyncio.BufferedProtocol */
    PyObject *str_data_received;
    PyObject *str_eof_received;
    PyObject *str_get_buffer;
    PyObject *str_buffer_updated;
    PyObject *str_connection_made;
    PyObject *str_connection_lost;
    PyObject *str_pause_writing;
    PyObject *str_resume_writing;

    /* udp.c, process.c: datagram transports and child processes */
    PyTypeObject *UDPTransportType;
    PyTypeObject *ProcessType;

    /* dns.c */
    PyTypeObject *DnsRequestType;

    /* wsfanout.c */
    PyTypeObject *FanoutSinkType;
} uvc_state;

extern PyModuleDef uvc_module_def;

/* The module state of a heap type defined by this module, or of a subclass of one.
 * Borrowed; never NULL for our own types. Objects on hot paths cache it in a field
 * and keep a strong reference to the module so the state outlives them. */
uvc_state *uvc_state_from_type(PyTypeObject *tp);
static inline uvc_state *uvc_state_of_module(PyObject *m) { return (uvc_state *)PyModule_GetState(m); }

/* Each concept registers its types and objects on the module. 0 on success, -1 with an
 * exception set. Traverse/clear of the state fields each one owns is done by module.c. */
int uvc_loop_module_init(PyObject *m, uvc_state *st);     /* loop.c (+handle.c, timer.c, poll.c) */
int uvc_handle_module_init(PyObject *m, uvc_state *st);   /* handle.c */
int uvc_queue_module_init(PyObject *m, uvc_state *st);    /* queue.c */
int uvc_pubsub_module_init(PyObject *m, uvc_state *st);   /* pubsub.c */
int uvc_stream_module_init(PyObject *m, uvc_state *st);   /* stream.c and friends */
int uvc_udp_module_init(PyObject *m, uvc_state *st);      /* udp.c */
int uvc_process_module_init(PyObject *m, uvc_state *st);  /* process.c */
int uvc_dns_module_init(PyObject *m, uvc_state *st);      /* dns.c */
int uvc_fanout_module_init(PyObject *m, uvc_state *st);   /* wsfanout.c */
/* handle.c: free the dead handles kept for reuse (module clear/free). */
void uvc_handle_freelist_clear(uvc_state *st);

/* Add a heap type made from spec to the module; stores it in *slot (a new reference). */
int uvc_add_type(PyObject *m, PyType_Spec *spec, PyObject *bases, PyTypeObject **slot);

#endif
