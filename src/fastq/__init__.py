"""fastq: native-accelerated, in-process message queues for Python."""

from ._version import __version__ as __version__
from .errors import BackendError as BackendError
from .errors import BackendUnavailable as BackendUnavailable
from .errors import Closed as Closed
from .errors import CodecError as CodecError
from .errors import CorruptLogError as CorruptLogError
from .errors import Empty as Empty
from .errors import FastqError as FastqError
from .errors import Full as Full
from .errors import InvalidReceipt as InvalidReceipt
from .errors import LogFailedError as LogFailedError
from .errors import LogLockedError as LogLockedError
from .errors import OffsetOutOfRange as OffsetOutOfRange
from .errors import Overloaded as Overloaded
from .errors import Permanent as Permanent
from .errors import Unsupported as Unsupported
from .stats import DeadLetterStatistics as DeadLetterStatistics
from .stats import DedupStatistics as DedupStatistics
from .stats import HistogramSnapshot as HistogramSnapshot
from .stats import QueueStatistics as QueueStatistics

try:
    from ._core import ConsumerRecord as ConsumerRecord
    from ._core import DedupWindow as DedupWindow
    from ._core import Delivery as Delivery
    from ._core import Histogram as Histogram
    from ._core import Message as Message
    from ._core import Record as Record
    from ._core import RingBuffer as RingBuffer
    from ._core import SegmentLog as SegmentLog
    from ._core import TokenBucket as TokenBucket
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

from .clock import FakeClock as FakeClock
from .pipeline import AdaptiveConcurrency as AdaptiveConcurrency
from .pipeline import CircuitBreaker as CircuitBreaker
from .pipeline import CircuitBreakerStatistics as CircuitBreakerStatistics
from .pipeline import ConcurrencyStatistics as ConcurrencyStatistics
from .pipeline import ConsumerPool as ConsumerPool
from .pipeline import CostEstimate as CostEstimate
from .pipeline import FixedConcurrency as FixedConcurrency
from .pipeline import PoolStatistics as PoolStatistics
from .pipeline import Producer as Producer
from .pipeline import ProducerStatistics as ProducerStatistics
from .pipeline import RetryPolicy as RetryPolicy
from .pipeline import RouteDecision as RouteDecision
from .pipeline import Router as Router
from .pipeline import arun_until_signal as arun_until_signal
from .pipeline import run_until_signal as run_until_signal
from .semantics import Consumer as Consumer
from .semantics import DeadLetter as DeadLetter
from .semantics import DeadLetterGroup as DeadLetterGroup
from .semantics import DeadLetterQueue as DeadLetterQueue
from .semantics import Failure as Failure
from .semantics import Gap as Gap
from .semantics import GapDetector as GapDetector
from .semantics import Queue as Queue
from .semantics import ReplayReport as ReplayReport
from .semantics import Sequencer as Sequencer
from .semantics import Topic as Topic

__all__ = (
    "AdaptiveConcurrency",
    "BackendError",
    "BackendUnavailable",
    "CircuitBreaker",
    "CircuitBreakerStatistics",
    "Closed",
    "CodecError",
    "ConcurrencyStatistics",
    "Consumer",
    "ConsumerPool",
    "ConsumerRecord",
    "CorruptLogError",
    "CostEstimate",
    "DeadLetter",
    "DeadLetterGroup",
    "DeadLetterQueue",
    "DeadLetterStatistics",
    "DedupStatistics",
    "DedupWindow",
    "Delivery",
    "Empty",
    "Failure",
    "FakeClock",
    "FastqError",
    "FixedConcurrency",
    "Full",
    "Gap",
    "GapDetector",
    "Histogram",
    "HistogramSnapshot",
    "InvalidReceipt",
    "LogFailedError",
    "LogLockedError",
    "Message",
    "OffsetOutOfRange",
    "Overloaded",
    "Permanent",
    "PoolStatistics",
    "Producer",
    "ProducerStatistics",
    "Queue",
    "QueueStatistics",
    "Record",
    "ReplayReport",
    "RetryPolicy",
    "RingBuffer",
    "RouteDecision",
    "Router",
    "SegmentLog",
    "Sequencer",
    "TokenBucket",
    "Topic",
    "Unsupported",
    "__version__",
    "arun_until_signal",
    "group_by_partition",
    "hash64",
    "hash_many",
    "partition",
    "partition_many",
    "run_until_signal",
)
