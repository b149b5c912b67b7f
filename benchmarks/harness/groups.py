"""A grouped run: every parameter set of one op on one backend measured in one process.

asv gives each parameter set a process of its own.  On a GPU that process mostly starts up: measured on
an H200 over the full op matrix, 0.3-0.4 s for the device context and the inputs (1.4-2.8 s with
torch.compile's compilation) and 0.13 s between processes, around 0.2 s of probes and samples; about
1060 such processes made the op matrix a half-hour run.  In a grouped run (the accelerator plan of
harness/profiles.py), the first asv process of a group (one op, one backend, one float32 matmul mode,
since MLX reads its TF32 switch once per process) forks a measuring process that takes every parameter
set of the group in turn, in the device context and with the compiler it already has, and leaves each
one's figures in the run's scratch folder (harness/probes.py's file, with the samples added).  Every asv
process of the group then hands asv its parameter set's samples through ``timing.replay_clock``, and the
``track_`` processes read the probes as in any run.

Each parameter set is measured as in a process of its own: prepared afresh (torch.compile's cache of the
group's earlier sets dropped, so that every set is compiled for its own shapes instead of falling back to
eager once dynamo's recompile limit is reached), peak memory first, the other probes, then the profile's
samples, each a warm-up burst and a timed batch (harness/timing.py).  A set that fails, or a crash, ends
the measuring process (an illegal memory access poisons a CUDA context for good); the rest of the group is
measured by a new one.  Where this process cannot fork (a device is already in use here: a test, the fidelity
command), the group is measured here.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from benchmarks.harness import clocks, probes
from benchmarks.harness.backends import selected_backend_names
from benchmarks.harness.frameworks import fork_is_safe
from benchmarks.harness.opspec import OpSpec
from benchmarks.harness.profiles import Profile
from benchmarks.harness.run import TF32, draw_ahead, prepare_recorded
from benchmarks.harness.settings import device_class_of_name

# One parameter set that takes longer than this (compiling, probing and sampling) is stopped and failed
# as a hang: asv's own limit for a benchmark process was the same.
STALL_SECONDS = 600.0
LOG_TAIL_LINES = 12
# A measuring process ends after a set that failed: the error may have left its device unusable (MLX
# 0.32.4 on CUDA raised "illegal memory access" for one Conv1d set, then every later set in the same
# process failed to allocate), so the next set starts in a fresh process, as it would in a run of its own.
RESTART_AFTER_ERROR = 75
# a set whose probes were measured but whose samples could not be taken
TIMING_ERROR = "timing_error"

Params = tuple[str, str, str]  # case, dtype, backend


def math_mode(dtype: str) -> str:
    return "tf32" if dtype == TF32 else "default"


def group_members(cases: Sequence[str], dtypes: Sequence[str], backend: str, dtype: str) -> list[Params]:
    """The parameter sets measured with ``(…, dtype, backend)``, in asv's order."""
    mode = math_mode(dtype)
    return [(c, d, backend) for c in cases for d in dtypes if math_mode(d) == mode]


def measure_one(spec: OpSpec, params: Params, profile: Profile) -> dict[str, Any]:
    """One parameter set, as a process of its own would measure it: the probes' figures and errors, the
    samples; or ``{"skip": reason}``; or ``{"error": text}``."""
    try:
        run = prepare_recorded(spec, *params, profile)
    except NotImplementedError as exc:
        return {"skip": str(exc)}
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    try:
        # a probe that fails is noted there, for its own metric
        found = probes.measure_recorded((spec.name, *params, profile.name), run)
        try:
            samples = []
            for _ in range(profile.repeat):
                run.timed.warm_up()
                samples.append(run.timed.sample())
                clocks.record_sample(spec.name, params, len(samples), profile.repeat, run.backend)
            found["samples"] = samples
        except Exception as exc:  # the probes' figures stand; the timing fails alone
            found[TIMING_ERROR] = f"{type(exc).__name__}: {exc}"
        return found
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    finally:
        run.release(full_collect=False)


def failed(found: dict[str, Any]) -> bool:
    return "error" in found or TIMING_ERROR in found


@dataclass(frozen=True)
class Group:
    """The parameter sets of one op measured together in a run whose figures go to ``scratch``."""

    scratch: str
    spec: OpSpec
    profile: Profile

    def file(self, params: Sequence[str]) -> Path:
        return probes.probe_file(self.scratch, (self.spec.name, *params, self.profile.name))

    def unmeasured(self, members: Sequence[Params]) -> list[Params]:
        return [p for p in members if not self.file(p).exists()]

    def measure_in_turn(self, members: Sequence[Params], stop_after_error: bool = False) -> bool:
        """Measure ``members`` in order; True if it stopped after a set that failed (the rest are left
        for a fresh process)."""
        for params in members:
            found = measure_one(self.spec, params, self.profile)
            probes.store(self.file(params), found)
            if stop_after_error and failed(found):
                return True
        return False

    def fork_measuring(self, members: Sequence[Params], log: Path) -> int:
        sys.stdout.flush()
        sys.stderr.flush()
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # the measuring process: its output goes to the group's log, read if it dies
            code = 0
            try:
                _die_with_parent(parent)
                fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
                os.dup2(fd, 1)
                os.dup2(fd, 2)
                os.close(fd)
                if self.measure_in_turn(members, stop_after_error=True):
                    code = RESTART_AFTER_ERROR
            except BaseException:
                traceback.print_exc()
                code = 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        return pid


