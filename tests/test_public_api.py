"""The public surface of fastq, and the layering rule between its sub-packages.

Layers (STYLE.md §3): `_core` and top-level modules -> backends -> semantics -> pipeline -> ops.
A module may import its own layer and the layers below it, never a layer above.
"""

from __future__ import annotations

import ast
import re
import types
from pathlib import Path

import pytest

import fastq

EXPECTED_ALL = (
    "AdaptiveConcurrency",
    "BackendError",
    "BackendUnavailable",
    "CircuitBreaker",
    "CircuitBreakerStatistics",
    "Closed",
    "CodecError",
    "ConcurrencyStatistics",
    "Consumer",
    "ConsumerPool",
    "ConsumerRecord",
    "CorruptLogError",
    "CostEstimate",
    "DeadLetter",
    "DeadLetterGroup",
    "DeadLetterQueue",
    "DeadLetterStatistics",
    "DedupStatistics",
    "DedupWindow",
    "Delivery",
    "Empty",
    "Failure",
    "FakeClock",
    "FastqError",
    "FixedConcurrency",
    "Full",
    "Gap",
    "GapDetector",
    "Histogram",
    "HistogramSnapshot",
    "InvalidReceipt",
    "LogFailedError",
    "LogLockedError",
    "Message",
    "OffsetOutOfRange",
    "Overloaded",
    "Permanent",
    "PoolStatistics",
    "Producer",
    "ProducerStatistics",
    "Queue",
    "QueueStatistics",
    "Record",
    "ReplayReport",
    "RetryPolicy",
    "RingBuffer",
    "RouteDecision",
    "Router",
    "SegmentLog",
    "Sequencer",
    "TokenBucket",
    "Topic",
    "Unsupported",
    "__version__",
    "arun_until_signal",
    "group_by_partition",
    "hash64",
    "hash_many",
    "partition",
    "partition_many",
    "run_until_signal",
)

# Sub-package -> layer. Top-level modules (errors, stats, _core, ...) are layer 0.
# operations (layer 4): metrics and exporters, tracing, logs, the command line and its demo
LAYERS: dict[str, int] = {
    "backends": 1, "semantics": 2, "pipeline": 3,
    "ops": 4, "metrics": 4, "alerts": 4, "cli": 4, "demo": 4,
}
# Modules that wire every layer together and so may import from any of them.
FACADES = frozenset({"fastq", "fastq.__main__", "fastq.testing"})

PACKAGE_DIR = Path(fastq.__file__).resolve().parent


# ---- __all__ ---------------------------------------------------------------------------


def test_all_is_the_expected_sorted_tuple() -> None:
    assert isinstance(fastq.__all__, tuple)
    assert list(fastq.__all__) == sorted(fastq.__all__)
    assert len(set(fastq.__all__)) == len(fastq.__all__)
    assert fastq.__all__ == EXPECTED_ALL


@pytest.mark.parametrize("name", fastq.__all__)
def test_every_name_in_all_exists(name: str) -> None:
    assert hasattr(fastq, name)


