/* fdcheck.c: fds closed under libuv's watchers. User code may close a watched fd (or a
 * transport's socket) at any time and a new file may then take its number. libuv aborts when
 * its poll hands a closed fd to epoll_ctl, and a watcher left on a reused number steals the
 * new file's events (and closes its fd later). Here: the identity of an fd (st_dev/st_ino),
 * and the libuv-side of dropping a stale watcher: libuv has no public call that lets go of a
 * watcher without touching its fd, so uvc_fdcheck_forget edits the watcher queue and the fd
 * table of uv_loop_t, which uv.h exposes (private fields, layout checked per libuv version). */
#include "loop.h"

#include <errno.h>
#include <sys/stat.h>

int uvc_fd_identity(int fd, dev_t *dev, ino_t *ino)
{
    struct stat st;
    if (fstat(fd, &st) < 0) {
        return -1;
    }
    *dev = st.st_dev;
    *ino = st.st_ino;
    return 0;
}

int uvc_fd_is_stale(int fd, dev_t dev, ino_t ino)
{
    dev_t d;
    ino_t i;
    /* EBADF: closed. Any other fstat error leaves the fd to libuv, which can handle it. */
    if (uvc_fd_identity(fd, &d, &i) < 0) {
        return errno == EBADF;
    }
    return d != dev || i != ino;
}

/* libuv's intrusive queues: two pointers, next then prev (void*[2] before 1.46, struct
 * uv__queue from 1.46 on, same layout). */
#if UV_VERSION_HEX >= 0x012E00
typedef struct uv__queue uvc_queue;
#define UVC_Q(field) (&(field))
#else
typedef struct uvc_queue {
    struct uvc_queue *next;
    struct uvc_queue *prev;
} uvc_queue;
#define UVC_Q(field) ((uvc_queue *)(field))
#endif

/* The fields edited below are libuv's private ones: tested with libuv 1.44 (Debian 12, the
 * wheels) and written for the 1.46+ queue type; the suite's closed-fd tests exercise this
 * path on every build, and a libuv 2 must be looked at first. */
#if UV_VERSION_MAJOR != 1
#error "fdcheck.c edits libuv 1.x private loop fields: check them for this libuv"
#endif
_Static_assert(sizeof(((uv__io_t *)0)->watcher_queue) == 2 * sizeof(void *),
               "libuv's watcher queue link is no longer two pointers");
_Static_assert(sizeof(((uv__io_t *)0)->pending_queue) == 2 * sizeof(void *),
               "libuv's pending queue link is no longer two pointers");

static void uvc_queue_remove(uvc_queue *q)
{
    q->prev->next = q->next;
    q->next->prev = q->prev;
    q->next = q->prev = q;
}

void uvc_fdcheck_forget(uv_loop_t *uv, uv__io_t *w)
{
    if (w->fd < 0) {
        return;
    }
    uvc_queue_remove(UVC_Q(w->watcher_queue));
    uvc_queue_remove(UVC_Q(w->pending_queue));
    if ((unsigned)w->fd < uv->nwatchers && uv->watchers[w->fd] == w) {
        uv->watchers[w->fd] = NULL;
        uv->nfds--;
    }
    w->pevents = 0;
    w->events = 0;
    w->fd = -1;
}

uv__io_t *uvc_fdcheck_slot(uv_loop_t *uv, int fd)
{
    if (fd < 0 || (unsigned)fd >= uv->nwatchers) {
        return NULL;
    }
    return uv->watchers[fd];
}

uv__io_t *uvc_fdcheck_next_queued(uv_loop_t *uv, uv__io_t *after)
{
    uvc_queue *head = UVC_Q(uv->watcher_queue);
    uvc_queue *q = after == NULL ? head->next : UVC_Q(after->watcher_queue)->next;
    if (q == head) {
        return NULL;
    }
    return (uv__io_t *)((char *)q - offsetof(uv__io_t, watcher_queue));
}
