"""The dedup window's C engine (``fq_dedup.h``) without Python: ``dedup_harness.c`` checks the
SSE2 bucket masks against their scalar definitions, runs random operations against a plain
reference (exact and fingerprint mode, 2-bit fingerprints, sequence numbers started just below
the renumbering point, snapshot and restore in the middle), and feeds every bit flip and
truncation of a snapshot to the decoder. Built plain and with ASan + UBSan.

The meta-test compiles the harness against deliberately broken copies of the header (the
engine's bytes with one line changed) and checks that the harness notices: a harness that
cannot fail proves nothing. No C compiler is a failure, not a skip.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from pathlib import Path

import pytest

SCALE = float(os.environ.get("FASTQ_STRESS_SCALE", "1"))

pytestmark = [pytest.mark.native, pytest.mark.timeout(int(300 * max(1.0, SCALE)))]

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "dedup_harness.c"
INCLUDE = HERE.parents[1] / "src" / "fastq" / "_c"
CFLAGS = ("-g", "-std=c11", "-Wall", "-Wextra", "-Wno-unused-function")
SANITIZE = (
    "-O1",
    "-fsanitize=address,undefined",
    "-fno-sanitize-recover=all",
    "-fno-omit-frame-pointer",
)

# one line of the engine changed, and what the harness must then report
BREAKS = {
    "head-seq-not-advanced": ("    d->head_seq++;", "    ;"),
    "tag-lanes-swapped": (
        "_mm_cmpeq_epi32(fq_dd_halves(b, 1)",
        "_mm_cmpeq_epi32(fq_dd_halves(b, 0)",
    ),
    "no-eviction": ("        while (!fq_dd_pop(d)) {}\n        d->evictions++;", "        ;"),
}


def compile_harness(out: Path, include: Path, *flags: str) -> Path:
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.fail("gcc not found: the native tier needs gcc", pytrace=False)
    cmd = [gcc, *CFLAGS, *flags, f"-I{include}", f"-I{INCLUDE}", str(SOURCE), "-o", str(out), "-lm"]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    print("$", " ".join(cmd))
    assert proc.returncode == 0, proc.stderr
    return out


def run_harness(exe: Path, seed: int, ops: int) -> subprocess.CompletedProcess[str]:
    cmd = [str(exe), str(seed), str(ops)]
    print("$", " ".join(cmd))
    return subprocess.run(cmd, capture_output=True, text=True, timeout=240, check=False)


@pytest.mark.parametrize(
    ("variant", "flags", "ops"),
    [("plain", ("-O2",), 2_000_000), ("asan-ubsan", SANITIZE, 300_000)],
)
def test_engine_against_the_reference(
    tmp_path: Path, rng: random.Random, variant: str, flags: tuple[str, ...], ops: int
) -> None:
    exe = compile_harness(tmp_path / f"dedup_{variant}", INCLUDE, *flags)
    proc = run_harness(exe, rng.randrange(2**32), int(ops * SCALE))
    assert proc.returncode == 0, (variant, proc.stdout[-2000:], proc.stderr[-4000:], rng)
    assert proc.stdout.startswith("OK "), proc.stdout


@pytest.mark.parametrize("name", sorted(BREAKS))
def test_harness_detects_a_broken_engine(tmp_path: Path, name: str) -> None:
    old, new = BREAKS[name]
    header = (INCLUDE / "fq_dedup.h").read_text()
    assert header.count(old) == 1, f"the line to break is gone from fq_dedup.h: {old!r}"
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "fq_dedup.h").write_text(header.replace(old, new))
    exe = compile_harness(tmp_path / "dedup_broken", broken, "-O2")
    proc = run_harness(exe, 1, 200_000)
    assert proc.returncode == 1, (name, proc.returncode, proc.stdout[-2000:])
    assert proc.stdout.startswith("FAIL"), proc.stdout
