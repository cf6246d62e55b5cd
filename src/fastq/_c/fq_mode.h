/* fq_mode.h - per-CPython-build choices for the extension (the harness never includes it).
 * On GIL builds every position mover holds the GIL, so fq_ring.h may claim positions with
 * plain stores (FQ_SERIALIZED_MOVERS); free-threaded builds get the lock-free CAS version. */
#ifndef FQ_MODE_H
#define FQ_MODE_H
#include <Python.h>
#ifndef Py_GIL_DISABLED
#  define FQ_SERIALIZED_MOVERS 1
#  define FQ_SERIALIZED_MOVERS_FLAG 1
#else
#  define FQ_SERIALIZED_MOVERS_FLAG 0
#endif
#endif
