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

/* ---- cyclic GC support for RingBuffer -----------------------------------------------------
 * Cython's generated tp_traverse/tp_clear know the class's object attributes, not the items
 * held in C slots, so a cycle that runs through a ring's contents (an item referring back to
 * the ring) would never be collected. _core.pyx wraps the two slots with these at import.
 * They touch no reference counts while traversing (free-threaded GC repurposes them). */
#include "fq_ring.h"

static Py_ssize_t fq_ring_field_offset;     /* offsetof(RingBuffer object, _r), set at import */
#define FQ_RING_OF(o) (*(fq_ring **)((char *)(o) + fq_ring_field_offset))

static traverseproc fq_ring_base_traverse;
static inquiry fq_ring_base_clear;

static int fq_ring_tp_traverse(PyObject *self, visitproc visit, void *arg) {
    int rc = fq_ring_base_traverse ? fq_ring_base_traverse(self, visit, arg) : 0;
    fq_ring *r = FQ_RING_OF(self);
    if (rc || r == NULL) return rc;
    uint64_t p = fq_load64(&r->deq, FQ_ACQUIRE);
    for (uint64_t n = 0; n < r->capacity; n++, p = (p + 1) & FQ_POS_MASK) {
        fq_slot *s = &r->slots[p & r->mask];
        if (fq_load64(&s->seq, FQ_ACQUIRE) != (p << 1) + 1) break;   /* end of the published run */
        PyObject *item = (PyObject *)s->item;
        if (item) Py_VISIT(item);
    }
    return 0;
}

static int fq_ring_tp_clear(PyObject *self) {
    fq_ring *r = FQ_RING_OF(self);
    if (r != NULL) {                          /* drop the items: this is what breaks the cycle */
        uint64_t first; int closed;
        uint64_t k = fq_ring_claim_get(r, r->capacity, &first, &closed);
        for (uint64_t j = 0; j < k; j++) Py_DECREF((PyObject *)fq_ring_take(r, first + j));
    }
    return fq_ring_base_clear ? fq_ring_base_clear(self) : 0;
}

static void fq_ring_install_gc(PyObject *type, Py_ssize_t ring_field_offset) {
    PyTypeObject *t = (PyTypeObject *)type;
    fq_ring_field_offset = ring_field_offset;
    if (t->tp_traverse != fq_ring_tp_traverse) {
        fq_ring_base_traverse = t->tp_traverse;
        fq_ring_base_clear = t->tp_clear;
        t->tp_traverse = fq_ring_tp_traverse;
        t->tp_clear = fq_ring_tp_clear;
    }
}

/* ---- keys (hashing and dedup) -------------------------------------------------------------
 * The two key types a batch is usually made of, without touching reference counts:
 * 1 = bytes or str (p, n set to the bytes / the UTF-8), 0 = another type, -1 = error set
 * (a str that cannot be encoded, such as a lone surrogate). */
static inline int fq_key_fast(PyObject *o, const char **p, Py_ssize_t *n) {
    if (PyBytes_CheckExact(o)) {
        *p = PyBytes_AS_STRING(o);
        *n = PyBytes_GET_SIZE(o);
        return 1;
    }
    if (PyUnicode_CheckExact(o)) {
        *p = PyUnicode_AsUTF8AndSize(o, n);
        return *p ? 1 : -1;
    }
    return 0;
}

/* A per-object lock that costs nothing where the GIL already serialises callers: a PyMutex on
 * free-threaded builds (it detaches the thread state while it waits), nothing on GIL builds.
 * Code holding it must not run Python code or release the GIL. */
#ifdef Py_GIL_DISABLED
typedef PyMutex fq_pylock;
#  define fq_pylock_acquire(m) PyMutex_Lock(m)
#  define fq_pylock_release(m) PyMutex_Unlock(m)
#else
typedef char fq_pylock;
#  define fq_pylock_acquire(m) ((void)(m))
#  define fq_pylock_release(m) ((void)(m))
#endif

#endif
