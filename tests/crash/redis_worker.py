"""The child of test_redis_kill.py: one consumer process on a shared Redis queue.

``python redis_worker.py URL PREFIX CHECK_KEY BATCH SEED``

Opens ``Queue("jobs", backend=RedisStreams(URL, prefix=PREFIX))`` with the parent's settings,
writes ``R`` on stdout once it is open (the parent's readiness signal), then loops:
``get_many(BATCH)``; for each delivery ``HINCRBY CHECK_KEY:handled <id> 1`` (one pipeline per
batch, sent BEFORE any ack, so every message that was ever acked has a record); poison
messages (payload ``b"poison..."``) are nacked, the others acked together with ``ack_many``;
after ``ack_many`` returned ``HINCRBY CHECK_KEY:acked <id> 1``. When ``ack_many`` raises
InvalidReceipt (a lease ran out first: the batch is partly acked, it does not say which) the
batch goes to ``CHECK_KEY:uncertain`` instead. After each batch it writes ``B <n>`` on stdout
(``n`` messages handled): the parent counts progress with it and kills at chosen points.
When nothing is left (``len(q) == 0``: ready, delayed and in flight, across all processes) it
writes ``D`` and exits 0. The parent SIGKILLs it at random points before that.
"""

from __future__ import annotations

import contextlib
import os
import random
import sys
import time

import redis

import fastq
from fastq.backends import RedisStreams

# the parent imports these (one source of truth)
VISIBILITY_TIMEOUT = 1.0  # seconds; a killed worker's leases come back this fast
MAX_DELIVERIES = 25  # kills alone never dead-letter a message (see the parent's docstring)
POISON = b"poison"


def open_queue(url: str, prefix: str) -> tuple[RedisStreams, fastq.Queue]:
    backend = RedisStreams(url, prefix=prefix, timeout=30.0)
    q = fastq.Queue(
        "jobs",
        backend=backend,
        visibility_timeout=VISIBILITY_TIMEOUT,
        max_deliveries=MAX_DELIVERIES,
        maxsize=None,
    )
    return backend, q


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def main() -> None:
    url, prefix, check, batch, seed = sys.argv[1:6]
    rnd = random.Random(int(seed))
    size = int(batch)
    checker = redis.Redis.from_url(url)
    backend, q = open_queue(url, prefix)
    say("R")
    while True:
        try:
            got = q.get_many(rnd.randint(1, size), timeout=0.2)
        except fastq.Empty:
            got = []
        if not got:
            if len(q) == 0:
                break
            continue
        pipe = checker.pipeline(transaction=False)
        for d in got:
            pipe.hincrby(f"{check}:handled", d.message.id, 1)
        pipe.execute()
        good = []
        for d in got:
            if isinstance(d.message.payload, bytes) and d.message.payload.startswith(POISON):
                with contextlib.suppress(fastq.InvalidReceipt):  # its lease ran out first
                    d.nack(error="poison")
            else:
                good.append(d)
        # 2 % of batches "work" for 0-30 ms: the parent's kill lands mid-batch more often
        if rnd.random() < 0.02:
            time.sleep(rnd.uniform(0.0, 0.03))
        key = f"{check}:acked"
        if good:
            try:
                q.ack_many(good)
            except fastq.InvalidReceipt:
                key = f"{check}:uncertain"  # some acked, some stale: not said which
            pipe = checker.pipeline(transaction=False)
            for d in good:
                pipe.hincrby(key, d.message.id, 1)
            pipe.execute()
        say(f"B {len(got)}")
    q.close(drain=False)
    backend.close()
    checker.close()
    say("D")
    os._exit(0)


if __name__ == "__main__":
    main()
