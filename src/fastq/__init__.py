"""fastq: native-accelerated, in-process message queues for Python."""

from ._version import __version__ as __version__
from .errors import Closed as Closed
from .errors import CorruptLogError as CorruptLogError
from .errors import Empty as Empty
from .errors import FastqError as FastqError
from .errors import Full as Full
from .errors import LogFailedError as LogFailedError
from .errors import LogLockedError as LogLockedError
from .errors import OffsetOutOfRange as OffsetOutOfRange

try:
    from ._core import Record as Record
    from ._core import RingBuffer as RingBuffer
    from ._core import SegmentLog as SegmentLog
except ImportError as exc:  # pragma: no cover - only without a built extension
    raise ImportError(
        "fastq's native core (fastq._core) is not built or does not match this Python; "
        "install the package with `pip install .` (or `pip install -e .` in a checkout)"
    ) from exc

__all__ = (
    "Closed",
    "CorruptLogError",
    "Empty",
    "FastqError",
    "Full",
    "LogFailedError",
    "LogLockedError",
    "OffsetOutOfRange",
    "Record",
    "RingBuffer",
    "SegmentLog",
    "__version__",
)
