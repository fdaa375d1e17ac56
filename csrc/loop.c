/* loop.c: placeholder registration (being written now). */
#include "uvcore.h"

int uvc_loop_module_init(PyObject *m, uvc_state *st) { return 0; }
