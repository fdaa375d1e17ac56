/* loop_metrics.c: what the loop counts about itself, for uvcore.otel. The counters are plain
 * increments in loop.c that are always on; timing callbacks (for slow-callback spans) and
 * libuv's idle-time accounting cost something per callback or per poll, so they are
 * switched on only when telemetry with a real provider asks for them. */
#include "loop.h"

/* Read under the GIL from any thread (the SDK's metric reader has its own): every field but
 * active_handles is written only under the GIL; libuv's idle time takes its own lock; libuv
 * updates active_handles without the GIL, and an aligned unsigned read is at worst one
 * handle start or stop behind. Returns a new reference. */
PyObject *uvc_loop_metrics(UvcLoop *loop, PyObject *unused)
{
    unsigned int handles = 0;
    PyObject *idle = Py_None;
    Py_INCREF(idle);
    if (loop->uv != NULL && !loop->closed) {
        handles = loop->uv->active_handles;
        if (loop->idle_time) {
            Py_DECREF(idle);
            idle = PyLong_FromUnsignedLongLong(uv_metrics_idle_time(loop->uv));
            if (idle == NULL) {
                return NULL;
            }
        }
    }
    Py_ssize_t watchers = loop->pollers != NULL ? PyDict_GET_SIZE(loop->pollers) : 0;
    return Py_BuildValue("(KKnnnIN)", loop->iterations, loop->callbacks_run, loop->ready_len,
                         loop->timers_len - loop->timers_cancelled, watchers, handles, idle);
}

PyObject *uvc_loop_set_telemetry(UvcLoop *loop, PyObject *args)
{
    int timed, idle_time;
    if (!PyArg_ParseTuple(args, "pp:_set_telemetry", &timed, &idle_time)) {
        return NULL;
    }
    if (uvc_loop_check_closed(loop) < 0) {
        return NULL;
    }
    loop->timed = timed;
    if (idle_time && !loop->idle_time) {
        /* libuv has no way to turn it off again; it starts counting from here. */
        int err = uv_loop_configure(loop->uv, UV_METRICS_IDLE_TIME);
        if (err < 0) {
            PyErr_Format(PyExc_OSError, "uv_loop_configure(UV_METRICS_IDLE_TIME) failed: %s", uv_strerror(err));
            return NULL;
        }
        loop->idle_time = 1;
    }
    Py_RETURN_NONE;
}
