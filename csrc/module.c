/* module.c: uvcore._uvcore module initialisation. Owns the module state: it imports the
 * asyncio objects every concept needs, calls each concept's registration function, and
 * traverses/clears every state field so the module is collectable. */
#include "uvcore.h"

uvc_state *uvc_state_from_type(PyTypeObject *tp)
{
#if PY_VERSION_HEX >= 0x030B0000
    PyObject *m = PyType_GetModuleByDef(tp, &uvc_module_def);
    if (m == NULL) {
        return NULL;
    }
    return uvc_state_of_module(m);
#else
    /* PyType_GetModuleByDef is 3.11+: walk the MRO for one of our heap types. */
    PyObject *mro = tp->tp_mro;
    for (Py_ssize_t i = 0; mro != NULL && i < PyTuple_GET_SIZE(mro); i++) {
        PyTypeObject *base = (PyTypeObject *)PyTuple_GET_ITEM(mro, i);
        if (!(base->tp_flags & Py_TPFLAGS_HEAPTYPE)) {
            continue;
        }
        PyObject *m = ((PyHeapTypeObject *)base)->ht_module;
        if (m != NULL && PyModule_GetDef(m) == &uvc_module_def) {
            return uvc_state_of_module(m);
        }
    }
    PyErr_Format(PyExc_TypeError, "%s is not a uvcore type", tp->tp_name);
    return NULL;
#endif
}

int uvc_add_type(PyObject *m, PyType_Spec *spec, PyObject *bases, PyTypeObject **slot)
{
    /* Python 3.9 takes only a tuple of bases; 3.10+ also a single type. */
    PyObject *tuple = NULL;
    if (bases != NULL && !PyTuple_Check(bases)) {
        if ((tuple = PyTuple_Pack(1, bases)) == NULL) {
            return -1;
        }
        bases = tuple;
    }
    PyObject *tp = PyType_FromModuleAndSpec(m, spec, bases);
    Py_XDECREF(tuple);
    if (tp == NULL) {
        return -1;
    }
    if (PyModule_AddType(m, (PyTypeObject *)tp) < 0) {
        Py_DECREF(tp);
        return -1;
    }
    *slot = (PyTypeObject *)tp;
    return 0;
}

static PyObject *import_attr(const char *module, const char *name)
{
    PyObject *mod = PyImport_ImportModule(module);
    if (mod == NULL) {
        return NULL;
    }
    PyObject *attr = PyObject_GetAttrString(mod, name);
    Py_DECREF(mod);
    return attr;
}

#define UVC_STATE_FIELDS(X)                                                                  \
    X(asyncio) X(asyncio_Future) X(asyncio_Task) X(CancelledError) X(InvalidStateError)    \
    X(get_running_loop) X(get_event_loop) X(LoopType) X(HandleType) X(TimerHandleType)     \
    X(PollerType) X(kwnames_loop) X(kwnames_context) X(kwnames_loop_name)                  \
    X(kwnames_loop_name_ctx) X(str_call_exception_handler)                                \
    X(QueueType) X(LifoQueueType) X(PriorityQueueType) X(QueueEmpty) X(QueueFull)         \
    X(QueueShutDown) X(PubSubType) X(SubscriptionType) X(SubscriberOverflow)              \
    X(QueueAwaitableType) X(queue_cache)                                                   \
    X(PubSubChannelType) X(PubSubReadyType) X(PubSubWaitType) X(PubSubPubWaitingType)      \
    X(StreamTransportType) X(ReadPipeTransportType) X(WritePipeTransportType) X(ServerType) X(stream_read_buffer) X(BufferedProtocol)         \
    X(str_data_received) X(str_eof_received) X(str_get_buffer) X(str_buffer_updated)       \
    X(str_connection_made) X(str_connection_lost) X(str_pause_writing) X(str_resume_writing) \
    X(UDPTransportType) X(ProcessType) X(DnsRequestType) X(FanoutSinkType)

static int uvc_module_traverse(PyObject *m, visitproc visit, void *arg)
{
    uvc_state *st = uvc_state_of_module(m);
#define VISIT(f) Py_VISIT(st->f);
    UVC_STATE_FIELDS(VISIT)
#undef VISIT
    return 0;
}

static int uvc_module_clear(PyObject *m)
{
    uvc_state *st = uvc_state_of_module(m);
#define CLEAR(f) Py_CLEAR(st->f);
    UVC_STATE_FIELDS(CLEAR)
#undef CLEAR
    uvc_handle_freelist_clear(st);
    return 0;
}

static void uvc_module_free(void *m) { uvc_module_clear((PyObject *)m); }

static int uvc_module_exec(PyObject *m)
{
    uvc_state *st = uvc_state_of_module(m);
    if ((st->asyncio = PyImport_ImportModule("asyncio")) == NULL ||
        (st->asyncio_Future = PyObject_GetAttrString(st->asyncio, "Future")) == NULL ||
        (st->asyncio_Task = PyObject_GetAttrString(st->asyncio, "Task")) == NULL ||
        (st->CancelledError = PyObject_GetAttrString(st->asyncio, "CancelledError")) == NULL ||
        (st->InvalidStateError = PyObject_GetAttrString(st->asyncio, "InvalidStateError")) == NULL ||
        (st->get_event_loop = PyObject_GetAttrString(st->asyncio, "get_event_loop")) == NULL ||
        (st->get_running_loop = import_attr("asyncio.events", "_get_running_loop")) == NULL) {
        return -1;
    }
    if (uvc_handle_module_init(m, st) < 0 || uvc_loop_module_init(m, st) < 0 ||
        uvc_queue_module_init(m, st) < 0 || uvc_pubsub_module_init(m, st) < 0 ||
        uvc_stream_module_init(m, st) < 0 || uvc_udp_module_init(m, st) < 0 ||
        uvc_process_module_init(m, st) < 0 || uvc_dns_module_init(m, st) < 0 ||
        uvc_fanout_module_init(m, st) < 0) {
        return -1;
    }
    if (PyModule_AddStringConstant(m, "libuv_version", uv_version_string()) < 0) {
        return -1;
    }
    return 0;
}

static PyModuleDef_Slot uvc_module_slots[] = {
    {Py_mod_exec, uvc_module_exec},
    {0, NULL},
};

PyModuleDef uvc_module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "uvcore._uvcore",
    .m_doc = "The C core of uvcore: a libuv event loop, Queue and PubSub.",
    .m_size = sizeof(uvc_state),
    .m_slots = uvc_module_slots,
    .m_traverse = uvc_module_traverse,
    .m_clear = uvc_module_clear,
    .m_free = uvc_module_free,
};

PyMODINIT_FUNC PyInit__uvcore(void) { return PyModuleDef_Init(&uvc_module_def); }
