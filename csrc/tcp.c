/* tcp.c: what is TCP-specific in the stream transport and the listener: initialising a
 * uv_tcp_t and turning an IPv4/IPv6 address into the tuple the socket module returns.
 * Sockets themselves are created, bound and connected by the Python layer (_net.py). */
#include "stream.h"

#include <netdb.h>
#include <netinet/in.h>

int uvc_tcp_init(UvcLoop *loop, uv_tcp_t *h) { return uv_tcp_init(loop->uv, h); }

/* (host, port) for IPv4, (host, port, flowinfo, scope_id) for IPv6. New reference. */
PyObject *uvc_inet_addr_to_py(const struct sockaddr *sa)
{
    char host[NI_MAXHOST];
    socklen_t len = sa->sa_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
    /* numeric getnameinfo formats link-local scopes ("fe80::1%eth0") as the socket module does */
    int err = getnameinfo(sa, len, host, sizeof(host), NULL, 0, NI_NUMERICHOST);
    if (err != 0) {
        PyErr_Format(PyExc_OSError, "getnameinfo failed: %s", gai_strerror(err));
        return NULL;
    }
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
        return Py_BuildValue("(si)", host, ntohs(a->sin_port));
    }
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
    return Py_BuildValue("(siII)", host, ntohs(a->sin6_port), (unsigned int)ntohl(a->sin6_flowinfo),
                         (unsigned int)a->sin6_scope_id);
}
