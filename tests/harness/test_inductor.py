"""The vector ISA handed to inductor is the one inductor picks by itself, and a wrong stored answer
never decides what is compiled."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(
    platform.machine() not in ("x86_64", "AMD64"), reason="inductor's ISA probe is x86 only here"
)

ROOT = Path(__file__).resolve().parents[2]


def _python(code: str, cache: Path) -> dict:
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(cache), "PYTHONPATH": str(ROOT)}
    env.pop("TORCHINDUCTOR_VEC_ISA_OK", None)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True, cwd=ROOT
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


SETTLED = (
    "import json\n"
    "from benchmarks.harness import inductor\n"
    "name = inductor.settle_vec_isa()\n"
    "from torch._inductor import config\n"
    "from torch._inductor.cpu_vec_isa import pick_vec_isa\n"
    "isa = pick_vec_isa()\n"
    "print(json.dumps({'name': name, 'picked': str(isa),"
    " 'flags': isa.build_arch_flags() if isa.bit_width() else '',"
    " 'vec_isa_ok': config.cpp.vec_isa_ok, 'file': str(inductor._answer_file())}))\n"
)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One inductor cache for the module: its test builds are compiled once."""
    return tmp_path_factory.mktemp("inductor-cache")


@pytest.fixture(scope="module")
def first(cache: Path) -> dict:
    """A process with nothing stored: it asks inductor in a subprocess and stores the answer."""
    return _python(SETTLED, cache)


def test_settled_isa_is_inductors_own_pick(cache: Path, first: dict) -> None:
    # the stored answer is what a plain process's inductor picked with nothing handed to it
    plain = json.loads(Path(first["file"]).read_text())
    second = _python(SETTLED, cache)  # reads the stored answer
    for settled in (first, second):
        assert settled["name"] == settled["picked"] == plain["name"]
        assert settled["flags"] == plain["arch_flags"]
    assert second["vec_isa_ok"] is not None  # the stored answer was used, not inductor's probe


def test_a_wrong_stored_answer_falls_back_to_inductors_probe(cache: Path, first: dict) -> None:
    Path(first["file"]).write_text(json.dumps({"name": "avx2", "bit_width": 256, "arch_flags": "-mbogus"}))
    settled = _python(SETTLED, cache)
    assert settled["name"] == settled["picked"] == first["name"]
    assert settled["flags"] == first["flags"]
    assert settled["vec_isa_ok"] is None  # inductor decided on its own
