/* poll.c: add_reader/add_writer/remove_reader/remove_writer on uv_poll_t. One Poller per
 * file descriptor holds the reader and writer handles; the loop keeps pollers in a dict
 * keyed by fd. Callbacks run directly from libuv's poll phase, not via the ready queue.
 * The uv_poll_t is owned by its Poller until uv_close, whose callback frees the memory. */
#include "loop.h"

typedef struct {
    PyObject_HEAD
    UvcLoop *loop;          /* borrowed: the loop owns the dict holding this poller */
    uv_poll_t *poll;        /* NULL once closed */
    int fd;
    UvcHandle *reader;
    UvcHandle *writer;
} UvcPoller;

static void poller_free_cb(uv_handle_t *h) { PyMem_RawFree(h); }

static void poller_close(UvcPoller *po)
{
    if (po->poll != NULL) {
        po->poll->data = NULL;
        uv_poll_stop(po->poll);
        uv_close((uv_handle_t *)po->poll, poller_free_cb);
        po->poll = NULL;
    }
    Py_CLEAR(po->reader);
    Py_CLEAR(po->writer);
}

static int poller_traverse(UvcPoller *po, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(po));
    Py_VISIT(po->reader);
    Py_VISIT(po->writer);
    return 0;
}

static int poller_clear(UvcPoller *po)
{
    Py_CLEAR(po->reader);
    Py_CLEAR(po->writer);
    return 0;
}

static void poller_dealloc(UvcPoller *po)
{
    PyTypeObject *tp = Py_TYPE(po);
    PyObject_GC_UnTrack(po);
    poller_close(po);
    tp->tp_free(po);
    Py_DECREF(tp);
}

static PyType_Slot poller_slots[] = {
    {Py_tp_dealloc, poller_dealloc},
    {Py_tp_traverse, poller_traverse},
    {Py_tp_clear, poller_clear},
    {0, NULL},
};

PyType_Spec uvc_poller_spec = {
    .name = "uvcore._uvcore._Poller",
    .basicsize = sizeof(UvcPoller),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = poller_slots,
};

static void poller_on_event(uv_poll_t *p, int status, int events);

