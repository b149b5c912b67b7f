"""Importing the suite does no tensor work (asv's forkserver would hang in the forked children)."""

from __future__ import annotations

import json
import os
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
        name = getattr(func, "__qualname__", repr(func))
        if name != "device":  # torch.device(...) names a device; inductor's modules make some at import
            calls.append(name)
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
    # MLX's CUDA build initialises CUDA when imported (measured on an H100): the forked children fail
    "cuda_initialising_imports": [m for m in ("mlx.core",) if m in sys.modules],
    # so does inductor, unless torch.cuda.is_available() asks NVML instead of the driver
    "inductor_loaded": "torch._inductor.compile_fx" in sys.modules,
    "nvml_check": os.environ.get("PYTORCH_NVML_BASED_CUDA_CHECK"),
    "compile_threads": os.environ.get("TORCHINDUCTOR_COMPILE_THREADS"),
    "inductor_compile_threads": getattr(sys.modules.get("torch._inductor.config"), "compile_threads", None),
    "torch_calls": calls,
    "new_threads": len(os.listdir("/proc/self/task")) - threads_before,
}))
"""


def _probe(**env: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
        env={k: v for k, v in {**os.environ, **env}.items() if v is not None},
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_importing_every_benchmark_module_runs_no_tensor_op():
    report = _probe(MTB_BACKENDS="all")
    assert "benchmarks.ops.linalg" in report["modules"]
    assert report["torch_calls"] == [], f"torch ran at import: {report['torch_calls'][:5]}"
    assert report["cuda_initialising_imports"] == [], "import these lazily, in the benchmark process"
    assert report["new_threads"] == 0, "importing the suite started threads"
    # torch-compile is selected: its compiler is loaded before the fork, with the NVML check on
    assert report["inductor_loaded"] and report["nvml_check"] == "1"


def test_compiling_stays_in_the_benchmark_process_unless_the_user_says_otherwise():
    # inductor's pool of compile workers would start with every torch-compile benchmark process
    report = _probe(MTB_BACKENDS="all", TORCHINDUCTOR_COMPILE_THREADS=None)
    assert report["compile_threads"] == "1" and report["inductor_compile_threads"] == 1
    report = _probe(MTB_BACKENDS="all", TORCHINDUCTOR_COMPILE_THREADS="4")
    assert report["compile_threads"] == "4" and report["inductor_compile_threads"] == 4


def test_the_compiler_is_loaded_only_where_it_is_used_and_safe():
    assert not _probe(MTB_BACKENDS="torch-cpu,mlx-cpu")["inductor_loaded"], "no torch-compile selected"
    # a user who asks torch to check CUDA through the driver keeps inductor out of the parent
    report = _probe(MTB_BACKENDS="all", PYTORCH_NVML_BASED_CUDA_CHECK="0")
    assert not report["inductor_loaded"] and report["nvml_check"] == "0"


FORKED_COMPILE = r"""
import os
import benchmarks.harness.frameworks as f
assert f.TORCH_COMPILER_PRELOADED
torch = f.torch
pid = os.fork()
if pid == 0:
    x = torch.arange(8.0)
    y = torch.compile(lambda t: torch.nn.functional.gelu(t) * 2, dynamic=False)(x)
    os._exit(0 if torch.allclose(y, torch.nn.functional.gelu(x) * 2) else 3)
_, status = os.waitpid(pid, 0)
print("child", os.waitstatus_to_exitcode(status))
"""


def test_a_forked_child_compiles_with_the_preloaded_compiler():
    """A fork after the preload compiles and computes the right values (on a CPU: CUDA's own
    re-initialisation error shows only on a CUDA host, with MTB_TEST_BACKENDS naming its backends)."""
    out = subprocess.run(
        [sys.executable, "-c", FORKED_COMPILE],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "MTB_BACKENDS": "torch-cpu,torch-compile"},
    )
    assert out.stdout.strip().endswith("child 0"), out.stderr[-2000:]


def test_the_probe_would_see_tensor_work():
    """The check has teeth: a module that makes a tensor at import is reported."""
    leaky = PROBE.replace("import benchmarks\n", "import benchmarks\n    torch.ones(3)\n")
    out = subprocess.run(
        [sys.executable, "-c", leaky], cwd=ROOT, capture_output=True, text=True, check=True, timeout=300
    )
    assert json.loads(out.stdout.strip().splitlines()[-1])["torch_calls"]


def test_the_command_line_loads_no_framework_and_leaves_its_environment_alone():
    """``mtb``'s own process starts asv and other MLX builds' processes with its environment: the
    frameworks' import-time settings (kernel cache folder, compiler workers) must not leak into it."""
    probe = (
        "import json, os, sys; before = dict(os.environ); import tools.mtb; "
        "print(json.dumps({'loaded': [m for m in ('torch', 'mlx', 'mlx.core') if m in sys.modules], "
        "'set': sorted(k for k in os.environ if os.environ.get(k) != before.get(k))}))"
    )
    settings = ("MTB_", "MLX_", "TORCHINDUCTOR_", "PYTORCH_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(settings)}
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"loaded": [], "set": []}
