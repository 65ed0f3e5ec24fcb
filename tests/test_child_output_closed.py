"""A started child command's output files are closed once its output is read.

:func:`mlnb.child_process.start` keeps the child's stdout and stderr in temporary files (the
panel polls it on the kernel's loop); they were left open until the garbage collector got to
them, one ResourceWarning each (hidden while pytest ignored ResourceWarning).
"""

from __future__ import annotations

import gc
import time
import warnings

from mlnb import child_process


def test_the_output_files_are_closed_once_read_and_the_text_kept() -> None:
    started = child_process.start(["--version"])
    deadline = time.monotonic() + 60
    while not started.finished and time.monotonic() < deadline:
        time.sleep(0.05)
    assert started.returncode == 0
    first = started.output()
    assert first[0].startswith("mlnb ")
    assert started.output() == first  # read once, kept
    assert started._stdout.closed and started._stderr.closed
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always", ResourceWarning)
        del started
        gc.collect()
    assert [w for w in seen if issubclass(w.category, ResourceWarning)] == []
