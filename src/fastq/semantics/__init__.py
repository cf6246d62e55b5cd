"""Delivery semantics over the storage engines: the work queue (and its dead-letter queue)
and the partitioned topic with consumer groups."""

from .dlq import DeadLetter as DeadLetter
from .dlq import DeadLetterQueue as DeadLetterQueue
from .queue import Queue as Queue
from .sequence import Gap as Gap
from .sequence import GapDetector as GapDetector
from .sequence import Sequencer as Sequencer
from .topic import Consumer as Consumer
from .topic import Topic as Topic

__all__ = (
    "Consumer",
    "DeadLetter",
    "DeadLetterQueue",
    "Gap",
    "GapDetector",
    "Queue",
    "Sequencer",
    "Topic",
)
