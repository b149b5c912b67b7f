"""asv as ``mtb`` runs it: the same command line, with each point's results saved after every benchmark.

asv writes a point's results file once, when every benchmark of the point has run, so stopping a point
lost everything it had measured.  Here each result is written as soon as asv has it (to a temporary
file, then renamed over the old one, so a stop in the middle of a write never leaves half a file), and
asv's own final save is made the same way.  Everything else is asv unchanged:
``python -m tools.asv_entry run ...`` takes what ``python -m asv run ...`` takes.
"""

from __future__ import annotations

import os
import sys
import tempfile
from typing import Any


def save_atomically(results: Any, result_dir: str, save: Any) -> None:
    """asv's own ``Results.save`` into a scratch folder beside the target, then one rename."""
    with tempfile.TemporaryDirectory(dir=result_dir, prefix=".saving-") as scratch:
        save(results, scratch)
        written = os.path.join(scratch, results._filename)
        target = os.path.join(result_dir, results._filename)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.replace(written, target)


def install() -> None:
    from asv.results import Results

    original_save = Results.save
    original_load_data = Results.load_data
    original_add_result = Results.add_result

    def save(self: Any, result_dir: str) -> None:
        if self._filename is None:
            return original_save(self, result_dir)
        save_atomically(self, result_dir, original_save)

    def load_data(self: Any, result_dir: str) -> None:
        # asv loads a point's earlier results before running it (and only when it will save them)
        self._saved_to = result_dir
        original_load_data(self, result_dir)

    def add_result(self: Any, *args: Any, **kwargs: Any) -> None:
        original_add_result(self, *args, **kwargs)
        where = getattr(self, "_saved_to", None)
        if where is not None:
            save(self, where)

    Results.save = save
    Results.load_data = load_data
    Results.add_result = add_result


def main() -> None:
    install()
    from asv.main import main as asv_main

    sys.argv[0] = "asv"
    asv_main()


if __name__ == "__main__":
    main()
