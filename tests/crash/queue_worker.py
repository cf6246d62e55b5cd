"""The child of test_queue_kill.py: owns a durable Queue and consumes it with 4 threads.

``python queue_worker.py DIR DONE_FILE POISON_ID SEED``

Opens ``Queue("jobs", path=DIR)`` (reopening whatever earlier, killed children left), writes
``R\\n`` to stdout once it is open (the parent's readiness signal), then 4 threads get, and
ack each message, except ``POISON_ID`` (nacked, always). Per delivery it appends ``H <id>`` to
DONE_FILE before the handler "works" (0-3 ms; 1 % of the time 0.3 s, longer than the lease, so
leases run out and acks go stale), and ``A <id>`` only AFTER ack() returned. A kill between
ack() and that line leaves a message acked with only its ``H`` line: the parent allows that for
the deliveries in flight at the kill. When nothing is left (ready, delayed or in flight) the
threads stop, the queue is closed and ``D\\n`` is written;
the parent SIGKILLs the child at a random moment before that.
"""

from __future__ import annotations

import contextlib
import os
import random
import sys
import threading
import time

import fastq

VT = 0.2
MAX_DELIVERIES = 5
THREADS = 4


def main() -> None:
    directory, done_path, poison = sys.argv[1], sys.argv[2], sys.argv[3]
    rnd = random.Random(int(sys.argv[4]))
    q = fastq.Queue(
        "jobs",
        path=directory,
        sync="none",
        visibility_timeout=VT,
        max_deliveries=MAX_DELIVERIES,
        maxsize=None,
    )
    done = open(done_path, "a", buffering=1)  # noqa: SIM115 (closed at exit)
    lock = threading.Lock()
    errors: list[BaseException] = []
    sys.stdout.write("R\n")
    sys.stdout.flush()

    def consume() -> None:
        try:
            while True:
                try:
                    d = q.get(timeout=0.05)
                except fastq.Empty:
                    if len(q) == 0:
                        return
                    continue
                mid = d.message.id
                with lock:
                    done.write(f"H {mid}\n")
                    work = 0.3 if rnd.random() < 0.01 else rnd.uniform(0.0, 0.003)
                time.sleep(work)
                if mid == poison:
                    with contextlib.suppress(fastq.InvalidReceipt):
                        d.nack(error="poison")
                    continue
                try:
                    d.ack()
                except fastq.InvalidReceipt:
                    continue  # the lease ran out first: redelivered, someone acks it later
                with lock:
                    done.write(f"A {mid}\n")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=consume) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    q.close(drain=False)
    done.close()
    sys.stdout.write("D\n")
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
