"""R10 across kill -9: a dedup window rebuilt from its snapshot plus the log never lets a
duplicate key into the log.

This is the recovery protocol a durable queue uses for its idempotency window, the way Kafka
rebuilds producer state: persist a snapshot of the window now and then, together with the log
offset it covers; after a crash, restore the snapshot and replay the keys of the records
appended after that offset.

A writer child, forked from this process, opens the log, rebuilds its window that way, then
offers keys drawn with heavy reuse (half new, half any key offered before, including keys from
earlier cycles) to ``DedupWindow.seen`` and appends a record only for keys that are new. Every
few appends it writes a snapshot file atomically (write a temporary file, rename it over the
old one). The parent SIGKILLs it at a random moment (mid-append, mid-snapshot, mid-replay) and
checks, incrementally over the whole log, that **no key appears twice** (the window's TTL is
infinite, so "within the window" is "ever") and that the log keeps growing. ``FASTQ_SOAK=1``
raises the cycle count.
"""

from __future__ import annotations

import os
import random
import signal
import struct
import time
import warnings
from pathlib import Path
from typing import NoReturn

import pytest

import fastq

SOAK = os.environ.get("FASTQ_SOAK") == "1"
CYCLES = 2_000 if SOAK else 60
SNAPSHOT_EVERY = 97  # appends between snapshots
OFFSET = struct.Struct("<Q")  # the snapshot file: covered log offset, then the window's bytes
CHILD_DEADLINE = 60.0  # seconds a child may take to die (liveness bound)


def rebuild(log: fastq.SegmentLog, snapshot: Path) -> fastq.DedupWindow:
    """The window as of the log's end: the last snapshot, then the keys appended after it."""
    start = 0
    if snapshot.exists():
        data = snapshot.read_bytes()
        (start,) = OFFSET.unpack_from(data)
        window = fastq.DedupWindow.from_bytes(data[OFFSET.size :], source=str(snapshot))
    else:
        window = fastq.DedupWindow(ttl=float("inf"), max_keys=1 << 20)
    keys = [rec.key or b"" for rec in log.iter(start=start)]  # every record has a key
    if keys:
        window.seen_many(keys)
    return window


def save(window: fastq.DedupWindow, covered: int, snapshot: Path) -> None:
    tmp = snapshot.with_suffix(".tmp")
    tmp.write_bytes(OFFSET.pack(covered) + window.to_bytes())
    os.replace(tmp, snapshot)


def writer(directory: Path, seed: int) -> NoReturn:
    """The child: rebuild, then offer keys and append the new ones until killed."""
    code = 1
    try:
        rnd = random.Random(seed)
        snapshot = directory / "window.snap"
        with fastq.SegmentLog(directory / "log", segment_bytes=256 * 1024) as log:
            window = rebuild(log, snapshot)
            offered = 2 * log.end_offset + 1
            since = 0
            while True:
                offered += 1
                n = offered if rnd.random() < 0.5 else rnd.randrange(offered)
                key = b"key-%d" % n
                if not window.seen(key):
                    log.append(b"v", key=key)
                    since += 1
                    if since == SNAPSHOT_EVERY:
                        save(window, log.end_offset, snapshot)
                        since = 0
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        os._exit(code)


def run_cycle(directory: Path, seed: int, delay: float) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with pytest's threads
        pid = os.fork()
    if pid == 0:
        writer(directory, seed)
    time.sleep(delay)  # the kill moment is the randomised input, not synchronisation
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + CHILD_DEADLINE
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        assert time.monotonic() < deadline, "the killed writer did not exit"
        time.sleep(0.001)
    assert os.WIFSIGNALED(status), f"the writer died by itself (status {status}): see stderr"


@pytest.mark.timeout(4 * 3600 if SOAK else 300)
def test_no_duplicate_key_enters_the_log_across_kill_9(tmp_path: Path, rng: random.Random) -> None:
    fastq.hash_many([])  # imports numpy here, before forking, not in every child
    seen: set[bytes] = set()
    checked = 0
    grew = 0
    for cycle in range(CYCLES):
        run_cycle(tmp_path, rng.randrange(2**32), rng.uniform(0.005, 0.08))
        with fastq.SegmentLog(tmp_path / "log", segment_bytes=256 * 1024) as log:
            end = log.end_offset
            for rec in log.iter(start=checked):
                if rec.offset >= end:
                    break
                key = rec.key
                assert key is not None
                assert key not in seen, (key, rec.offset, cycle, rng)
                seen.add(key)
            grew += end > checked
            checked = end
    assert checked > 0, rng
    assert grew >= CYCLES // 2, (checked, grew, rng)
    # the final state also rebuilds to a window that knows every key in the log
    with fastq.SegmentLog(tmp_path / "log", segment_bytes=256 * 1024) as log:
        window = rebuild(log, tmp_path / "window.snap")
    assert len(window) == len(seen)
    assert all(window.seen_many(sorted(seen))), rng
