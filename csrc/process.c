/* process.c: child processes on uv_spawn. A Process owns one uv_process_t; libuv reaps the
 * child (its own SIGCHLD watcher, so no asyncio child watcher is involved) and the exit
 * callback hands the return code to a Python callable. Pipes, the SubprocessTransport and
 * the Popen-only options live in python/uvcore/_subprocess.py. */
#include "loop.h"

#include <signal.h>
#include <string.h>
#include <pythread.h>

/* Ownership: the uv_process_t is embedded in the Process. While the handle is open the
 * Process holds a reference to itself, dropped by proc_on_close (uv_close's callback). */
typedef struct {
    PyObject_HEAD
    uvc_state *st;
    PyObject *module;
    UvcLoop *loop;          /* strong */
    PyObject *on_exit;      /* on_exit(returncode), called once from the exit callback */
    PyObject *weakreflist;
    uv_process_t uv;
    long pid;
    long returncode;
    int exited;
    int handle_open;
    int self_ref;
} UvcProcess;

static void proc_on_close(uv_handle_t *h)
{
    UvcProcess *p = h->data;
    uvc_loop_acquire(p->loop);
    if (p->self_ref) {
        p->self_ref = 0;
        Py_DECREF(p);
    }
}

static void proc_close_handle(UvcProcess *p)
{
    if (!p->handle_open) {
        return;
    }
    p->handle_open = 0;
    if (p->loop->uv == NULL) {
        if (p->self_ref) {
            p->self_ref = 0;
            Py_DECREF(p);
        }
        return;
    }
    uv_close((uv_handle_t *)&p->uv, proc_on_close);
}

static void proc_on_exit(uv_process_t *h, int64_t exit_status, int term_signal)
{
    UvcProcess *p = h->data;
    uvc_loop_acquire(p->loop);
    Py_INCREF(p);
    p->exited = 1;
    p->returncode = term_signal ? -(long)term_signal : (long)exit_status;
    proc_close_handle(p);
    PyObject *cb = p->on_exit;
    p->on_exit = NULL;
    if (cb != NULL) {
        PyObject *rc = PyLong_FromLong(p->returncode);
        PyObject *res = rc ? PyObject_CallOneArg(cb, rc) : NULL;
        Py_XDECREF(rc);
        if (res == NULL) {
            uvc_loop_handle_callback_error(p->loop, "Exception in process exit callback", NULL, NULL);
        }
        Py_XDECREF(res);
        Py_DECREF(cb);
    }
    Py_DECREF(p);
}

/* ---- argument conversion (all memory is freed by spawn_args_free) ------------------------ */

typedef struct {
    char **argv;
    char **env;
    PyObject *keep;  /* list of bytes objects the char pointers point into */
} SpawnArgs;

static void spawn_args_free(SpawnArgs *a)
{
    PyMem_Free(a->argv);
    PyMem_Free(a->env);
    Py_XDECREF(a->keep);
}

/* bytes for a str/bytes/PathLike, kept alive in a->keep; borrowed char* or NULL. */
static char *spawn_fs_string(SpawnArgs *a, PyObject *o, const char *what)
{
    PyObject *b = NULL;
    if (!PyUnicode_FSConverter(o, &b)) {
        if (PyErr_ExceptionMatches(PyExc_TypeError)) {
            PyErr_Format(PyExc_TypeError, "%s must be str, bytes or os.PathLike, not %.100s", what,
                         Py_TYPE(o)->tp_name);
        }
        return NULL;
    }
    int r = PyList_Append(a->keep, b);
    Py_DECREF(b);
    return r < 0 ? NULL : PyBytes_AS_STRING(b);
}

