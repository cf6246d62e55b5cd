"""R7/F20: importing fastq must not re-enable the GIL on a free-threaded interpreter.

A module built without the ``Py_mod_gil`` slot (Cython: ``freethreading_compatible``) makes
3.13t turn the GIL back on at import with a RuntimeWarning, and every concurrency test then
passes for the wrong reason. The subprocess imports every fastq module in a fresh interpreter
(no PYTHON_GIL override) and reports what it sees; the in-process test checks that the GIL
is still off in the very process that ran the stress tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from typing import Any

from checker import free_threaded_build, gil_enabled

import fastq

PROBE = r"""
import importlib, json, pkgutil, sys, sysconfig, warnings
warnings.simplefilter("always")
with warnings.catch_warnings(record=True) as caught:
    import fastq
    names = ["fastq"] + [m.name for m in pkgutil.walk_packages(fastq.__path__, "fastq.")
                         if m.name != "fastq.__main__"]
    for name in names:
        importlib.import_module(name)
probe = getattr(sys, "_is_gil_enabled", None)
print(json.dumps({
    "modules": sorted(names),
    "core_file": sys.modules["fastq._core"].__file__,
    "has_probe": probe is not None,
    "gil_enabled": None if probe is None else probe(),
    "py_gil_disabled": bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
    "warnings": [f"{w.category.__name__}: {w.message}" for w in caught],
}))
"""


def _probe(*xopts: str) -> tuple[dict[str, Any], str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHON_GIL", "PYTHONWARNINGS")}
    proc = subprocess.run(
        [sys.executable, *xopts, "-W", "always::RuntimeWarning", "-c", PROBE],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, f"probe failed ({proc.returncode}):\n{proc.stderr}"
    lines = proc.stdout.strip().splitlines()
    assert lines, f"probe printed nothing; stderr:\n{proc.stderr}"
    result: dict[str, Any] = json.loads(lines[-1])
    return result, proc.stderr


def test_importing_every_fastq_module_keeps_the_gil_state() -> None:
    result, stderr = _probe()
    assert "fastq._core" in result["modules"], result
    assert result["py_gil_disabled"] == free_threaded_build()
    if free_threaded_build():
        # F20: the GIL stays off after importing everything, and nobody said otherwise
        assert result["has_probe"], result
        assert result["gil_enabled"] is False, (
            f"importing fastq re-enabled the GIL on a free-threaded build: {result}\n{stderr}"
        )
        gil_text = [w for w in result["warnings"] if "GIL" in w or "global interpreter" in w]
        assert not gil_text, gil_text
        assert "GIL" not in stderr, stderr
        assert "global interpreter lock" not in stderr, stderr
    else:
        # a normal build: the GIL is on (3.13+ says so; older versions have no probe)
        assert result["gil_enabled"] in (True, None), result
        assert result["has_probe"] == (sys.version_info >= (3, 13)), result


def test_gil_is_still_disabled_in_this_test_process() -> None:
    """The concurrency suite ran without the GIL on a free-threaded build (nothing it or
    pytest imported turned it back on), and with it on a normal build."""
    assert fastq.RingBuffer is not None
    if free_threaded_build():
        assert gil_enabled() is False, "the GIL is enabled in the test process"
    else:
        assert gil_enabled() is True
        assert not sysconfig.get_config_var("Py_GIL_DISABLED")


def test_probe_sees_an_enabled_gil() -> None:
    """Control: the probe is able to report an enabled GIL (forced with -X gil=1 on a
    free-threaded build; a normal build always has it)."""
    if free_threaded_build():
        result, _ = _probe("-X", "gil=1")
        assert result["gil_enabled"] is True, result
    else:  # 3.13+ reports True; 3.10-3.12 have no probe, and no way to turn the GIL off
        result, _ = _probe()
        assert result["gil_enabled"] in (True, None), result
        assert result["py_gil_disabled"] is False, result


def test_claim_mode_matches_the_build() -> None:
    """GIL builds claim positions with plain stores under the GIL; a free-threaded build must
    get the lock-free CAS claims (the mode the TSan harness and these suites verify)."""
    import fastq._core as core

    assert core._SERIALIZED_MOVERS is (not free_threaded_build())
