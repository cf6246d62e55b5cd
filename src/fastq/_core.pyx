"""fastq._core: the native core of fastq.

One extension module built from per-concept parts (``_core_*.pxi``) over small C headers
(``_c/*.h``). The public home of every name here is the ``fastq`` package.
"""

cimport cython

include "_core_ring.pxi"
include "_core_crc.pxi"
include "_core_hist.pxi"
include "_core_hash.pxi"
include "_core_log.pxi"
include "_core_dedup.pxi"
include "_core_msg.pxi"
include "_core_queue.pxi"
include "_core_topic.pxi"
include "_core_rate.pxi"
