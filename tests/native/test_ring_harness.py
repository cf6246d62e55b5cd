"""R6: the pure-C pthread stress harness over ``fq_ring.h``, built plain and with TSan.

``ring_harness.c`` includes the ring header verbatim (the same bytes ``_core`` compiles), so
these tests exercise the ring without Python in the way: SPSC/2P2C/4P4C (oversubscribed on
2 cores), capacities 1, 2, 3 (rounded up to 4), 64 and 1024, every run crossing the 63-bit
position wrap, with exactly-once / per-producer FIFO / total-FIFO (SPSC) / torn-item checks,
the MP and PO litmus tests, and close() while threads are blocked. See the comment at the
top of ``ring_harness.c`` for what each part checks and what its output lines mean.

Budgets (FASTQ_STRESS_SCALE=1, the PR tier; measured on the 2-core CI-sized machine):

* plain: a target of 10^7 items per configuration, capped at ~0.7 s per configuration
  (11 s per API mode, 16 configurations). Rings of capacity 1-4 hand over about one item per
  park/wake round trip (3-30 us on 2 cores), so those configurations move 4x10^4-7x10^5
  items; capacity 64/1024 move 10^6-6x10^6 (measured: 7-22x10^6 items per mode). Litmus:
  10^6 iterations per test. About 45 s, plus ~15 s for the meta-tests below.
* TSan: a target of 10^6 items per configuration, capped at 2.25 s per configuration
  (36 s per mode; measured 4x10^4-10^6 items each, 5-6.5x10^6 per mode), litmus 2x10^5
  per test. About 2 minutes.

FASTQ_STRESS_SCALE multiplies every count and every time budget (tools/soak.sh). Each
configuration runs in segments of doubling size, each a fresh ring started just below the
wrap, so a time-capped configuration still crosses the wrap once per segment.

The meta-tests build deliberately broken variants (``-DFQ_HARNESS_BREAK=k``) and check that
the harness reports them: a harness that cannot fail proves nothing.

Replay: every run prints its command line; the harness seed is derived from FASTQ_SEED.
No C compiler is a failure, not a skip: CI has gcc, and a skipped check there is a lie.
"""

from __future__ import annotations

import os
import platform
import random
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

SCALE = float(os.environ.get("FASTQ_STRESS_SCALE", "1"))

pytestmark = [pytest.mark.native, pytest.mark.timeout(int(300 * max(1.0, SCALE)))]

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "ring_harness.c"
INCLUDE = HERE.parents[1] / "src" / "fastq" / "_c"

CFLAGS = ("-O2", "-g", "-std=c11", "-pthread", "-Wall", "-Wextra", f"-I{INCLUDE}")
# -Wno-tsan: GCC warns that TSan does not model atomic_thread_fence (fq_ring_new has one;
# it orders nothing another thread relies on, the ring is handed over by pthread_create).
TSAN_FLAGS = ("-fsanitize=thread", "-Wno-tsan")
TSAN_OPTIONS = "halt_on_error=1 exitcode=66 second_deadlock_stack=1"
TSAN_WARNING = "WARNING: ThreadSanitizer"

MODES = ("single", "batch", "mixed")
CONFIGS_PER_MODE = 16  # {1P1C, 2P2C, 4P4C} x {1, 2, 3->4, 64, 1024} + 2P2C cap 64 from position 0

# per variant: items per configuration (target), seconds per mode, litmus iterations,
# close-while-blocked rounds and the latency bound from close() to every blocked thread
BUDGET: dict[str, dict[str, float]] = {
    "plain": {"ops": 1e7, "mode_sec": 11.0, "litmus": 1e6, "close_rounds": 200, "bound_ms": 100},
    "tsan": {"ops": 1e6, "mode_sec": 36.0, "litmus": 2e5, "close_rounds": 50, "bound_ms": 500},
}
STALL_SEC = 30  # the harness fails (exit 3) when nothing moves this long: a lost wake-up

# FQ_HARNESS_BREAK values (see ring_harness.c)
FAULTS = {"loss": 1, "dup": 2, "reorder": 3, "torn": 4, "publish": 5}
NOWAKE = 6

EXIT_CHECK, EXIT_STALL, EXIT_TSAN = 1, 3, 66

STRESS_LINE = re.compile(r"^stress (.*) (OK|FAIL)$", re.MULTILINE)


def _scaled(x: float) -> int:
    return max(1, int(x * SCALE))


# ---- building ------------------------------------------------------------------------------

Builder = Callable[..., Path]


