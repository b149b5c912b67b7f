"""Parity: does a backend compute the op's function?  Errors are measured against a float64 NumPy
reference computed from the very inputs the backend saw (rounded to the dtype first), so the error is the
computation's, not the input rounding's.
"""

from __future__ import annotations

import numpy as np

# Relative L2 error a correct implementation stays under, by dtype.  float32 at 1e-4 leaves room for
# blocked accumulation but not for TF32 (about 3e-4 on a matmul), so silent TF32 fails parity.
TOLERANCE = {"float32": 1e-4, "float16": 5e-3, "bfloat16": 3e-2, "tf32": 3e-3}


class ParityError(AssertionError):
    pass


def quantize(array: np.ndarray, dtype: str) -> np.ndarray:
    """``array`` rounded to ``dtype`` (round to nearest even) and returned as float64."""
    if array.dtype.kind != "f":
        return array
    if dtype == "float32":
        return array.astype(np.float32).astype(np.float64)
    if dtype == "float16":
        return array.astype(np.float16).astype(np.float64)
    if dtype == "bfloat16":
        # Round to nearest even on the float32 bits, in place in 32 bits (a sum that wraps past 2**32
        # keeps the same upper half): 0.33 s for 64M values here, against 4.9 s with 64-bit copies.
        bits = np.ascontiguousarray(array, dtype=np.float32).view(np.uint32)
        rounded = bits >> 16
        rounded &= 1
        rounded += 0x7FFF
        rounded += bits
        rounded &= 0xFFFF0000
        return rounded.view(np.float32).astype(np.float64)
    raise ValueError(f"no rounding rule for dtype {dtype!r}")


# Elements per block of the float64 error sums: a block's float64 copies stay in the cache, where
# whole-array copies of a 100M-element output (Linear's largest case) took 2.2 s on the host per
# parity probe against 0.13 s in blocks.
PARITY_BLOCK = 1 << 20


def relative_error(actual: np.ndarray, expected: np.ndarray, exact: bool = False) -> float:
    """||actual - expected|| / ||expected|| for floats; the fraction of differing elements if ``exact``.

    NaN or a shape mismatch is an infinite error: it never passes.
    """
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    if actual.shape != expected.shape:
        return float("inf")
    if exact:
        return float(np.mean(actual != expected)) if expected.size else 0.0
    flat_actual, flat_expected = actual.reshape(-1), expected.reshape(-1)
    diff_squares = expected_squares = 0.0
    for start in range(0, flat_actual.size, PARITY_BLOCK):
        block = flat_actual[start : start + PARITY_BLOCK].astype(np.float64)
        if not np.all(np.isfinite(block)):
            return float("inf")
        reference = flat_expected[start : start + PARITY_BLOCK].astype(np.float64, copy=False)
        block -= reference
        diff_squares += float(np.dot(block, block))
        expected_squares += float(np.dot(reference, reference))
    diff, norm = diff_squares**0.5, expected_squares**0.5
    return diff / norm if norm > 0 else diff


def tolerance(dtype: str, factor: float = 1.0, exact: bool = False) -> float:
    return 0.0 if exact else TOLERANCE[dtype] * factor


def check(
    what: str, actual: np.ndarray, expected: np.ndarray, dtype: str, factor: float = 1.0, exact: bool = False
) -> float:
    """Raise ``ParityError`` naming ``what`` (op, shape, backend) if the error is over tolerance."""
    error = relative_error(actual, expected, exact)
    limit = tolerance(dtype, factor, exact)
    if not error <= limit:
        kind = "mismatch fraction" if exact else "relative error"
        shapes = f"got shape {np.shape(actual)}, expected {np.shape(expected)}"
        raise ParityError(f"{what}: {kind} {error:.3g} exceeds {limit:.3g} ({dtype}; {shapes})")
    return error
