"""Peak memory of ``mlnb monitor DIR --json`` over a large log: it must stream, not load.

Writes two monitoring folders of about ``--mb`` MB each (default 500) under ``--dir``:

* ``arrow/``: ``predictions/*.arrow`` segments as a served Bento writes them (the schema of
  :class:`mlnb.monitoring.records.PredictionRecords` for 30 float features and a class label,
  written by :class:`mlnb.monitoring.segments.SegmentWriter`);
* ``legacy/``: one JSON-lines log ``predictions/data/data.1.log`` as an older mlnb wrote it;

each with a ``reference.json`` of the features' training profiles. Then runs
``python -m mlnb monitor FOLDER --json`` on each and reports the child's peak RSS (``VmHWM``,
sampled from ``/proc``, and ``ru_maxrss`` from ``wait4``), against the target ``--target-mb``
(default 300). Prints one JSON object; exits 1 when a run is over the target or fails.

    python benchmarks/bench_monitor_rss.py [--mb 500] [--dir DIR] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

FEATURES = [f"f{i}" for i in range(30)]
CLASSES = ["benign", "malignant"]
BATCH_ROWS = 32_768


def reference(rng: np.random.Generator) -> dict[str, Any]:
    import pandas as pd

    from mlnb.bento.reference import prediction_profile
    from mlnb.run.profile import column_profile

    profile = {name: column_profile(pd.Series(rng.normal(size=5_000))) for name in FEATURES}
    return {
        "bento": "bench_monitor:rss",
        "run_id": "bench",
        "task": "classification",
        "classes": CLASSES,
        "features": profile,
        "prediction": prediction_profile(list(rng.choice(CLASSES, 5_000)), True),
        "default_threshold": 0.2,
        "thresholds": {},
        "window": 1000,
        "log_format": "arrow-ipc-segments/1",
    }


def arrow_folder(folder: Path, megabytes: int, rng: np.random.Generator) -> int:
    from mlnb.monitoring.records import PredictionRecords
    from mlnb.monitoring.segments import SegmentWriter

    schema = PredictionRecords(
        [{"name": n, "dtype": "float64", "kind": "float"} for n in FEATURES], True
    ).schema
    writer = SegmentWriter(folder / "predictions", schema, rotate_bytes=64 * 1024 * 1024)
    rows, start = 0, time.time() - 86_400
    while _size(folder / "predictions") < megabytes * 1024 * 1024:
        micros = np.int64(start * 1e6) + np.arange(rows, rows + BATCH_ROWS, dtype=np.int64) * 1000
        arrays = [
            pa.array(micros, pa.timestamp("us", tz="UTC")),
            pa.array([f"1-{i}" for i in range(rows, rows + BATCH_ROWS)]),
            *(pa.array(rng.normal(size=BATCH_ROWS)) for _ in FEATURES),
            pa.array(rng.choice(CLASSES, BATCH_ROWS)),
        ]
        batch = pa.RecordBatch.from_arrays(arrays, schema=schema)
        writer.write(batch, now=start + rows / 1000)  # a segment name per start: no overwrite
        rows += BATCH_ROWS
    writer.close()
    return rows


def legacy_folder(folder: Path, megabytes: int, rng: np.random.Generator) -> int:
    data = folder / "predictions" / "data"
    data.mkdir(parents=True)
    rows = 0
    limit = megabytes * 1024 * 1024
    with open(data / "data.1.log", "w", encoding="utf-8") as handle:
        while handle.tell() < limit:
            values = rng.normal(size=(10_000, len(FEATURES))).round(6).tolist()
            labels = rng.choice(CLASSES, 10_000).tolist()
            lines = []
            for i, (row, label) in enumerate(zip(values, labels, strict=True)):
                record = {
                    "timestamp": f"2026-11-30T{(rows + i) // 3_600_000 % 24:02d}:00:00",
                    "mlnb_request": f"r{rows + i}",
                    **dict(zip(FEATURES, row, strict=True)),
                    "prediction": label,
                }
                lines.append(json.dumps(record))
            handle.write("\n".join(lines) + "\n")
            rows += len(lines)
    return rows


def peak_rss(folder: Path) -> dict[str, Any]:
    """Run ``mlnb monitor FOLDER --json`` and sample the child's VmHWM until it exits."""
    env = {**os.environ, "BENTOML_DO_NOT_TRACK": "True"}
    out = tempfile.TemporaryFile()  # noqa: SIM115 (read once the child exits)
    started = time.monotonic()
    child = subprocess.Popen(
        [sys.executable, "-m", "mlnb", "monitor", str(folder), "--json"],
        stdout=out,
        stderr=subprocess.PIPE,
        env=env,
    )
    hwm_kb = 0
    while True:
        pid, status, usage = os.wait4(child.pid, os.WNOHANG)
        if pid:
            break
        try:
            for line in Path(f"/proc/{child.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    hwm_kb = max(hwm_kb, int(line.split()[1]))
        except OSError:
            pass
        time.sleep(0.05)
    child.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.monotonic() - started
    out.seek(0)
    summary = json.loads(out.read() or b"{}")
    stderr = child.stderr.read().decode() if child.stderr else ""
    return {
        "returncode": child.returncode,
        "seconds": round(seconds, 1),
        "vmhwm_mb": round(hwm_kb / 1024, 1),
        "ru_maxrss_mb": round(usage.ru_maxrss / 1024, 1),
        "rows_logged": summary.get("rows_logged"),
        "unreadable_lines": summary.get("unreadable_lines"),
        "stderr": stderr[-500:],
    }


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.glob("*") if p.is_file()) if folder.is_dir() else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=500, help="size of each log (default 500)")
    parser.add_argument("--target-mb", type=float, default=300.0)
    parser.add_argument("--dir", help="where to write the folders (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the folders")
    args = parser.parse_args()
    root = Path(args.dir or tempfile.mkdtemp(prefix="mlnb-bench-rss-"))
    rng = np.random.default_rng(0)
    results: dict[str, Any] = {"target_mb": args.target_mb, "log_mb": args.mb}
    try:
        for name, write in (("arrow", arrow_folder), ("legacy", legacy_folder)):
            folder = root / name
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "reference.json").write_text(json.dumps(reference(rng)))
            written = time.monotonic()
            rows = write(folder, args.mb, rng)
            size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
            results[name] = {
                "rows": rows,
                "log_mb": round(size / 1024 / 1024, 1),
                "write_seconds": round(time.monotonic() - written, 1),
                **peak_rss(folder),
            }
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(results, indent=2))
    ok = all(
        results[n]["returncode"] == 0 and results[n]["vmhwm_mb"] <= args.target_mb
        for n in ("arrow", "legacy")
        if n in results
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
