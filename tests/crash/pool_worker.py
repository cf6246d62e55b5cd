"""The child of test_pool_signal.py: consumes a durable queue with a ConsumerPool run by
``run_until_signal`` (threads) or ``arun_until_signal`` (asyncio) until SIGTERM/SIGINT.

``python pool_worker.py DIR LOG MODE``

Opens ``Queue("jobs", path=DIR)``; the handler "works" 5 ms per message, then appends
``H <payload>`` to LOG (line-buffered). The first handler call prints ``ready`` on stdout: by
then the signal handlers are installed (they are, before the pool starts). After the graceful
stop it prints ``stopped <signal> released=<n> processed=<n>``, closes the queue keeping what
it holds on disk, and exits 0.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from typing import Any

from fastq.pipeline.pool import ConsumerPool
from fastq.pipeline.shutdown import arun_until_signal, run_until_signal
from fastq.semantics.queue import Queue


def main() -> int:
    directory, log_path, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    q = Queue("jobs", path=directory, visibility_timeout=30.0, max_deliveries=3, maxsize=None)
    log = open(log_path, "a", buffering=1)  # noqa: SIM115 (closed below)
    lock = threading.Lock()
    ready = threading.Event()

    def note(m: Any) -> None:
        with lock:
            log.write(f"H {m.payload}\n")
            if not ready.is_set():
                ready.set()
                sys.stdout.write("ready\n")
                sys.stdout.flush()

    def handler(m: Any) -> None:
        time.sleep(0.005)
        note(m)

    async def ahandler(m: Any) -> None:
        await asyncio.sleep(0.005)
        note(m)

    if mode == "threads":
        pool = ConsumerPool(q, handler, concurrency=2, prefetch=8)
        sig = run_until_signal(pool, timeout=20.0)
    else:
        pool = ConsumerPool(q, ahandler, mode="asyncio", concurrency=2, prefetch=8)
        sig = asyncio.run(arun_until_signal(pool, timeout=20.0))
    st = pool.statistics()
    sys.stdout.write(f"stopped {sig} released={st.released} processed={st.processed}\n")
    sys.stdout.flush()
    log.close()
    q.close(drain=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
