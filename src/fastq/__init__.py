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
from .stats import DedupStatistics as DedupStatistics

try:
    from ._core import DedupWindow as DedupWindow
    from ._core import Record as Record
    from ._core import RingBuffer as RingBuffer
    from ._core import SegmentLog as SegmentLog
    from ._core import group_by_partition as group_by_partition
    from ._core import hash64 as hash64
    from ._core import hash_many as hash_many
    from ._core import partition as partition
    from ._core import partition_many as partition_many
except ImportError as exc:  # pragma: no cover - only without a built extension
    raise ImportError(
        "fastq's native core (fastq._core) is not built or does not match this Python; "
        "install the package with `pip install .` (or `pip install -e .` in a checkout)"
    ) from exc

__all__ = (
    "Closed",
    "CorruptLogError",
    "DedupStatistics",
    "DedupWindow",
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
    "group_by_partition",
    "hash64",
    "hash_many",
    "partition",
    "partition_many",
)