static char **spawn_string_array(SpawnArgs *a, PyObject *seq, const char *what)
{
    PyObject *fast = PySequence_Fast(seq, what);
    if (fast == NULL) {
        return NULL;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    char **arr = PyMem_Calloc((size_t)n + 1, sizeof(char *));
    if (arr == NULL) {
        Py_DECREF(fast);
        PyErr_NoMemory();
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        arr[i] = spawn_fs_string(a, PySequence_Fast_GET_ITEM(fast, i), what);
        if (arr[i] == NULL) {
            PyMem_Free(arr);
            Py_DECREF(fast);
            return NULL;
        }
    }
    Py_DECREF(fast);
    return arr;
}

/* ---- Process._spawn ---------------------------------------------------------------------- */

/* Process._spawn(loop, file, args, cwd, env, stdio, uid, gid, detached, on_exit):
 * file is what execvp runs; args the argv list; env None (inherit) or a list of "K=V";
 * stdio a list of parent fds the child gets as 0, 1, 2, ... (-1: /dev/null, for 0-2 only);
 * uid/gid -1 to keep. Raises OSError (FileNotFoundError, PermissionError, ...) like Popen. */
static PyObject *proc_spawn(PyTypeObject *tp, PyObject *args)
{
    PyObject *loop, *file, *argv, *cwd, *env, *stdio, *on_exit;
    int uid, gid, detached;
    if (!PyArg_ParseTuple(args, "OOOOOOiipO:_spawn", &loop, &file, &argv, &cwd, &env, &stdio, &uid, &gid,
                          &detached, &on_exit)) {
        return NULL;
    }
    uvc_state *st = uvc_state_from_type(tp);
    if (st == NULL) {
        return NULL;
    }
    if (!PyObject_TypeCheck(loop, st->LoopType)) {
        PyErr_SetString(PyExc_TypeError, "_spawn() needs a uvcore loop");
        return NULL;
    }
    UvcLoop *lp = (UvcLoop *)loop;
    if (uvc_loop_check_closed(lp) < 0) {
        return NULL;
    }
    if (!PyCallable_Check(on_exit)) {
        PyErr_SetString(PyExc_TypeError, "on_exit must be callable");
        return NULL;
    }
    if (!PyList_Check(stdio)) {
        PyErr_SetString(PyExc_TypeError, "stdio must be a list of file descriptors");
        return NULL;
    }
    SpawnArgs a = {NULL, NULL, PyList_New(0)};
    uv_stdio_container_t *containers = NULL;
    UvcProcess *p = NULL;
    if (a.keep == NULL) {
        return NULL;
    }
    uv_process_options_t opts;
    memset(&opts, 0, sizeof(opts));
    opts.exit_cb = proc_on_exit;
    if ((opts.file = spawn_fs_string(&a, file, "executable")) == NULL) {
        goto error;
    }
    if ((a.argv = spawn_string_array(&a, argv, "args")) == NULL) {
        goto error;
    }
    if (a.argv[0] == NULL) {
        PyErr_SetString(PyExc_ValueError, "args must not be empty");
        goto error;
    }
    opts.args = a.argv;
    if (env != Py_None) {
        if ((a.env = spawn_string_array(&a, env, "env")) == NULL) {
            goto error;
        }
        opts.env = a.env;
    }
    if (cwd != Py_None && (opts.cwd = spawn_fs_string(&a, cwd, "cwd")) == NULL) {
        goto error;
    }
    Py_ssize_t nstdio = PyList_GET_SIZE(stdio);
    containers = PyMem_Calloc((size_t)(nstdio ? nstdio : 1), sizeof(uv_stdio_container_t));
    if (containers == NULL) {
        PyErr_NoMemory();
        goto error;
    }
    for (Py_ssize_t i = 0; i < nstdio; i++) {
        long fd = PyLong_AsLong(PyList_GET_ITEM(stdio, i));
        if (fd == -1 && PyErr_Occurred()) {
            goto error;
        }
        if (fd < 0) {
            containers[i].flags = UV_IGNORE;
        } else {
            containers[i].flags = UV_INHERIT_FD;
            containers[i].data.fd = (int)fd;
        }
    }
    opts.stdio = containers;
    opts.stdio_count = (int)nstdio;
    if (uid >= 0) {
        opts.flags |= UV_PROCESS_SETUID;
        opts.uid = (uv_uid_t)uid;
    }
    if (gid >= 0) {
        opts.flags |= UV_PROCESS_SETGID;
        opts.gid = (uv_gid_t)gid;
    }
    if (detached) {
        opts.flags |= UV_PROCESS_DETACHED; /* setsid(): start_new_session=True */
    }

    p = (UvcProcess *)tp->tp_alloc(tp, 0);
    if (p == NULL) {
        goto error;
    }
    p->st = st;
    p->module = Py_NewRef(PyType_GetModule(st->LoopType));
    p->loop = (UvcLoop *)Py_NewRef(loop);
    p->on_exit = Py_NewRef(on_exit);
    p->pid = -1;
    p->uv.data = p;
    int err = uv_spawn(lp->uv, &p->uv, &opts);
    /* uv_spawn initialises the handle even when it fails: it must be closed either way. */
    p->handle_open = 1;
    p->self_ref = 1;
    Py_INCREF(p);
    if (err < 0) {
        Py_CLEAR(p->on_exit);
        proc_close_handle(p);
        PyObject *exc = PyObject_CallFunction(PyExc_OSError, "isO", -err, uv_strerror(err), file);
        if (exc != NULL) {
            PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
            Py_DECREF(exc);
        }
        goto error;
    }
    p->pid = (long)p->uv.pid;
    PyMem_Free(containers);
    spawn_args_free(&a);
    return (PyObject *)p;
error:
    Py_XDECREF(p);
    PyMem_Free(containers);
    spawn_args_free(&a);
    return NULL;
}

static int proc_check_thread(UvcProcess *p)
{
    if (p->loop == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Process objects are made by the loop's subprocess methods");
        return -1;
    }
    unsigned long tid = p->loop->thread_id;
    if (tid != 0 && tid != PyThread_get_thread_ident()) {
        PyErr_SetString(PyExc_RuntimeError,
                        "Non-thread-safe operation invoked on an event loop other than the "
                        "current one");
        return -1;
    }
    return 0;
}

static PyObject *proc_send_signal(UvcProcess *p, PyObject *arg)
{
    long sig = PyLong_AsLong(arg);
    if (sig == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (sig < 0 || sig > 1024) {
        PyErr_Format(PyExc_ValueError, "invalid signal number %ld", sig);
        return NULL;
    }
    if (proc_check_thread(p) < 0) {
        return NULL;
    }
    if (p->exited || !p->handle_open) {
        /* as Popen.send_signal: a child known to be gone is not signalled (its pid may be
         * reused already) */
        Py_RETURN_NONE;
    }
    int err = uv_process_kill(&p->uv, (int)sig);
    if (err < 0) {
        PyObject *exc = PyObject_CallFunction(PyExc_OSError, "is", -err, uv_strerror(err));
        if (exc != NULL) {
            PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
            Py_DECREF(exc);
        }
        return NULL;
    }
    Py_RETURN_NONE;
}

/* Stop watching the child (the loop is closing, or the transport was dropped). */
static PyObject *proc_loop_closing(UvcProcess *p, PyObject *unused)
{
    if (p->loop == NULL) {
        Py_RETURN_NONE;
    }
    Py_CLEAR(p->on_exit);
    proc_close_handle(p);
    Py_RETURN_NONE;
}

static PyObject *proc_get_pid(UvcProcess *p, void *c) { return PyLong_FromLong(p->pid); }
static PyObject *proc_get_returncode(UvcProcess *p, void *c)
{
    if (!p->exited) {
        Py_RETURN_NONE;
    }
    return PyLong_FromLong(p->returncode);
}
static PyObject *proc_get_watching(UvcProcess *p, void *c) { return PyBool_FromLong(p->handle_open); }

static PyObject *proc_repr(UvcProcess *p)
{
    if (p->exited) {
        return PyUnicode_FromFormat("<%s pid=%ld returncode=%ld>", _PyType_Name(Py_TYPE(p)), p->pid,
                                    p->returncode);
    }
    return PyUnicode_FromFormat("<%s pid=%ld running>", _PyType_Name(Py_TYPE(p)), p->pid);
}

static int proc_traverse(UvcProcess *p, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(p));
    Py_VISIT(p->module);
    Py_VISIT(p->loop);
    Py_VISIT(p->on_exit);
    return 0;
}

static int proc_clear(UvcProcess *p)
{
    Py_CLEAR(p->on_exit);
    return 0;
}

static void proc_dealloc(UvcProcess *p)
{
    PyTypeObject *tp = Py_TYPE(p);
    PyObject_GC_UnTrack(p);
    if (p->weakreflist != NULL) {
        PyObject_ClearWeakRefs((PyObject *)p);
    }
    proc_clear(p);
    Py_CLEAR(p->loop);
    Py_CLEAR(p->module);
    tp->tp_free(p);
    Py_DECREF(tp);
}

static PyObject *proc_tp_new(PyTypeObject *tp, PyObject *args, PyObject *kwds)
{
    PyErr_SetString(PyExc_TypeError, "Process objects are made by the loop's subprocess methods");
    return NULL;
}

static PyGetSetDef proc_getset[] = {
    {"pid", (getter)proc_get_pid, NULL, "The child's process id.", NULL},
    {"returncode", (getter)proc_get_returncode, NULL,
     "None while running; the exit status, or -signal if a signal ended it.", NULL},
    {"_watching", (getter)proc_get_watching, NULL, NULL, NULL},
    {NULL},
};

static PyMethodDef proc_methods[] = {
    {"_spawn", (PyCFunction)proc_spawn, METH_VARARGS | METH_CLASS, NULL},
    {"send_signal", (PyCFunction)proc_send_signal, METH_O, "Send a signal to the child (if still running)."},
    {"_loop_closing", (PyCFunction)proc_loop_closing, METH_NOARGS, NULL},
    {NULL},
};

static PyMemberDef proc_members[] = {
    {"__weaklistoffset__", T_PYSSIZET, offsetof(UvcProcess, weakreflist), READONLY},
    {NULL},
};

static PyType_Slot proc_slots[] = {
    {Py_tp_new, proc_tp_new},
    {Py_tp_dealloc, proc_dealloc},
    {Py_tp_traverse, proc_traverse},
    {Py_tp_clear, proc_clear},
    {Py_tp_repr, proc_repr},
    {Py_tp_methods, proc_methods},
    {Py_tp_members, proc_members},
    {Py_tp_getset, proc_getset},
    {Py_tp_doc, "A child process started with uv_spawn (see loop.subprocess_exec())."},
    {0, NULL},
};

static PyType_Spec proc_spec = {
    .name = "uvcore._uvcore.Process",
    .basicsize = sizeof(UvcProcess),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = proc_slots,
};

int uvc_process_module_init(PyObject *m, uvc_state *st)
{
    return uvc_add_type(m, &proc_spec, NULL, &st->ProcessType);
}
