"""Processing pipelines over queues and topics: routing, producing with backpressure,
consumer pools with adaptive concurrency, retries and circuit breakers, shutdown helpers."""

from .breaker import CircuitBreaker as CircuitBreaker
from .breaker import CircuitBreakerStatistics as CircuitBreakerStatistics
from .concurrency import AdaptiveConcurrency as AdaptiveConcurrency
from .concurrency import ConcurrencyStatistics as ConcurrencyStatistics
from .concurrency import FixedConcurrency as FixedConcurrency
from .cost import CostEstimate as CostEstimate
from .pool import ConsumerPool as ConsumerPool
from .pool import PoolStatistics as PoolStatistics
from .producer import Producer as Producer
from .producer import ProducerStatistics as ProducerStatistics
from .retry import RetryPolicy as RetryPolicy
from .router import RouteDecision as RouteDecision
from .router import Router as Router
from .shutdown import arun_until_signal as arun_until_signal
from .shutdown import run_until_signal as run_until_signal

__all__ = (
    "AdaptiveConcurrency",
    "CircuitBreaker",
    "CircuitBreakerStatistics",
    "ConcurrencyStatistics",
    "ConsumerPool",
    "CostEstimate",
    "FixedConcurrency",
    "PoolStatistics",
    "Producer",
    "ProducerStatistics",
    "RetryPolicy",
    "RouteDecision",
    "Router",
    "arun_until_signal",
    "run_until_signal",
)