def test_every_public_attribute_is_in_all() -> None:
    public = {
        name
        for name, value in vars(fastq).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public <= set(fastq.__all__), public - set(fastq.__all__)


def test_star_import_gives_exactly_all() -> None:
    namespace: dict[str, object] = {}
    exec("from fastq import *", namespace)
    namespace.pop("__builtins__")
    assert set(namespace) == set(fastq.__all__)


def test_version_is_a_pep440_string() -> None:
    assert isinstance(fastq.__version__, str)
    assert re.fullmatch(
        r"\d+\.\d+\.\d+(?:(?:a|b|rc)\d+)?(?:\.post\d+)?(?:\.dev\d+)?", fastq.__version__
    )


def test_exported_exceptions_derive_from_fastq_error() -> None:
    exported = [getattr(fastq, n) for n in fastq.__all__]
    errors = [e for e in exported if isinstance(e, type) and issubclass(e, BaseException)]
    assert {e.__name__ for e in errors} == {
        "Closed",
        "BackendError",
        "BackendUnavailable",
        "CodecError",
        "CorruptLogError",
        "Empty",
        "FastqError",
        "Full",
        "InvalidReceipt",
        "LogFailedError",
        "LogLockedError",
        "OffsetOutOfRange",
        "Overloaded",
        "Permanent",
        "Unsupported",
    }
    for exc in errors:
        assert issubclass(exc, fastq.FastqError), exc


def test_ring_buffer_public_home_is_fastq() -> None:
    assert fastq.RingBuffer is fastq._core.RingBuffer
    assert fastq.RingBuffer.__doc__


# ---- layering ----------------------------------------------------------------------------


def module_name(path: Path, package_dir: Path) -> str:
    """fastq/backends/memory.py -> fastq.backends.memory; fastq/ops/__init__.py -> fastq.ops."""
    parts = [package_dir.name, *path.relative_to(package_dir).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(source: str, module: str, is_package: bool) -> list[tuple[int, str]]:
    """Absolute names of the modules `source` imports, with line numbers (relative resolved)."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                if not is_package:
                    base = base[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found.append((node.lineno, target))
            # `from fastq import pipeline` imports the sub-package too
            found.extend((node.lineno, f"{target}.{alias.name}") for alias in node.names)
    return found


def layer_of(module: str, top: str) -> int | None:
    """The layer of a module inside package `top`; None for modules outside it."""
    parts = module.split(".")
    if parts[0] != top:
        return None
    return LAYERS.get(parts[1], 0) if len(parts) > 1 else 0


def layer_violations(package_dir: Path) -> list[str]:
    top = package_dir.name
    problems = []
    for path in sorted(package_dir.rglob("*.py")):
        module = module_name(path, package_dir)
        if module in FACADES:
            continue
        own = layer_of(module, top)
        assert own is not None
        is_package = path.name == "__init__.py"
        for lineno, target in imported_modules(path.read_text("utf-8"), module, is_package):
            other = layer_of(target, top)
            if other is not None and other > own:
                problems.append(
                    f"{path.relative_to(package_dir.parent)}:{lineno}: {module} (layer {own}) "
                    f"imports {target} (layer {other})"
                )
    return problems


def test_imports_point_down_the_layers() -> None:
    assert layer_violations(PACKAGE_DIR) == []


def write_package(root: Path, files: dict[str, str]) -> Path:
    package = root / "fastq"
    for name, source in files.items():
        path = package / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source, "utf-8")
    return package


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"backends/memory.py": "import fastq.pipeline.producer\n"}, ["fastq.pipeline.producer"]),
        ({"backends/memory.py": "from ..pipeline import producer\n"}, ["fastq.pipeline"]),
        ({"backends/__init__.py": "from fastq import ops\n"}, ["fastq.ops"]),
        ({"semantics/queue.py": "from fastq.ops.metrics import x\n"}, ["fastq.ops.metrics"]),
        ({"errors.py": "from .semantics import Message\n"}, ["fastq.semantics"]),
        ({"pipeline/a/b.py": "from ...ops import cli\n"}, ["fastq.ops"]),
    ],
)
def test_layer_check_catches_upward_imports(
    tmp_path: Path, files: dict[str, str], expected: list[str]
) -> None:
    problems = layer_violations(write_package(tmp_path, files))
    assert len(problems) >= 1
    for name in expected:
        assert any(f"imports {name} " in p for p in problems), problems


def test_layer_check_allows_downward_and_sideways_imports(tmp_path: Path) -> None:
    package = write_package(
        tmp_path,
        {
            "__init__.py": "from .ops import cli\nfrom .pipeline import producer\n",
            "__main__.py": "from fastq.ops.cli import main\n",
            "errors.py": "import queue\n",
            "backends/memory.py": "from .. import errors\nfrom fastq._core import RingBuffer\n",
            "semantics/queue.py": "from ..backends import memory\nfrom . import message\n",
            "pipeline/producer.py": "import fastq.semantics.queue\nimport fastq.backends\n",
            "ops/cli.py": "from fastq.pipeline import producer\nfrom fastq import semantics\n",
        },
    )
    assert layer_violations(package) == []
