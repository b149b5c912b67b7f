"""What a run ran on: framework versions, BLAS, device name and driver, threads, precision settings.

asv results hold numbers only, so the text facts go to an append-only JSON-lines file beside the results,
one line per backend per run: ``<project>/facts/<machine>/<commit>-<env>.jsonl`` (``MTB_MACHINE``, the
host's name unless ``mtb gpu`` names the asv machine).  Why a benchmark was skipped goes beside it, in
``<commit>-<env>.skips.jsonl``.
Numbers that can change a timing are also ``track_`` metrics (``benchmarks/runtime.py``), so they appear
in the history graphs.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import platform
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.harness import settings

if TYPE_CHECKING:  # backends loads the frameworks: the tools read facts files without them
    from benchmarks.harness.backends import Backend


def collect(backend: Backend) -> dict[str, Any]:
    import numpy as np

    return {
        "recorded_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "host": platform.node(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "asv_commit": os.environ.get("ASV_COMMIT"),
        "asv_env": os.environ.get("ASV_ENV_NAME"),
        **backend.settings(),
    }


def host_available_bytes() -> int:
    """Memory the host can give without swapping (``MemAvailable``), else all of it."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def facts_path(
    root: Path | None = None, machine: str | None = None, commit: str | None = None, env: str | None = None
) -> Path | None:
    """Where an asv run's facts go: ``<root>/facts/<machine>/<commit>-<env>.jsonl``, each part this run's
    (asv's environment, ``MTB_MACHINE``) unless given; None outside asv with no ``root``."""
    conf_dir = os.environ.get("ASV_CONF_DIR")
    if root is None and conf_dir is None:
        return None
    base = root if root is not None else Path(conf_dir)  # type: ignore[arg-type]
    commit = (commit or os.environ.get("ASV_COMMIT") or "unknown")[:8]
    env = env or os.environ.get("ASV_ENV_NAME") or "unknown-env"
    return base / "facts" / (machine or settings.read("MTB_MACHINE")) / f"{commit}-{env}.jsonl"


# Files kept beside a run's facts, named ``<commit>-<env>.<kind>.jsonl``: skip reasons (here) and GPU
# clock readings (harness/clocks.py).  Their lines are not run facts.
SIDE_FILES = ("skips", "clocks")


def _suffix(kind: str) -> str:
    """The end of a ``kind`` side file's name."""
    if kind not in SIDE_FILES:
        raise ValueError(f"unknown side file {kind!r}; known: {', '.join(SIDE_FILES)}")
    return f".{kind}.jsonl"


def beside(path: Path, kind: str) -> Path:
    """The ``kind`` file kept beside the run facts at ``path``."""
    return path.with_name(path.name.replace(".jsonl", _suffix(kind)))


def side_files(folder: Path, kind: str, machine: str = "*") -> list[Path]:
    """Every ``kind`` file kept beside run facts under ``folder`` (``facts/``), for one machine or all."""
    return sorted(folder.glob(f"{machine}/*{_suffix(kind)}")) if folder.is_dir() else []


def is_run_facts(path: Path) -> bool:
    """A file of run facts (one line per backend per run), not one kept beside it."""
    return path.name.endswith(".jsonl") and not path.name.endswith(tuple(map(_suffix, SIDE_FILES)))


def skips_path(root: Path | None = None) -> Path | None:
    """Where this asv run's skip reasons go (asv keeps them only in its console output)."""
    path = facts_path(root)
    return None if path is None else beside(path, "skips")


@contextlib.contextmanager
def noting_skips(benchmark: str, params: Sequence[Any]) -> Iterator[None]:
    """An asv skip (``NotImplementedError``) raised inside is recorded with its reason, then re-raised."""
    try:
        yield
    except NotImplementedError as exc:
        entry = {"benchmark": benchmark, "params": [str(p) for p in params], "reason": str(exc)}
        record(entry, skips_path())
        raise


def record(facts: dict[str, Any], path: Path | None) -> None:
    """Append one line: earlier lines are never rewritten."""
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as out:
        out.write(json.dumps(facts, sort_keys=True, default=str) + "\n")


def read(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
