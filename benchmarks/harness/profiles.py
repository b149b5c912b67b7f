"""Size profiles: which shapes, dtypes and timing budgets a run uses.

``MTB_PROFILE`` picks one: ``quick`` (shapes scaled to fit a 2-core VM; the CI and default run) or
``full`` (the reference shapes of the published op tables).  Each op declares its shapes for both
profiles beside its definition; this module owns everything else a profile decides.  The profile is read
when the suite is imported, because asv fixes parameter values at discovery: quick and full runs
therefore record different parameter values and never mix in one history line.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from benchmarks.harness import settings
from benchmarks.harness.settings import PROFILE_NAMES, device_class_of_name
from benchmarks.harness.timing import SamplePlan


class ProfileError(settings.SettingError):
    pass


@dataclass(frozen=True)
class Profile:
    name: str
    # dtypes every op is timed in; ops marked ``low_precision`` add float16/bfloat16 on top.
    low_precision_dtypes: tuple[str, ...]
    # The first torch.compile in a benchmark process takes ~2.2 s on the 2-core VM (3.4 s before
    # harness/inductor.py kept inductor's ISA answer), paid in each of a combination's processes, so the
    # quick profile times compiled backends on a representative subset: the first case, in float32, of
    # the ops below.  None means every op, case and dtype.
    compiled_subset: tuple[str, ...] | None
    # asv timing attributes for time_ methods: rounds (each a fresh process, interleaved by asv) and
    # repeat, the samples each round takes.  On a shared VM a whole benchmark process runs faster or
    # slower than the next (same op: 10.3 ms in every sample of one process, 20.9 ms in every sample of
    # another), so the median's repeatability comes from rounds, not from samples: the quick op matrix
    # run twice differed by a median 10.4% with 2 rounds of 10-20 samples and 6.9% with 4 rounds of 5-10
    # (timings of 1 ms or more).  A fixed number of samples per round lets the detector split a point's
    # samples back into its processes (asv appends each round's samples in order) and test the
    # process-to-process spread, the noise that matters (tools/detect.py).
    rounds: int
    repeat: int
    # one sample: a warm-up burst, then a timed batch of back-to-back calls (harness/timing.py)
    sample: SamplePlan
    # budget for the fastest-call throughput measurement of track_throughput
    throughput_seconds: float
    throughput_min_calls: int
    # The same decisions for a run whose backends are all on a GPU.  A GPU is quieter than the shared
    # VM: on an H200 the medians of separate processes of one SquareMatMul case differed by sd(log) 3.5%
    # (median over its cases; 12.8% for calls under 100 us), and a process of the full op matrix costs
    # 0.9-2.4 s (median by backend: device context, inputs, compilation, probes) against 0.3 s of
    # samples.  One process of short batches per parameter set: a second round would double the
    # start-up and still give the detector too few processes to compare by process (it needs 3; with
    # fewer it compares samples and waits for the next point to confirm, tools/detect.py).
    accelerator: AcceleratorPlan | None = None
    # Every parameter set of one op on one backend measured in one process, which asv's processes then
    # read (harness/groups.py); the accelerator plan turns it on.
    grouped: bool = False

    def __post_init__(self) -> None:
        if self.grouped and self.rounds != 1:
            raise ProfileError(
                f"profile {self.name!r}: a grouped run measures each parameter set once, so it takes one "
                f"round, not {self.rounds}"
            )

    def stored_dtypes(self, low_precision: bool) -> tuple[str, ...]:
        """The dtypes an op's inputs are kept in: float32 (tf32's data too), and the profile's
        low-precision dtypes where the op declares them."""
        return ("float32", *(self.low_precision_dtypes if low_precision else ()))

    def planned_for(self, backend_names: list[str]) -> Profile:
        """The profile as a run of ``backend_names`` times: the accelerator plan when every backend is
        on a GPU (by name: nothing is touched before asv forks), else this one.  A mixed run keeps the
        CPU plan, which suits both."""
        plan = self.accelerator
        if plan is None or not backend_names:
            return self
        if any(device_class_of_name(n, backend_names) != "gpu" for n in backend_names):
            return self
        return replace(
            self,
            rounds=plan.rounds,
            repeat=plan.repeat,
            sample=plan.sample,
            throughput_seconds=plan.throughput_seconds,
            accelerator=None,
            grouped=plan.grouped,
        )


@dataclass(frozen=True)
class AcceleratorPlan:
    rounds: int
    repeat: int
    sample: SamplePlan
    throughput_seconds: float
    # Measured on an H200: a process of its own per parameter set spends 0.3-0.4 s on its device context
    # and inputs (1.4-2.8 s with torch.compile) around 0.2 s of probes and samples.
    grouped: bool = True


PROFILES = {
    "quick": Profile(
        name="quick",
        low_precision_dtypes=("bfloat16",),
        compiled_subset=("GELU", "Softmax", "LayerNorm", "BCEWithLogits", "SquareMatMul", "SDPA"),
        rounds=4,
        repeat=5,
        sample=SamplePlan(warmup_seconds=0.002, batch_seconds=0.01),
        throughput_seconds=0.1,
        throughput_min_calls=3,
        accelerator=AcceleratorPlan(
            rounds=1,
            repeat=8,
            sample=SamplePlan(warmup_seconds=0.002, batch_seconds=0.01),
            throughput_seconds=0.05,
        ),
    ),
    "full": Profile(
        name="full",
        low_precision_dtypes=("float16", "bfloat16"),
        compiled_subset=None,
        rounds=4,
        repeat=10,
        sample=SamplePlan(warmup_seconds=0.01, batch_seconds=0.05),
        throughput_seconds=1.0,
        throughput_min_calls=10,
        # 10 ms batches: a GPU call with its synchronisation takes 10 us or more, so a batch still
        # holds up to a thousand calls; 20 ms batches and a 0.1 s throughput probe cost 0.42 s of the
        # 0.9-2.4 s a process took on the H200 (median, 787 processes).
        accelerator=AcceleratorPlan(
            rounds=1,
            repeat=10,
            sample=SamplePlan(warmup_seconds=0.002, batch_seconds=0.01),
            throughput_seconds=0.05,
        ),
    ),
}


def compiled_skip_reason(profile: Profile, op: str, case_index: int, dtype: str) -> str | None:
    subset = profile.compiled_subset
    if subset is None or (op in subset and case_index == 0 and dtype == "float32"):
        return None
    return (
        f"the {profile.name} profile compiles only the first float32 case of {', '.join(subset)} "
        f"(each compile costs seconds); MTB_PROFILE=full compiles every op"
    )


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ProfileError(
            f"unknown size profile {name!r}: set MTB_PROFILE to one of {', '.join(PROFILE_NAMES)}"
        ) from None


def active_profile() -> Profile:
    """The profile ``MTB_PROFILE`` names, with the timing plan of the backends ``MTB_BACKENDS`` selects."""
    return get_profile(settings.read("MTB_PROFILE")).planned_for(list(settings.read("MTB_BACKENDS")))
