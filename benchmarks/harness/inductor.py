"""torch.compile's choice of C++ vector instruction set, asked once per machine instead of per process.

On a CPU, the first ``torch.compile`` in a process has inductor find the widest vector ISA (AMX,
AVX-512, AVX2, ...) that both the CPU and the C++ compiler support, by building and loading a test
library per candidate.  Measured here (torch 2.13.0, 2-core VM): a fresh benchmark process's first
compile takes 3.4 s, 2.2 s when the answer is known, and a quick point runs ~30 such processes.  The
answer depends only on the CPU, the compiler and torch, so a subprocess asks inductor once, the answer
is stored in inductor's own cache folder under a key made of those, and each benchmark process hands it
to inductor's settings (``cpp.vec_isa_ok``, ``cpp.simdlen``) before compiling.  inductor still runs
its finer checks (bf16, VNNI, AMX-fp16 flags) and picks the ISA itself; if it picks another one than
the stored answer, its caches are cleared and it probes as usual.  Generated code is therefore the
same as without this module; only the repeated probe is saved.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchmarks.harness.frameworks import torch

_ASK_INDUCTOR = (
    "import json\n"
    "from torch._inductor.cpu_vec_isa import pick_vec_isa\n"
    "isa = pick_vec_isa()\n"
    "print(json.dumps({'name': str(isa), 'bit_width': isa.bit_width(),"
    " 'arch_flags': isa.build_arch_flags() if isa.bit_width() else ''}))\n"
)


def _cpu_flags() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor()
    for line in text.splitlines():
        if line.startswith(("flags", "Features", "features")):
            return line
    return ""


def _compiler_identity() -> str:
    name = os.environ.get("CXX", "clang++" if sys.platform == "darwin" else "g++")
    path = shutil.which(name)
    if path is None:
        return f"{name}: not found"
    stat = os.stat(os.path.realpath(path))
    return f"{os.path.realpath(path)}:{stat.st_size}:{stat.st_mtime_ns}"


def machine_key() -> str:
    """What the answer depends on: torch, the CPU, the compiler and inductor's own overrides."""
    parts = [
        str(torch.__version__),
        os.path.dirname(torch.__file__),
        platform.machine(),
        _cpu_flags(),
        _compiler_identity(),
        os.environ.get("ATEN_CPU_CAPABILITY", ""),
        os.environ.get("TORCHINDUCTOR_VEC_ISA_OK", ""),
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:24]


def _answer_file() -> Path:
    from torch._inductor.runtime.cache_dir_utils import cache_dir

    return Path(cache_dir()) / f"mtb-vec-isa-{machine_key()}.json"


def stored_answer() -> dict[str, Any]:
    """inductor's pick on this machine: read from the cache file, or asked in a subprocess and stored."""
    path = _answer_file()
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        pass
    done = subprocess.run([sys.executable, "-c", _ASK_INDUCTOR], capture_output=True, text=True, check=True)
    answer = dict(json.loads(done.stdout.strip().splitlines()[-1]))
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.tmp")
    partial.write_text(json.dumps(answer))
    os.replace(partial, path)
    return answer


def _forget_answers() -> None:
    from torch._inductor import config, cpu_vec_isa

    config.cpp.vec_isa_ok = None
    config.cpp.simdlen = None
    cpu_vec_isa.valid_vec_isa_list.cache_clear()
    classes = [cpu_vec_isa.VecISA]
    while classes:
        cls = classes.pop()
        classes.extend(cls.__subclasses__())
        for attribute in vars(cls).values():
            if hasattr(attribute, "cache_clear"):
                attribute.cache_clear()


def settled_vec_isa() -> str:
    """The ISA inductor compiles for in this process (recorded with the backend's settings)."""
    from torch._inductor import cpu_vec_isa

    return str(cpu_vec_isa.pick_vec_isa())


def settle_vec_isa() -> str:
    """Give inductor the stored answer before the process's first CPU compile; return the ISA picked."""
    from torch._inductor import config, cpu_vec_isa

    if platform.machine() not in ("x86_64", "AMD64") or config.cpp.vec_isa_ok is not None:
        return settled_vec_isa()
    answer = stored_answer()
    width = int(answer["bit_width"])
    config.cpp.vec_isa_ok = width > 0
    config.cpp.simdlen = width or None
    picked = cpu_vec_isa.pick_vec_isa()
    flags = picked.build_arch_flags() if picked.bit_width() else ""
    if str(picked) != answer["name"] or flags != answer["arch_flags"]:
        _forget_answers()
        picked = cpu_vec_isa.pick_vec_isa()
    return str(picked)
