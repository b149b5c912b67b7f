"""A known slowdown, planted to measure the change detector (never part of a default timeline).

Installed as a wheel by ``tools/error_rates.py`` at chosen points of an error-rate timeline, with a
``.pth`` file that imports this module when Python starts.  ``PLAN`` (written into the wheel) maps a
function of ``mlx.core`` to a factor; once ``mlx.core`` is imported, each named function is replaced by
one that computes the result, forces it, and then keeps the core busy until the call has taken
``factor`` times what the real work took.  The result is the real one, so parity still holds.  The
idle build of the same package has an empty plan and changes nothing.
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.machinery
import sys
import time
from typing import Any

PLAN: dict[str, float] = {}


def _slowed(function: Any, factor: float, evaluate: Any) -> Any:
    @functools.wraps(function)
    def slowed(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        result = function(*args, **kwargs)
        try:
            evaluate(result)
        except Exception:  # inside a traced (compiled) function: leave it as it is
            return result
        until = start + factor * (time.perf_counter() - start)
        while time.perf_counter() < until:
            pass
        return result

    return slowed


def _plant(module: Any) -> None:
    for name, factor in PLAN.items():
        setattr(module, name, _slowed(getattr(module, name), factor, module.eval))


class _Finder(importlib.abc.MetaPathFinder):
    """Finds nothing itself: patches ``mlx.core`` right after the real loader has run it."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname != "mlx.core":
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return None
        run = spec.loader.exec_module

        def exec_module(module: Any) -> None:
            run(module)
            _plant(module)

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


if PLAN:
    sys.meta_path.insert(0, _Finder())
