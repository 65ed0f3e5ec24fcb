"""Benchmark ``mlnb run`` against plain papermill on the bundled example notebooks.

For each example, in one session, with the runs interleaved so that machine noise hits all
of them alike (medians of ``--repeat`` runs, every figure a whole process as a user runs it):

- ``papermill``: ``python -m papermill NB OUT`` (the peer);
- ``mlnb cold``: ``python -m mlnb run NB`` on an empty store (target: <= 1.15x papermill);
- ``mlnb no change``: the same command again, nothing changed (target: >= 10x faster than cold);
- ``mlnb train param``: a new value for a train-stage parameter (the data stage is reused).

Usage: ``python benchmarks/bench_run.py [--repeat 5] [--out benchmarks/results/run.md]``
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = {  # notebook -> (a train-stage parameter, values to cycle through)
    "breast_cancer.ipynb": ("C", ["0.5", "2.0", "4.0", "8.0", "0.25", "16.0", "0.125"]),
    "diabetes.ipynb": ("n_estimators", ["20", "30", "40", "50", "70", "80", "90"]),
}


LOAD = os.getloadavg()
CPU: dict[str, list[float]] = {}  # CPU seconds of the whole process tree (kernel included)


def timed(command: list[str], env: dict[str, str], label: str | None = None) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise SystemExit(f"failed: {' '.join(command)}\n{result.stdout}\n{result.stderr}")
    if label:
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        CPU.setdefault(label, []).append(cpu)
    return elapsed


def bench(notebook: str, repeat: int, work: Path, env: dict[str, str]) -> dict[str, list[float]]:
    source = work / notebook
    shutil.copyfile(ROOT / "example_notebooks" / notebook, source)
    parameter, values = EXAMPLES[notebook]
    py = sys.executable
    times: dict[str, list[float]] = {
        "papermill": [],
        "mlnb cold": [],
        "mlnb no change": [],
        "mlnb train param": [],
    }
    warm_store = work / f"{notebook}.warm"
    timed([py, "-m", "mlnb", "run", str(source), "--store", str(warm_store), "--json"], env)
    for i in range(repeat):
        out = work / f"out-{i}.ipynb"
        store = work / f"{notebook}.cold-{i}"
        cold = [py, "-m", "mlnb", "run", str(source), "--store", str(store), "--json"]
        paper = [py, "-m", "papermill", str(source), str(out), "-k", "python3"]
        order = [("papermill", paper), ("mlnb cold", cold)]
        for name, command in order if i % 2 == 0 else reversed(order):
            times[name].append(timed(command, env, f"{notebook} {name}"))
        again = [py, "-m", "mlnb", "run", str(source), "--store", str(warm_store), "--json"]
        times["mlnb no change"].append(timed(again, env, f"{notebook} mlnb no change"))
        changed = [*again, "-p", parameter, values[i % len(values)]]
        times["mlnb train param"].append(timed(changed, env, f"{notebook} mlnb train param"))
    return times


_NAMES = ("papermill", "mlnb cold", "mlnb no change", "mlnb train param")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "run.md"))
    args = parser.parse_args()
    env = {**os.environ, "BENTOML_DO_NOT_TRACK": "True", "PYTHONWARNINGS": "ignore"}
    env.pop("MLNB_STORE", None)
    rows = []
    with tempfile.TemporaryDirectory(prefix="mlnb-bench-") as tmp:
        for notebook in EXAMPLES:
            times = bench(notebook, args.repeat, Path(tmp), env)
            med = {name: statistics.median(values) for name, values in times.items()}
            rows.append((notebook, med, times))
            print(notebook, {k: round(v, 3) for k, v in med.items()}, flush=True)
    write_report(Path(args.out), rows, args.repeat)


def write_report(
    path: Path, rows: list[tuple[str, dict[str, float], dict[str, list[float]]]], repeat: int
) -> None:
    import papermill

    lines = [
        "# `mlnb run` against papermill",
        "",
        f"Medians of {repeat} runs per figure, whole processes, interleaved; "
        f"{os.cpu_count()} cores, Python {platform.python_version()}, "
        f"papermill {papermill.__version__}, {time.strftime('%Y-%m-%d')}; load average "
        f"{LOAD[0]:.1f} at the start, {os.getloadavg()[0]:.1f} at the end (the machine was "
        "shared). Made by `python benchmarks/bench_run.py`.",
        "",
        "| notebook | papermill | mlnb cold | cold / papermill | mlnb no change "
        "| cold / no change | papermill / no change | mlnb train param |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for notebook, med, _ in rows:
        lines.append(
            f"| {notebook} | {med['papermill']:.2f} s | {med['mlnb cold']:.2f} s "
            f"| {med['mlnb cold'] / med['papermill']:.2f}x | {med['mlnb no change']:.3f} s "
            f"| {med['mlnb cold'] / med['mlnb no change']:.0f}x "
            f"| {med['papermill'] / med['mlnb no change']:.0f}x "
            f"| {med['mlnb train param']:.2f} s |"
        )
    lines += [
        "",
        "CPU seconds of the whole process tree (the kernel included), medians: steadier than "
        "wall time on a busy machine.",
        "",
        "| notebook | papermill | mlnb cold | cold / papermill | mlnb no change "
        "| mlnb train param |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for notebook, _, _ in rows:
        cpu = {k: statistics.median(CPU[f"{notebook} {k}"]) for k in _NAMES}
        lines.append(
            f"| {notebook} | {cpu['papermill']:.2f} s | {cpu['mlnb cold']:.2f} s "
            f"| {cpu['mlnb cold'] / cpu['papermill']:.2f}x | {cpu['mlnb no change']:.3f} s "
            f"| {cpu['mlnb train param']:.2f} s |"
        )
    lines += [
        "",
        "Targets (issue 3): cold at most 1.15x papermill; no change at least 10x faster than cold.",
        "",
        "All wall times (s):",
        "",
    ]
    for notebook, _, times in rows:
        for name, values in times.items():
            lines.append(f"- {notebook}, {name}: {', '.join(f'{v:.3f}' for v in values)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