def _die_with_parent(parent: int) -> None:
    """The measuring process ends with asv's process (stopped at its timeout, or killed): left running,
    it would go on timing on the GPU beside the next group's."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != parent:  # it died before the request was in place
        os._exit(1)


def _log_tail(log: Path) -> str:
    with contextlib.suppress(OSError):
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
        if lines:
            return ": " + " | ".join(lines[-LOG_TAIL_LINES:])
    return ""


def _wait(pid: int, left: Callable[[], int], stall_seconds: float) -> tuple[int | None, str]:
    """Wait for the measuring process; stop it when no parameter set has finished for ``stall_seconds``.
    Its exit code (None if a signal ended it) and how it ended, in words."""
    remaining, last_change = left(), time.monotonic()
    while True:
        finished, status = os.waitpid(pid, os.WNOHANG)
        if finished:
            if os.WIFSIGNALED(status):
                return None, f"was killed by signal {os.WTERMSIG(status)}"
            code = os.waitstatus_to_exitcode(status)
            return code, f"exited with status {code}"
        now = left()
        if now != remaining:
            remaining, last_change = now, time.monotonic()
        elif time.monotonic() - last_change > stall_seconds:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return None, f"was stopped after {stall_seconds:.0f} s without finishing it"
        time.sleep(0.02)


def measure_group(group: Group, members: Sequence[Params], stall_seconds: float = STALL_SECONDS) -> None:
    """Every parameter set of ``members`` not yet measured in this run, each left in the scratch folder
    (a figure, a skip or an error): in forked measuring processes where this process can fork, else here."""
    pending = group.unmeasured(members)
    if not pending:
        return
    started, began = time.perf_counter(), clocks.now()
    drawn = draw_ahead(group.spec, group.profile, [case for case, _, _ in pending])
    names = selected_backend_names()
    if drawn and any(device_class_of_name(backend, names) == "gpu" for _, _, backend in pending):
        seconds = round(time.perf_counter() - started, 3)
        clocks.record_host(group.spec.name, clocks.DRAWN_AHEAD, began, {"cases": drawn, "seconds": seconds})
    if not fork_is_safe():
        group.measure_in_turn(pending)
        return
    log = Path(group.scratch) / f"group-{os.getpid()}.log"
    while pending:
        log.write_text("")
        pid = group.fork_measuring(pending, log)
        code, ended = _wait(pid, partial(lambda asked: len(group.unmeasured(asked)), pending), stall_seconds)
        pending = group.unmeasured(pending)
        if pending and code != RESTART_AFTER_ERROR:
            # sets are measured in order: the first one left is the one it was measuring
            failed, *pending = pending
            error = (
                f"the measuring process of {group.spec.name} on {failed[2]} {ended} while measuring "
                f"this parameter set{_log_tail(log)}"
            )
            probes.store(group.file(failed), {"error": error})
    log.unlink(missing_ok=True)


class Replay:
    """The figures a grouped run measured for its parameter sets, read once per process, and their samples
    handed to asv's clock one per sample, by one process only: a set is measured once, so asv's rounds,
    ``number`` and ``warmup_time`` must stay as the class sets them (one round, one call a sample, no
    warm-up), or a sample would be given twice."""

    def __init__(self) -> None:
        self._figures: dict[Path, dict[str, Any]] = {}
        self._given: dict[Path, int] = {}

    def figures(self, path: Path) -> dict[str, Any]:
        """The set's figures (asv re-runs the setup that asks for them before every sample)."""
        if path not in self._figures:
            self._figures[path] = json.loads(path.read_text())
        return self._figures[path]

    def next_sample(self, found: dict[str, Any], path: Path, key: Sequence[str]) -> float:
        if TIMING_ERROR in found:
            raise RuntimeError(found[TIMING_ERROR])
        samples = found.get("samples")
        if not samples:
            raise RuntimeError(f"no samples were measured for {list(key)}")
        index = self._given.get(path, 0)
        if index == 0:
            try:  # the first process to hand them on marks them
                os.close(os.open(path.with_suffix(".replayed"), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                raise RuntimeError(f"{REPLAY_RULE}: its samples were given once in this run") from None
        if index >= len(samples):
            raise RuntimeError(f"{REPLAY_RULE}: asv asked for sample {index + 1} of {len(samples)}")
        self._given[path] = index + 1
        return float(samples[index])


REPLAY_RULE = (
    "a grouped run measures each parameter set once (its accelerator plan): run it with one round and "
    "without -a overrides of number, warmup_time or repeat"
)
