"""What every workload shares: one prepared job per process, and a job that does not fit skipped."""

from __future__ import annotations

import pytest

from benchmarks.harness.backends import is_out_of_memory
from benchmarks.harness.frameworks import torch
from benchmarks.workloads import common


@pytest.fixture(autouse=True)
def _fresh_jobs():
    common._jobs.clear()
    yield
    common._jobs.clear()


def _torch_allocation_failure() -> RuntimeError:
    """The error torch's CPU allocator raises for a request no machine can meet (4 PiB)."""
    with pytest.raises(RuntimeError) as failure:
        torch.empty(2**50, dtype=torch.uint8)
    return failure.value


def test_a_job_is_built_once_per_key_and_the_previous_one_released():
    built = []

    def build(name):
        built.append(name)
        return object()

    first = common.prepared(("job", "a"), lambda: build("a"))
    assert common.prepared(("job", "a"), lambda: build("again")) is first
    common.prepared(("job", "b"), lambda: build("b"))
    assert built == ["a", "b"]
    assert list(common._jobs) == [("job", "b")]


def test_a_real_allocation_failure_is_recognised_and_an_ordinary_error_is_not():
    assert is_out_of_memory(_torch_allocation_failure())
    assert is_out_of_memory(MemoryError())
    assert is_out_of_memory(RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert not is_out_of_memory(ValueError("shapes (2, 3) and (4, 5) cannot be multiplied"))


def test_running_out_of_memory_while_building_is_a_skip_naming_the_job():
    def build():
        torch.empty(2**50, dtype=torch.uint8)  # the warm-up step of a job too large for the machine

    with pytest.raises(NotImplementedError) as skip:
        common.prepared(("bert-classification", True, "torch-cpu", "bert-large-cased", 256, 512), build)
    message = str(skip.value)
    assert "bert-classification torch-cpu bert-large-cased 256 512 ran out of memory" in message
    assert "can't allocate memory" in message and "MTB_PROFILE=quick" in message
    assert not common._jobs  # nothing half-built is kept


def test_any_other_failure_while_building_stays_an_error():
    def build():
        raise ValueError("wrong shapes in the model")

    with pytest.raises(ValueError, match="wrong shapes"):
        common.prepared(("job",), build)
