/* stream.c: placeholder registration until this concept lands (see its issue). */
#include "uvcore.h"

int uvc_stream_module_init(PyObject *m, uvc_state *st) { return 0; }