/* Re-arm the uv_poll for the handles left, or drop the poller when none are. */
static int poller_update(UvcPoller *po, PyObject *key)
{
    int events = (po->reader ? UV_READABLE : 0) | (po->writer ? UV_WRITABLE : 0);
    if (events == 0) {
        poller_close(po);
        return PyDict_DelItem(po->loop->pollers, key);
    }
    int err = uv_poll_start(po->poll, events, poller_on_event);
    if (err < 0) {
        errno = -err;
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    return 0;
}

static void poller_fire(UvcPoller *po, int writer)
{
    UvcHandle *h = writer ? po->writer : po->reader;
    if (h == NULL) {
        return;
    }
    if (h->cancelled) {
        /* asyncio drops a cancelled reader/writer when its fd next fires */
        PyObject *key = PyLong_FromLong(po->fd);
        if (writer) {
            Py_CLEAR(po->writer);
        } else {
            Py_CLEAR(po->reader);
        }
        if (key == NULL || poller_update(po, key) < 0) {
            uvc_loop_handle_callback_error(po->loop, "Error updating a cancelled fd watcher", NULL, NULL);
        }
        Py_XDECREF(key);
        return;
    }
    Py_INCREF(h);
    if (uvc_handle_run(h) < 0) {
        uvc_loop_handle_callback_error(po->loop, "", NULL, NULL);
    }
    Py_DECREF(h);
}

static void poller_on_event(uv_poll_t *p, int status, int events)
{
    UvcPoller *po = p->data;
    if (po == NULL) {
        return;
    }
    uvc_loop_acquire(po->loop);
    if (status < 0) {
        /* An error on the fd: wake both sides so their read/write sees the error. */
        events = UV_READABLE | UV_WRITABLE;
    }
    Py_INCREF(po);
    if (events & (UV_READABLE | UV_DISCONNECT)) {
        poller_fire(po, 0);
    }
    if ((events & UV_WRITABLE) && po->poll != NULL) {
        poller_fire(po, 1);
    }
    Py_DECREF(po);
}

/* The fd of an int or an object with fileno(); ValueError("Invalid file object") otherwise,
 * as asyncio's selectors raise it. */
static int poll_fd_of(PyObject *obj)
{
    int fd = PyObject_AsFileDescriptor(obj);
    if (fd < 0 && PyErr_ExceptionMatches(PyExc_TypeError)) {
        PyErr_Clear();
        PyErr_Format(PyExc_ValueError, "Invalid file object: %R", obj);
    }
    return fd;
}

PyObject *uvc_poll_add(UvcLoop *loop, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames, int writer)
{
    const char *name = writer ? "add_writer" : "add_reader";
    if (kwnames != NULL && PyTuple_GET_SIZE(kwnames) > 0) {
        PyErr_Format(PyExc_TypeError, "%s() takes no keyword arguments", name);
        return NULL;
    }
    if (nargs < 2) {
        PyErr_Format(PyExc_TypeError, "%s() takes fd, callback and *args", name);
        return NULL;
    }
    int fd = poll_fd_of(args[0]);
    if (fd < 0) {
        return NULL;
    }
    if (!PyCallable_Check(args[1])) {
        PyErr_Format(PyExc_TypeError, "a callable object was expected by %s(), got %R", name, args[1]);
        return NULL;
    }
    PyObject *key = PyLong_FromLong(fd);
    if (key == NULL) {
        return NULL;
    }
    UvcPoller *po = (UvcPoller *)PyDict_GetItemWithError(loop->pollers, key);
    if (po == NULL) {
        if (PyErr_Occurred()) {
            goto error;
        }
        po = PyObject_GC_New(UvcPoller, loop->st->PollerType);
        if (po == NULL) {
            goto error;
        }
        po->loop = loop;
        po->fd = fd;
        po->reader = po->writer = NULL;
        po->poll = PyMem_RawMalloc(sizeof(uv_poll_t));
        PyObject_GC_Track(po);
        if (po->poll == NULL) {
            Py_DECREF(po);
            PyErr_NoMemory();
            goto error;
        }
        int err = uv_poll_init(loop->uv, po->poll, fd);
        if (err < 0) {
            PyMem_RawFree(po->poll);
            po->poll = NULL;
            Py_DECREF(po);
            if (err == UV_EEXIST) {
                PyErr_Format(PyExc_RuntimeError, "File descriptor %d is used by transport", fd);
            } else {
                errno = -err;
                PyErr_SetFromErrno(PyExc_OSError);
            }
            goto error;
        }
        po->poll->data = po;
        int r = PyDict_SetItem(loop->pollers, key, (PyObject *)po);
        Py_DECREF(po); /* the dict owns it now */
        if (r < 0) {
            goto error;
        }
    }
    UvcHandle *h = uvc_handle_new(loop->st, loop->st->HandleType, (PyObject *)loop, args[1], args + 2,
                                  nargs - 2, NULL);
    if (h == NULL) {
        goto error;
    }
    UvcHandle **slot = writer ? &po->writer : &po->reader;
    UvcHandle *old = *slot;
    *slot = h;
    if (old != NULL) {
        old->cancelled = 1;
        Py_DECREF(old);
    }
    if (poller_update(po, key) < 0) {
        goto error;
    }
    Py_DECREF(key);
    return Py_NewRef(h);
error:
    Py_DECREF(key);
    return NULL;
}

PyObject *uvc_poll_remove(UvcLoop *loop, PyObject *fdobj, int writer)
{
    int fd = poll_fd_of(fdobj);
    if (fd < 0) {
        return NULL;
    }
    PyObject *key = PyLong_FromLong(fd);
    if (key == NULL) {
        return NULL;
    }
    UvcPoller *po = (UvcPoller *)PyDict_GetItemWithError(loop->pollers, key);
    if (po == NULL) {
        Py_DECREF(key);
        if (PyErr_Occurred()) {
            return NULL;
        }
        PyObject *tr = uvc_stream_find_fd(loop, fd);
        if (tr != NULL) {
            PyErr_Format(PyExc_RuntimeError, "File descriptor %d is used by transport %R", fd, tr);
            return NULL;
        }
        Py_RETURN_FALSE;
    }
    Py_INCREF(po);
    UvcHandle **slot = writer ? &po->writer : &po->reader;
    int had = *slot != NULL;
    if (had) {
        (*slot)->cancelled = 1;
        Py_CLEAR(*slot);
    }
    int r = poller_update(po, key);
    Py_DECREF(po);
    Py_DECREF(key);
    if (r < 0) {
        return NULL;
    }
    return PyBool_FromLong(had);
}

void uvc_poll_close_all(UvcLoop *loop)
{
    if (loop->pollers == NULL) {
        return;
    }
    PyObject *key, *value;
    Py_ssize_t pos = 0;
    while (PyDict_Next(loop->pollers, &pos, &key, &value)) {
        poller_close((UvcPoller *)value);
    }
    PyDict_Clear(loop->pollers);
}
