"""The README is part of the contract: its two set-up commands and its example must stay true."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_readme_opens_with_the_two_commands() -> None:
    blocks = re.findall(r"```bash\n(.*?)\n```", README, flags=re.S)
    assert len(blocks) >= 2
    head = README.split("\n## ", 1)[0]
    assert head.count("```bash") == 2, "exactly two set-up commands before the first section"
    main_job, tests = blocks[0].strip(), blocks[1].strip()
    assert "fastq demo" in main_job
    assert "pytest" in tests


def test_ci_runs_the_readme_test_command() -> None:
    tests = re.findall(r"```bash\n(.*?)\n```", README, flags=re.S)[1].strip()
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert tests in [line.strip() for line in ci], ".ci/run must call the README's test command"


EXAMPLES = re.findall(r"```python\n(.*?)\n```", README, flags=re.S)


def test_readme_has_examples() -> None:
    assert len(EXAMPLES) >= 3  # RingBuffer, SegmentLog, hashing and dedup


@pytest.mark.parametrize("example", EXAMPLES, ids=[f"example{i}" for i in range(len(EXAMPLES))])
def test_readme_example_runs(example: str, request: pytest.FixtureRequest) -> None:
    env = dict(os.environ)
    if "FASTQ_REDIS_URL" in example:  # the Redis Streams example: the tests' own server
        env["FASTQ_REDIS_URL"] = request.getfixturevalue("redis_url")
    proc = subprocess.run(
        [sys.executable, "-c", example], capture_output=True, text=True, timeout=120, env=env
    )
    assert proc.returncode == 0, proc.stderr
