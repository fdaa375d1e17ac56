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

/* RuntimeError (-1) when called from a thread other than the one running the loop: libuv
 * handles must only be touched by the loop's thread (asyncio's message). */
int uvc_stream_check_thread(UvcLoop *loop);

/* socket.detach() on a socket object whose fd libuv now closes (errors ignored). */
void uvc_detach_socket(PyObject *sock);

/* For wsfanout.c, which writes to a transport with its own requests and buffers. */
UvcLoop *uvc_stream_loop(UvcStream *t);
struct UvcFanoutSink *uvc_stream_get_fanout(UvcStream *t);
void uvc_stream_set_fanout(UvcStream *t, struct UvcFanoutSink *sink); /* borrowed pointer */
/* The transport takes writes (open, not closing, no write_eof, no sendfile running). */
int uvc_stream_can_write(UvcStream *t);
Py_ssize_t uvc_stream_writes_pending(UvcStream *t); /* uv_write requests in flight */
size_t uvc_stream_write_queue_size(UvcStream *t);   /* bytes in libuv's write queue */
/* uv_try_write: bytes written (0 for EAGAIN), or -1 after a fatal error was reported. */
int uvc_stream_try_write(UvcStream *t, uv_buf_t *bufs, unsigned n);
/* uv_write of a request the caller owns; its callback must end with uvc_stream_write_done.
 * 0, or -1 after a fatal error was reported (the callback will not run). */
int uvc_stream_write_req(UvcStream *t, uv_write_t *req, uv_buf_t *bufs, unsigned n, uv_write_cb cb);
void uvc_stream_write_done(UvcStream *t, int status);
/* pause_writing/resume_writing as the queued bytes (libuv's and held fan-out frames) say. */
void uvc_stream_update_flow(UvcStream *t);

/* server.c */
extern PyType_Spec uvc_listener_spec;

#endif
