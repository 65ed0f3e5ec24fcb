"""What a monitored server left in its monitoring folder: size, files and logged rows.

Reads Arrow IPC segments (``predictions/*.arrow``, counted with pyarrow without loading the
columns) when there are any, else the JSON lines ``bentoml.monitor`` writes (one row a line).
Names starting with ``.`` are segments still being written (``.partial``): counted apart.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def monitoring_folder(folder: Path) -> dict[str, Any]:
    files = [path for path in folder.rglob("*") if path.is_file()] if folder.is_dir() else []
    predictions = folder / "predictions"
    logs = [path for path in files if predictions in path.parents]
    arrow = [path for path in logs if path.name.endswith(".arrow")]
    partial = [path for path in logs if path.name.startswith(".")]
    if arrow:
        form, rows = "arrow", sum(_arrow_rows(path) for path in arrow)
    else:
        lines = [path for path in logs if not path.name.startswith(".")]
        form, rows = ("jsonl" if lines else "none"), sum(_lines(path) for path in lines)
    return {
        "folder_mb": round(sum(path.stat().st_size for path in files) / 2**20, 1),
        "files": len(files),
        "format": form,
        "prediction_files": len(arrow) if arrow else len(logs) - len(partial),
        "partial_files": len(partial),
        "rows_logged": rows,
    }


def _arrow_rows(path: Path) -> int:
    import pyarrow as pa
    import pyarrow.ipc as ipc

    with pa.memory_map(str(path)) as source:
        try:
            reader = ipc.open_file(source)
            return sum(reader.get_batch(i).num_rows for i in range(reader.num_record_batches))
        except pa.ArrowInvalid:  # a stream, not a file
            source.seek(0)
            return sum(batch.num_rows for batch in ipc.open_stream(source))


def _lines(path: Path) -> int:
    count = 0
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            count += chunk.count(b"\n")
    return count
