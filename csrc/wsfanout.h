/* wsfanout.h: the hooks through which stream.c keeps a transport's fan-out frames (wsfanout.c)
 * in order with its other writes, and loop.c writes the frames held during an iteration. */
#ifndef UVCORE_WSFANOUT_H
#define UVCORE_WSFANOUT_H

#include "loop.h"

typedef struct UvcFanoutSink UvcFanoutSink;

/* How a transport closes, for uvc_fanout_transport_closing. */
enum {
    UVC_FANOUT_CLOSE_FLUSH = 0,  /* close()/write_eof(): held frames are written first */
    UVC_FANOUT_CLOSE_DROP = 1,   /* abort or a fatal error: held frames are dropped */
    UVC_FANOUT_CLOSE_SILENT = 2, /* the loop is closing: dropped, no callbacks scheduled */
};

/* Another write is about to go to the transport: held frames go first. */
void uvc_fanout_transport_before_write(UvcFanoutSink *s);
/* libuv's write queue for the transport emptied: held frames may go now. */
void uvc_fanout_transport_drained(UvcFanoutSink *s);
/* The transport is closing: the sink detaches (and schedules its close callbacks). */
void uvc_fanout_transport_closing(UvcFanoutSink *s, int how);
size_t uvc_fanout_held_bytes(UvcFanoutSink *s);
/* End of an iteration: write what every sink holds (loop->fanout_dirty). */
void uvc_fanout_flush(UvcLoop *loop);
/* The loop's GC support for its references to sinks on that list. */
int uvc_fanout_traverse_dirty(UvcLoop *loop, visitproc visit, void *arg);
void uvc_fanout_clear_dirty(UvcLoop *loop);

#endif
