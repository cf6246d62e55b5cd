"""Delivery semantics over the storage engines: the work queue (and its dead-letter queue)
and the partitioned topic with consumer groups."""

from .dlq import DeadLetter as DeadLetter
from .dlq import DeadLetterGroup as DeadLetterGroup
from .dlq import DeadLetterQueue as DeadLetterQueue
from .dlq import ReplayReport as ReplayReport
from .failure import Failure as Failure
from .queue import Queue as Queue
from .sequence import Gap as Gap
from .sequence import GapDetector as GapDetector
from .sequence import Sequencer as Sequencer
from .topic import Consumer as Consumer
from .topic import Topic as Topic

__all__ = (
    "Consumer",
    "DeadLetter",
    "DeadLetterGroup",
    "DeadLetterQueue",
    "Failure",
    "Gap",
    "GapDetector",
    "Queue",
    "ReplayReport",
    "Sequencer",
    "Topic",
)
