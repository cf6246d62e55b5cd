"""fastq: native-accelerated, in-process message queues for Python."""

from ._version import __version__ as __version__
from .errors import Closed as Closed
from .errors import Empty as Empty
from .errors import FastqError as FastqError
from .errors import Full as Full

try:
    from ._core import RingBuffer as RingBuffer
except ImportError as exc:  # pragma: no cover - only without a built extension
    raise ImportError(
        "fastq's native core (fastq._core) is not built or does not match this Python; "
        "install the package with `pip install .` (or `pip install -e .` in a checkout)"
    ) from exc

__all__ = ("Closed", "Empty", "FastqError", "Full", "RingBuffer", "__version__")
