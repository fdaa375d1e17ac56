/* stream.h: what stream.c (the transport), server.c (listeners), tcp.c and unix.c share.
 * Every object that owns a libuv handle is linked into a per-module registry so a loop that
 * is closed with transports or servers still open can close their handles first (see
 * uvc_stream_close_all, called by loop.c before it closes the uv loop). */
#ifndef UVCORE_STREAM_H
#define UVCORE_STREAM_H

#include "loop.h"

/* Kinds of stream handle a transport or listener wraps. */
enum { UVC_KIND_TCP = 1, UVC_KIND_PIPE = 2 };

typedef union {
    uv_handle_t handle;
    uv_stream_t stream;
    uv_tcp_t tcp;
    uv_pipe_t pipe;
} UvcStreamHandle;

/* A registry entry: the embedded handle of a live transport or listener. `close` closes the
 * handle the way its owner does (the owner's close callback then unlinks the entry). */
typedef struct UvcLink {
    struct UvcLink *prev, *next;
    UvcLoop *loop;
    void (*close)(struct UvcLink *link);
} UvcLink;

/* The registry head lives in uvc_state.stream_extra (a UvcLink* to the first entry). */
void uvc_link_add(uvc_state *st, UvcLink *link, UvcLoop *loop, void (*close)(UvcLink *));
void uvc_link_remove(uvc_state *st, UvcLink *link);

typedef struct UvcStream UvcStream;

/* stream.c: a transport for a stream handle that tcp.c/unix.c (or server.c's accept) has
 * initialised in t->uv. Takes the self-reference that the handle holds until uv_close's
 * callback; registers the transport, schedules connection_made and the start of reading.
 * protocol/server/sock may be NULL (server.c sets the protocol just after). */
UvcStream *uvc_stream_alloc(UvcLoop *loop);
int uvc_stream_start(UvcStream *t, PyObject *protocol, PyObject *server, PyObject *sock,
                     PyObject *context);
/* Drop a transport whose handle could not be initialised (no self-reference taken). */
void uvc_stream_discard(UvcStream *t);
uv_stream_t *uvc_stream_uv(UvcStream *t);
/* Mark the handle as initialised (so closing it is needed); kind is UVC_KIND_*. */
void uvc_stream_set_opened(UvcStream *t, int kind);

/* tcp.c / unix.c: initialise a handle on the loop (then uv_tcp_open/uv_pipe_open or
 * uv_accept fill it). 0 or a libuv error code; on error the handle needs no uv_close. */
int uvc_tcp_init(UvcLoop *loop, uv_tcp_t *h);
int uvc_unix_init(UvcLoop *loop, uv_pipe_t *h);

/* A Python address object for a sockaddr, as the socket module makes them. New reference. */
PyObject *uvc_sockaddr_to_py(const struct sockaddr *sa, socklen_t len);
PyObject *uvc_inet_addr_to_py(const struct sockaddr *sa);
PyObject *uvc_unix_addr_to_py(const struct sockaddr *sa, socklen_t len);

/* An OSError (the errno subclass) for a libuv error code; new reference. uvc_set_uv_error
 * raises it. */
PyObject *uvc_oserror_from_uv(int err);
void uvc_set_uv_error(int err);

/* socket.detach() on a socket object whose fd libuv now closes (errors ignored). */
void uvc_detach_socket(PyObject *sock);

/* server.c */
extern PyType_Spec uvc_listener_spec;

#endif
