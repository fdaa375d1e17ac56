/* unix.c: what is specific to Unix domain sockets in the stream transport and the listener:
 * a uv_pipe_t for the socket and the address object the socket module returns (a path str,
 * or bytes for Linux abstract names). Paths and cleanup of socket files are in _net.py. */
#include "stream.h"

#include <stddef.h>
#include <sys/un.h>

int uvc_unix_init(UvcLoop *loop, uv_pipe_t *h) { return uv_pipe_init(loop->uv, h, 0); }

PyObject *uvc_unix_addr_to_py(const struct sockaddr *sa, socklen_t len)
{
    const struct sockaddr_un *a = (const struct sockaddr_un *)sa;
    size_t pathlen = len > offsetof(struct sockaddr_un, sun_path) ? len - offsetof(struct sockaddr_un, sun_path) : 0;
    if (pathlen > 0 && a->sun_path[0] == '\0') {
        return PyBytes_FromStringAndSize(a->sun_path, (Py_ssize_t)pathlen); /* abstract */
    }
    /* unnamed sockets give "" (the caller zeroed the address) */
    return PyUnicode_DecodeFSDefaultAndSize(a->sun_path, (Py_ssize_t)strnlen(a->sun_path, pathlen));
}
