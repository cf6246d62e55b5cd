"""Static checks as tests: mypy --strict (library and user-side examples), stubtest of the
native module against its stub, and ruff. They run in CI through the ordinary test command."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = Path(__file__).with_name("examples.py")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, check=False
    )


def test_mypy_strict_library() -> None:
    proc = run("mypy", "--strict", "--no-incremental", "src/fastq")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_stub_matches_native_module() -> None:
    proc = run("mypy.stubtest", "fastq._core", "--ignore-missing-stub")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ruff_clean() -> None:
    proc = run("ruff", "check", "src", "tests", "benchmarks", "tools")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_revealed_types_from_the_user_side() -> None:
    proc = run("mypy", "--strict", "--no-incremental", str(EXAMPLES))
    pattern = r":(?P<line>\d+): note: Revealed type is \"(?P<type>[^\"]+)\""
    revealed = {int(m["line"]): m["type"] for m in re.finditer(pattern, proc.stdout)}
    expected = {
        n: line.split("# revealed: ", 1)[1].strip()
        for n, line in enumerate(EXAMPLES.read_text().splitlines(), start=1)
        if "# revealed: " in line
    }
    assert expected, "examples.py has no expectations"
    errors = [line for line in proc.stdout.splitlines() if ": error:" in line]
    assert not errors, "\n".join(errors)
    assert revealed == expected


@pytest.mark.parametrize("module", ["fastq", "fastq.errors"])
def test_py_typed_shipped(module: str) -> None:
    pkg = ROOT / "src" / "fastq"
    assert (pkg / "py.typed").exists()
    assert (pkg / "_core.pyi").exists()
    __import__(module)
