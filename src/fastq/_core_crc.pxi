# CRC-32C over any bytes-like object (the segment log's record checksum; issue 3).

from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from libc.stdint cimport uint32_t

fq_crc32c_setup()                         # fill the tables, probe the CPU: once, at import

#: True when CRC-32C runs on the CPU's crc32 instruction (SSE4.2)
_CRC32C_HARDWARE = bool(fq_crc32c_use_hw)

cdef Py_ssize_t _CRC_NOGIL_BYTES = 1 << 16   # below this, releasing the GIL costs more


cdef uint32_t _crc_value(object value) except? 0xFFFFFFFF:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"value must be an int, got {type(value).__name__}")
    if not 0 <= value <= 0xFFFFFFFF:
        raise ValueError(f"value must be in 0..2**32-1, got {value!r}")
    return <uint32_t>value


cdef object _crc(object data, object value, bint software):
    cdef Py_buffer view
    cdef uint32_t crc = _crc_value(value)
    try:
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    except (TypeError, BufferError):
        raise TypeError(
            f"data must be a contiguous bytes-like object, got {type(data).__name__}"
        ) from None
    try:
        if view.len >= _CRC_NOGIL_BYTES:
            with nogil:
                crc = (fq_crc32c_sw(crc, view.buf, <size_t>view.len) if software
                       else fq_crc32c(crc, view.buf, <size_t>view.len))
        else:
            crc = (fq_crc32c_sw(crc, view.buf, <size_t>view.len) if software
                   else fq_crc32c(crc, view.buf, <size_t>view.len))
    finally:
        PyBuffer_Release(&view)
    return crc


def _crc32c(data, value=0):
    """CRC-32C of a bytes-like object, continuing from `value` (as crc32c.crc32c does)."""
    return _crc(data, value, False)


def _crc32c_sw(data, value=0):
    """The same through the portable table path (tests compare both with the oracle)."""
    return _crc(data, value, True)
