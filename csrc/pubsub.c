/* pubsub.c: placeholder registration until this concept lands (see its issue). */
#include "uvcore.h"

int uvc_pubsub_module_init(PyObject *m, uvc_state *st) { return 0; }
