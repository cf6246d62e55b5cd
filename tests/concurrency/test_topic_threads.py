"""Topic under threads: 4 keyed publishers, 3 consumer threads of one group that keep leaving
and rejoining (each rejoin is a new member, so partitions move all the time).

Two consumer threads use auto_commit; one commits by hand every few polls and leaves without
committing, so its uncommitted records are delivered again after a takeover. Deliveries are
recorded under one lock right after poll returns (a partition moves only at its owner's next
poll, so the recording order is the delivery order). The checker asserts, per key:

- the first deliveries come in publish order (no record before an earlier one of its key) and
  every published record is delivered (nothing lost);
- within one member's stream a key only moves forward by one, except when that member's
  partition was taken over from a committed offset; an auto-commit member never goes back;
- a record is delivered twice only if an earlier delivery of it was to a hand-committing
  member (a takeover from the committed offset); the duplicates are counted and printed.

Random choices come from the seeded ``rng`` fixture (FASTQ_SEED replays the choices; thread
interleavings differ run to run).
"""

from __future__ import annotations

import random
import threading
from typing import Any

from threads import LIVENESS, Runner

from fastq import Topic

PUBLISHERS = 4
KEYS_PER_PUBLISHER = 3
CONSUMERS = 3


def test_keyed_order_and_no_loss_across_rebalances(rng: Any, stress_scale: float) -> None:
    per_key = int(250 * stress_scale)
    topic = Topic("threads", partitions=6)
    total = PUBLISHERS * KEYS_PER_PUBLISHER * per_key
    lock = threading.Lock()
    deliveries: list[tuple[int, str, int]] = []  # (member id, key, seq) in delivery order
    manual_members: set[int] = set()
    first_seen: set[tuple[str, int]] = set()
    all_seen = threading.Event()
    stop = threading.Event()
    go = threading.Event()
    member_ids = iter(range(10**9))
    stats = {"joins": 0}

    def publisher(i: int, seed: int) -> None:
        r = random.Random(seed)
        keys = [f"p{i}k{j}" for j in range(KEYS_PER_PUBLISHER)]
        nxt = dict.fromkeys(keys, 0)
        go.wait()
        while any(n < per_key for n in nxt.values()):
            k = r.choice([k for k in keys if nxt[k] < per_key])
            if r.random() < 0.3:
                n = min(r.randrange(1, 8), per_key - nxt[k])
                topic.publish_many(range(nxt[k], nxt[k] + n), key=k)
                nxt[k] += n
            else:
                topic.publish(nxt[k], key=k)
                nxt[k] += 1

    def consumer(slot: int, seed: int) -> None:
        r = random.Random(seed)
        manual = slot == CONSUMERS - 1
        go.wait()
        while not stop.is_set():
            with lock:
                mid = next(member_ids)
                stats["joins"] += 1
                if manual:
                    manual_members.add(mid)
            c = topic.consumer("g", auto_commit=not manual)
            for n in range(r.randrange(1, 30)):
                if stop.is_set():
                    break
                recs = c.poll(max_records=r.randrange(1, 40), timeout=0.005)
                with lock:
                    for rec in recs:
                        deliveries.append((mid, rec.key, rec.payload))
                        first_seen.add((rec.key, rec.payload))
                    if len(first_seen) == total:
                        all_seen.set()
                if manual and n % 3 == 2:
                    c.commit()
            c.close()

    seeds = [rng.randrange(2**32) for _ in range(PUBLISHERS + CONSUMERS)]
    pubs = [Runner(lambda i=i, s=seeds[i]: publisher(i, s)) for i in range(PUBLISHERS)]
    cons = [Runner(lambda i=i, s=seeds[PUBLISHERS + i]: consumer(i, s)) for i in range(CONSUMERS)]
    for t in pubs + cons:
        t.start()
    go.set()
    for t in pubs:
        t.finish()
        assert t.error is None, (t.error, rng)
    seen_all = all_seen.wait(3 * LIVENESS)
    stop.set()
    for t in cons:
        t.finish()
        assert t.error is None, (t.error, rng)
    assert sum(topic.end_offsets().values()) == total
    assert seen_all, (f"only {len(first_seen)} of {total} records delivered", rng)

    # ---- checker -----------------------------------------------------------------------------
    delivered_to: dict[tuple[str, int], list[int]] = {}
    next_first: dict[str, int] = {}
    last_in_member: dict[tuple[int, str], int] = {}
    duplicates = backward = 0
    for mid, key, seq in deliveries:
        prev_members = delivered_to.setdefault((key, seq), [])
        if not prev_members:
            # first delivery of this record: publish order per key, nothing skipped
            assert seq == next_first.get(key, 0), (key, seq, next_first.get(key), rng)
            next_first[key] = seq + 1
        else:
            duplicates += 1
            assert any(m in manual_members for m in prev_members), (
                f"{key}:{seq} delivered again to member {mid} although every earlier delivery "
                f"({prev_members}) was to an auto-commit member",
                rng,
            )
        prev_members.append(mid)
        last = last_in_member.get((mid, key))
        if last is not None and seq != last + 1:
            if seq <= last:
                backward += 1
                assert mid in manual_members, (mid, key, last, seq, rng)
            # a forward jump: the records in between went to another member meanwhile
            else:
                assert all(delivered_to.get((key, s)) for s in range(last + 1, seq)), (
                    mid,
                    key,
                    last,
                    seq,
                    rng,
                )
        last_in_member[(mid, key)] = seq
    assert next_first == {
        f"p{i}k{j}": per_key for i in range(PUBLISHERS) for j in range(KEYS_PER_PUBLISHER)
    }, rng
    print(
        f"records={total} deliveries={len(deliveries)} duplicates={duplicates} "
        f"member-restarts={backward} joins={stats['joins']} {rng!r}"
    )
    topic.close()
