"""The Redis Streams backend (docs/redis.md): :class:`RedisStreams` is what ``Queue(...,
backend=)``, ``Topic(..., backend=)`` and ``DeadLetterQueue(..., backend=)`` take. Needs
redis-py (``pip install 'fastq-queue[redis]'``), imported when a backend is made."""

from ._client import REDIS_CAPABILITIES as REDIS_CAPABILITIES
from ._client import RedisStreams as RedisStreams
from ._client import as_backend as as_backend

__all__ = ("REDIS_CAPABILITIES", "RedisStreams", "as_backend")
