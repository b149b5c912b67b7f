"""Importing the suite does no tensor work (asv's forkserver would hang in the forked children)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = r"""
import importlib, json, os, pkgutil, threading
import torch
from torch.overrides import TorchFunctionMode

calls = []

class Record(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        calls.append(getattr(func, "__qualname__", repr(func)))
        return func(*args, **(kwargs or {}))

threads_before = len(os.listdir("/proc/self/task"))
with Record():
    import benchmarks
    modules = []
    for info in pkgutil.walk_packages(benchmarks.__path__, "benchmarks."):
        importlib.import_module(info.name)
        modules.append(info.name)
import sys
print(json.dumps({
    "modules": modules,
    # these two initialise CUDA when imported (measured on an H100): the forked children then fail
    "cuda_initialising_imports": [m for m in ("mlx.core", "torch._inductor.compile_fx") if m in sys.modules],
    "torch_calls": calls,
    "new_threads": len(os.listdir("/proc/self/task")) - threads_before,
}))
"""


def test_importing_every_benchmark_module_runs_no_tensor_op():
    out = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, check=True, timeout=300
    )
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert "benchmarks.ops.linalg" in report["modules"]
    assert report["torch_calls"] == [], f"torch ran at import: {report['torch_calls'][:5]}"
    assert report["cuda_initialising_imports"] == [], "import these lazily, in the benchmark process"
    assert report["new_threads"] == 0, "importing the suite started threads"


def test_the_probe_would_see_tensor_work():
    """The check has teeth: a module that makes a tensor at import is reported."""
    leaky = PROBE.replace("import benchmarks\n", "import benchmarks\n    torch.ones(3)\n")
    out = subprocess.run(
        [sys.executable, "-c", leaky], cwd=ROOT, capture_output=True, text=True, check=True, timeout=300
    )
    assert json.loads(out.stdout.strip().splitlines()[-1])["torch_calls"]
