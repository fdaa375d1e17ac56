/* poll.c: add_reader/add_writer/remove_reader/remove_writer on uv_poll_t. One Poller per
 * file descriptor holds the reader and writer handles; the loop keeps pollers in a dict
 * keyed by fd. Callbacks run directly from libuv's poll phase, not via the ready queue.
 * The uv_poll_t is owned by its Poller until uv_close, whose callback frees the memory.
 *
 * User code may close a watched fd at any time, and the number may then be reused by a new
 * file. libuv aborts when its next poll passes a closed fd to epoll_ctl, and a watcher left
 * on a reused number would steal the new file's events. So a Poller remembers which file it
 * watches (st_dev/st_ino) and is checked where libuv would touch the fd: before every poll
 * for the pollers (re)started since the last one, when a watcher is added to it, and when
 * a transport or the signal wake-up takes over its number. A stale poller is dropped
 * without a callback, as asyncio's selector never reports a closed fd again. */
#include "loop.h"

typedef struct {
    PyObject_HEAD
    UvcLoop *loop;          /* borrowed: the loop owns the dict holding this poller */
    uv_poll_t *poll;        /* NULL once closed */
    int fd;
    int started;            /* in loop->pollers_started: epoll_ctl pending at the next poll */
    dev_t dev;              /* the file watched: the fd number alone may be reused */
    ino_t ino;
    UvcHandle *reader;
    UvcHandle *writer;
    PyObject *fileobj;      /* the object (not int) last passed to add_*, or NULL: as asyncio's
                             * selector key, it finds the watcher once the object is closed */
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
    Py_CLEAR(po->fileobj);
}

static int poller_traverse(UvcPoller *po, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(po));
    Py_VISIT(po->reader);
    Py_VISIT(po->writer);
    Py_VISIT(po->fileobj);
    return 0;
}

static int poller_clear(UvcPoller *po)
{
    Py_CLEAR(po->reader);
    Py_CLEAR(po->writer);
    Py_CLEAR(po->fileobj);
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
    if (!po->started) {
        /* uv_poll_start always re-adds the fd to epoll at the next poll: check it first */
        if (PyList_Append(po->loop->pollers_started, (PyObject *)po) < 0) {
            uv_poll_stop(po->poll);
            return -1;
        }
        po->started = 1;
    }
    return 0;
}

/* Drop a poller whose fd no longer is the file it watched. Its live handles are marked
 * cancelled (so a sock_* clean-up cannot remove the watcher of the fd's new owner) and
 * appended to `dropped` for the loop to fail the sock_* futures waiting on them. The slot in
 * libuv's watcher table is still this poller's (no new libuv watcher can take an occupied
 * slot, and the places that create fds for libuv check first), so uv_poll_stop's
 * EPOLL_CTL_DEL cannot touch a registration of the new owner. */
static int poller_drop(UvcPoller *po, PyObject *dropped)
{
    int r = 0;
    UvcHandle *sides[2] = {po->reader, po->writer};
    for (int i = 0; i < 2; i++) {
        if (sides[i] != NULL && !sides[i]->cancelled) {
            sides[i]->cancelled = 1;
            if (PyList_Append(dropped, (PyObject *)sides[i]) < 0) {
                r = -1;
            }
        }
    }
    PyObject *key = PyLong_FromLong(po->fd);
    if (key == NULL) {
        return -1;
    }
    Py_INCREF(po);
    poller_close(po);
    PyObject *cur = PyDict_GetItemWithError(po->loop->pollers, key);
    if (cur == (PyObject *)po) {
        r |= PyDict_DelItem(po->loop->pollers, key);
    } else if (cur == NULL && PyErr_Occurred()) {
        r = -1;
    }
    Py_DECREF(po);
    Py_DECREF(key);
    return r;
}

/* Tell the sock_* helpers which of their watchers were dropped (their futures then fail
 * with EBADF instead of waiting forever). Consumes nothing; reports its own errors. */
static void poll_report_dropped(UvcLoop *loop, PyObject *dropped)
{
    if (PyList_GET_SIZE(dropped) == 0) {
        return;
    }
    PyObject *r = PyObject_CallMethod((PyObject *)loop, "_fd_watchers_dropped", "O", dropped);
    if (r == NULL) {
        if (PyErr_ExceptionMatches(PyExc_AttributeError)) {
            PyErr_Clear(); /* the bare C loop has no sock_* helpers */
        } else {
            uvc_loop_handle_callback_error(loop, "Error dropping a closed fd's watchers", NULL, NULL);
        }
    }
    Py_XDECREF(r);
}

