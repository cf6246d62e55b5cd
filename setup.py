"""Build the one native module, fastq._core. This is the only place Cython runs.

Environment switches (read at build time):
  FASTQ_DEBUG=1      -O0 -g, asserts on, bounds/initialized checks on, line numbers in the C
  FASTQ_ANNOTATE=1   write src/fastq/_core.html (cython -a view for profiling)
  FASTQ_TRACE=1      line tracing for coverage (Cython.Coverage plugin)
  FASTQ_SANITIZE=1   -fsanitize=address,undefined (run with LD_PRELOAD of libasan, PYTHONMALLOC=malloc)
  FASTQ_WERROR=1     Cython warnings become errors (CI and wheels)
  FASTQ_OPT_CFLAGS   optimisation flags, default -O2
"""

from __future__ import annotations

import os
import sys
import sysconfig

from Cython.Build import cythonize
from Cython.Compiler import Options
from setuptools import Extension, setup


def flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0")


DEBUG, ANNOTATE, TRACE = flag("FASTQ_DEBUG"), flag("FASTQ_ANNOTATE"), flag("FASTQ_TRACE")
SANITIZE, WERROR = flag("FASTQ_SANITIZE"), flag("FASTQ_WERROR")
FREE_THREADED = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))

DIRECTIVES: dict[str, object] = {
    "language_level": 3,
    # binding=False: methods are plain method descriptors (METH_O / METH_NOARGS / FASTCALL),
    # ~9 ns cheaper per call than CyFunction-bound methods, which put/get pairs feel
    # (1.19x -> 1.42x SimpleQueue measured). "clinic" signatures keep inspect.signature()
    # and mypy.stubtest working through __text_signature__.
    "binding": False,
    "embedsignature": True,
    "embedsignature.format": "clinic",
    "auto_pickle": False,
    "autotestdict": False,
    # zero- and one-argument methods (get_nowait, put_nowait, qsize...) use METH_NOARGS /
    # METH_O instead of the keyword-parsing wrapper: ~7 ns less per call on the hot path
    "always_allow_keywords": False,
    # Every class in _core is safe without the GIL: the ring's shared state is C11 atomics,
    # Python-level waiter lists are under a PyMutex. Proven by tests/concurrency on 3.13t
    # (.ci/run runs them on a free-threaded build).
    "freethreading_compatible": True,
}
if DEBUG:
    DIRECTIVES.update(boundscheck=True, initializedcheck=True)
if TRACE:
    DIRECTIVES["linetrace"] = True
Options.warning_errors = WERROR

macros: list[tuple[str, str | None]] = []
if sys.platform == "win32":
    cflags = ["/O2", "/std:c11", "/experimental:c11atomics"]
    libraries = ["Synchronization"]
else:
    cflags = os.environ.get("FASTQ_OPT_CFLAGS", "-O2").split() + ["-std=c11", "-Wall", "-Wno-unused-function"]
    libraries = []
if DEBUG and sys.platform != "win32":
    cflags = ["-O0", "-g", "-UNDEBUG", "-std=c11", "-Wall"]
    macros.append(("FASTQ_DEBUG", "1"))
else:
    macros.append(("FASTQ_DEBUG", "0"))
ldflags: list[str] = []
if SANITIZE:
    cflags += ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-g"]
    ldflags += ["-fsanitize=address,undefined"]
if TRACE:
    macros += [("CYTHON_TRACE_NOGIL", "1"), ("CYTHON_USE_SYS_MONITORING", "0")]

ext = Extension(
    "fastq._core",
    sources=["src/fastq/_core.pyx"],
    include_dirs=["src/fastq/_c"],
    depends=[os.path.join("src/fastq/_c", f) for f in os.listdir("src/fastq/_c")],
    define_macros=macros,
    extra_compile_args=cflags,
    extra_link_args=ldflags,
    libraries=libraries,
)

setup(
    ext_modules=cythonize(
        [ext],
        compiler_directives=DIRECTIVES,
        annotate=ANNOTATE,
        emit_linenums=DEBUG,
    ),
)
