/* fq_py.h - the few Python-specific glue macros the Cython layer uses (fq_ring.h stays
 * Python-free so the pure-C harness can include it). */
#ifndef FQ_PY_H
#define FQ_PY_H
#include <Python.h>
/* A ring slot holds an owned reference; handing it out transfers that reference.
 * Declared in _core.pxd as returning `object`, so Cython takes it over without an INCREF. */
#define fq_steal(p) ((PyObject *)(p))
/* PyList_SET_ITEM from a raw slot pointer (steals the slot's reference). */
#define fq_list_set(l, i, p) PyList_SET_ITEM((l), (i), (PyObject *)(p))
#endif