/* The poller of fd, if any and stale, is dropped: 1 dropped, 0 none or live, -1 error. */
static int poll_drop_if_stale(UvcLoop *loop, PyObject *key, int fd, PyObject *dropped)
{
    UvcPoller *po = (UvcPoller *)PyDict_GetItemWithError(loop->pollers, key);
    if (po == NULL) {
        return PyErr_Occurred() ? -1 : 0;
    }
    if (po->poll == NULL || !uvc_fd_is_stale(fd, po->dev, po->ino)) {
        return 0;
    }
    return poller_drop(po, dropped) < 0 ? -1 : 1;
}

int uvc_poll_release_fd(UvcLoop *loop, int fd)
{
    if (loop->uv != NULL) {
        /* a transport whose socket was closed under it */
        uvc_stream_release_fd(loop, fd);
        uvc_udp_release_fd(loop, fd);
    }
    if (loop->pollers == NULL || PyDict_GET_SIZE(loop->pollers) == 0) {
        return 0;
    }
    PyObject *key = PyLong_FromLong(fd);
    PyObject *dropped = key ? PyList_New(0) : NULL;
    if (dropped == NULL) {
        Py_XDECREF(key);
        return -1;
    }
    int r = poll_drop_if_stale(loop, key, fd, dropped);
    Py_DECREF(key);
    if (r >= 0) {
        poll_report_dropped(loop, dropped);
    }
    Py_DECREF(dropped);
    return r < 0 ? -1 : 0;
}

void uvc_poll_check_started(UvcLoop *loop)
{
    PyObject *started = loop->pollers_started;
    /* Reporting runs Python code, which may start more pollers: loop until none is left,
     * since libuv adds every one of them to epoll right after this returns. */
    while (started != NULL && PyList_GET_SIZE(started) > 0) {
        PyObject *dropped = PyList_New(0);
        if (dropped == NULL) {
            uvc_loop_handle_callback_error(loop, "Error checking watched fds", NULL, NULL);
        }
        Py_ssize_t n = PyList_GET_SIZE(started);
        for (Py_ssize_t i = 0; i < n; i++) {
            UvcPoller *po = (UvcPoller *)PyList_GET_ITEM(started, i);
            po->started = 0;
            if (po->poll == NULL || !uvc_fd_is_stale(po->fd, po->dev, po->ino)) {
                continue;
            }
            if (dropped == NULL || poller_drop(po, dropped) < 0) {
                /* never hand a closed fd to libuv, even without memory to report it */
                poller_close(po);
                PyErr_Clear();
            }
        }
        if (PyList_SetSlice(started, 0, n, NULL) < 0) {
            PyErr_Clear();
        }
        if (dropped != NULL) {
            poll_report_dropped(loop, dropped);
            Py_DECREF(dropped);
        }
        started = loop->pollers_started;
    }
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
    /* A poller left on this number by a closed file must not take the new file's handles */
    if (uvc_poll_release_fd(loop, fd) < 0) {
        goto error;
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
        po->started = 0;
        po->reader = po->writer = NULL;
        po->fileobj = NULL;
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
        if (uvc_fd_identity(fd, &po->dev, &po->ino) < 0) {
            PyErr_SetFromErrno(PyExc_OSError);
            Py_DECREF(po);
            goto error;
        }
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
    if (!PyLong_Check(args[0])) {
        Py_XSETREF(po->fileobj, Py_NewRef(args[0]));
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

/* The fd a watcher was added with for `obj`, an object whose fileno() no longer works (a
 * socket closed meanwhile), or -1; as asyncio's selectors look a closed file object up. */
static int poll_fd_by_object(UvcLoop *loop, PyObject *obj)
{
    PyObject *key, *value;
    Py_ssize_t pos = 0;
    while (PyDict_Next(loop->pollers, &pos, &key, &value)) {
        UvcPoller *po = (UvcPoller *)value;
        if (po->fileobj == obj) {
            return po->fd;
        }
    }
    return -1;
}

PyObject *uvc_poll_remove(UvcLoop *loop, PyObject *fdobj, int writer)
{
    int fd = poll_fd_of(fdobj);
    if (fd < 0) {
        if (PyLong_Check(fdobj) || !PyErr_ExceptionMatches(PyExc_ValueError) ||
            (fd = poll_fd_by_object(loop, fdobj)) < 0) {
            return NULL;
        }
        PyErr_Clear();
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
    if (loop->pollers_started != NULL) {
        PyList_SetSlice(loop->pollers_started, 0, PyList_GET_SIZE(loop->pollers_started), NULL);
    }
}