@pytest.fixture(scope="session")
def build(tmp_path_factory: pytest.TempPathFactory) -> Builder:
    """Compile the harness (once per variant per session) into a temp dir, never the repo."""
    outdir = tmp_path_factory.mktemp("ring_harness")
    built: dict[tuple[str, ...], Path] = {}

    def _build(*flags: str) -> Path:
        if flags in built:
            return built[flags]
        gcc = shutil.which("gcc")
        if gcc is None:
            pytest.fail("gcc not found: the native tier (R6) needs gcc with TSan", pytrace=False)
        exe = outdir / f"ring_harness{len(built)}"
        cmd = [gcc, *CFLAGS, *flags, str(SOURCE), "-o", str(exe)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        print("$", " ".join(cmd))
        if proc.stderr:
            print(proc.stderr)
        if proc.returncode != 0:
            pytest.fail(f"harness build failed:\n{' '.join(cmd)}\n{proc.stderr}", pytrace=False)
        built[flags] = exe
        return exe

    return _build


def _flags(variant: str) -> tuple[str, ...]:
    return TSAN_FLAGS if variant == "tsan" else ()


# ---- running -------------------------------------------------------------------------------


Proc = subprocess.CompletedProcess[str]


def _run(exe: Path, args: list[str], *, tsan: bool, timeout: float) -> Proc:
    """Run the harness, echoing its command line and output (shown by pytest on failure)."""
    env = dict(os.environ)
    if tsan:
        env["TSAN_OPTIONS"] = TSAN_OPTIONS
    cmd = [str(exe), *args]
    print("$", (f"TSAN_OPTIONS='{TSAN_OPTIONS}' " if tsan else "") + " ".join(cmd))
    t0 = time.monotonic()

    def once(cmd: list[str]) -> Proc:
        return subprocess.run(
            cmd, capture_output=True, text=True, env=env, timeout=timeout, check=False
        )

    proc = once(cmd)
    if tsan and "unexpected memory mapping" in proc.stderr and shutil.which("setarch"):
        # TSan's shadow layout vs. high mmap ASLR entropy on some kernels: retry without ASLR
        cmd = ["setarch", platform.machine(), "-R", *cmd]
        print("$ (retry without ASLR)", " ".join(cmd))
        proc = once(cmd)
    print(proc.stdout)
    if proc.stderr:
        print(proc.stderr[-20000:])
    print(f"exit {proc.returncode} after {time.monotonic() - t0:.1f} s")
    return proc


def _assert_passed(proc: Proc, *, tsan: bool) -> None:
    failed = [line for line in proc.stdout.splitlines() if line.endswith("FAIL")]
    assert proc.returncode == 0, (
        f"ring harness exit {proc.returncode} (1: check failed, 3: stall/lost wake-up, "
        f"66: TSan report): {failed or proc.stderr[-3000:]}"
    )
    assert "RESULT: PASS" in proc.stdout
    if tsan:
        assert TSAN_WARNING not in proc.stderr, proc.stderr[-5000:]


def _seed(rng: random.Random) -> str:
    """The harness seed: derived from FASTQ_SEED through the rng fixture, printed for replay."""
    seed = rng.randrange(2**32)
    fastq_seed = os.environ.get("FASTQ_SEED", "unset: the session seed is in the report header")
    print(f"harness seed {seed} (FASTQ_SEED={fastq_seed})")
    return str(seed)


def _fields(line: str) -> dict[str, str]:
    return dict(kv.split("=", 1) for kv in line.split() if "=" in kv)


# ---- the PR-tier runs ------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("variant", ["plain", "tsan"])
def test_stress(build: Builder, rng: random.Random, variant: str, mode: str) -> None:
    """All 16 configurations of one API mode: no loss, dup, reorder or torn item, wrap crossed."""
    budget = BUDGET[variant]
    mode_sec = budget["mode_sec"] * SCALE
    exe = build(*_flags(variant))
    config_sec = mode_sec / CONFIGS_PER_MODE
    args = (
        f"{_scaled(budget['ops'])} {_seed(rng)} --only stress --mode {mode}"
        f" --config-sec {config_sec:.3f} --stall-sec {STALL_SEC}"
    ).split()
    proc = _run(exe, args, tsan=variant == "tsan", timeout=3 * mode_sec + 4 * STALL_SEC + 60)
    _assert_passed(proc, tsan=variant == "tsan")

    lines = STRESS_LINE.findall(proc.stdout)
    assert len(lines) == CONFIGS_PER_MODE, proc.stdout
    total = 0
    for text, verdict in lines:
        f = _fields(text)
        assert verdict == "OK", text
        assert all(f[k] == "0" for k in ("lost", "dup", "reorder", "fifo", "torn", "status")), text
        assert f["pos"] == "ok", text
        assert f["wrap"] == ("no" if f["start"] == "0x0000000000000000" else "yes"), text
        assert int(f["ops"]) >= min(_scaled(budget["ops"]), 16384), text  # >= one whole segment
        total += int(f["ops"])
    print(f"{variant}/{mode}: {total} items over {len(lines)} configurations")


@pytest.mark.parametrize("variant", ["plain", "tsan"])
def test_litmus(build: Builder, rng: random.Random, variant: str) -> None:
    """MP (payload visible after get) and PO (publish(p+1) never seen before publish(p))."""
    iters = _scaled(BUDGET[variant]["litmus"])
    exe = build(*_flags(variant))
    args = f"1 {_seed(rng)} --only litmus --litmus {iters} --stall-sec {STALL_SEC}".split()
    proc = _run(exe, args, tsan=variant == "tsan", timeout=300 * max(1.0, SCALE))
    _assert_passed(proc, tsan=variant == "tsan")
    pattern = r"^litmus (MP|PO) .*violations=(\d+) .* (OK|FAIL)$"
    results = re.findall(pattern, proc.stdout, re.MULTILINE)
    assert sorted(name for name, _, _ in results) == ["MP", "MP", "PO", "PO"], proc.stdout
    assert all(v == "0" and ok == "OK" for _, v, ok in results), proc.stdout


@pytest.mark.parametrize("variant", ["plain", "tsan"])
def test_close_while_blocked(build: Builder, rng: random.Random, variant: str) -> None:
    """Threads parked in get/put (single and batch paths) all return FQ_CLOSED within the bound."""
    budget = BUDGET[variant]
    exe = build(*_flags(variant))
    args = (
        f"1 {_seed(rng)} --only close --close-rounds {_scaled(budget['close_rounds'])}"
        f" --close-bound-ms {int(budget['bound_ms'])} --stall-sec {STALL_SEC}"
    ).split()
    proc = _run(exe, args, tsan=variant == "tsan", timeout=300 * max(1.0, SCALE))
    _assert_passed(proc, tsan=variant == "tsan")
    (line,) = re.findall(r"^close .*$", proc.stdout, re.MULTILINE)
    f = _fields(line)
    assert f["failures"] == "0", line
    # half the rounds wait until every blocked thread sleeps in the futex before closing:
    # make sure that really happened (else the check would only cover the spinning phase)
    assert int(f["parked_rounds"]) >= int(f["rounds"]) // 4, line


# ---- the harness can fail --------------------------------------------------------------------


@pytest.mark.parametrize("fault", list(FAULTS))
def test_harness_detects_fault(build: Builder, fault: str) -> None:
    """Injected loss/dup/reorder/torn items, and a publish-before-write fill, are reported.

    4000 items per configuration: below the item pool size, so an item lost for good (the
    publish bug) cannot stall its producer, which would wait to reuse the item struct.
    """
    exe = build(f"-DFQ_HARNESS_BREAK={FAULTS[fault]}")
    mode = "batch" if fault == "publish" else "mixed"  # the broken fill is on the batch path
    args = ["4000", "1", "--only", "stress", "--mode", mode, "--stall-sec", "10"]
    proc = _run(exe, args, tsan=False, timeout=300)
    assert proc.returncode == EXIT_CHECK, f"exit {proc.returncode}: injected {fault} not reported"
    assert "RESULT: FAIL" in proc.stdout
    counters = {
        "loss": ("lost",),
        "dup": ("dup",),
        "reorder": ("reorder", "fifo"),
        "torn": ("torn",),
        "publish": ("torn", "lost", "dup"),
    }[fault]
    flagged = [
        text
        for text, verdict in STRESS_LINE.findall(proc.stdout)
        if verdict == "FAIL" and any(_fields(text)[c] != "0" for c in counters)
    ]
    assert flagged, f"no configuration reported {counters} for the injected {fault}"


def test_harness_detects_lost_wakeup(build: Builder) -> None:
    """Producers that skip every 100th wake-up leave a taker parked: the watchdog reports it."""
    exe = build(f"-DFQ_HARNESS_BREAK={NOWAKE}")
    args = ["20000", "1", "--only", "stress", "--mode", "single", "--stall-sec", "2"]
    proc = _run(exe, args, tsan=False, timeout=300)
    assert proc.returncode == EXIT_STALL, f"exit {proc.returncode}: the lost wake-up went unnoticed"
    assert "STALL" in proc.stderr


def test_tsan_detects_publish_race(build: Builder) -> None:
    """TSan flags the publish-before-write fill (the harness's TSan leg can fail too)."""
    exe = build(*TSAN_FLAGS, f"-DFQ_HARNESS_BREAK={FAULTS['publish']}")
    proc = _run(exe, ["1", "1", "--only", "litmus", "--litmus", "20000"], tsan=True, timeout=300)
    assert proc.returncode == EXIT_TSAN, f"exit {proc.returncode}: TSan did not stop the run"
    assert f"{TSAN_WARNING}: data race" in proc.stderr
