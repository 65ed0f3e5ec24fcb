"""What data contracts cost a run, on the bundled examples.

For each example, in one session, runs interleaved so that machine noise hits all alike
(medians of ``--repeat``), every figure a whole ``mlnb run NB --no-cache`` as a user runs it:

- ``off``: ``MLNB_CONTRACTS=off`` (the peer: neither learned nor checked);
- ``check``: the contract exists; every data stage's values are checked against it
  (target: <= 1.05x ``off``);
- ``learn``: no contract yet; the run learns it and writes the file.

Usage: ``python benchmarks/bench_contract.py [--repeat 7] [--out benchmarks/results/contract.md]``
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ("breast_cancer.ipynb", "diabetes.ipynb")
MODES = ("off", "check", "learn")


def one_run(notebook: Path, mode: str, env: dict[str, str]) -> float:
    contract = notebook.with_name(notebook.stem + ".contract.yaml")
    saved = notebook.with_name(notebook.stem + ".contract.saved")
    if mode == "learn":
        contract.unlink(missing_ok=True)
    elif not contract.exists():
        shutil.copyfile(saved, contract)
    run_env = {**env, "MLNB_CONTRACTS": "off" if mode == "off" else "on"}
    command = [sys.executable, "-m", "mlnb", "run", str(notebook), "--no-cache"]
    started = time.perf_counter()
    result = subprocess.run(command, env=run_env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"failed ({mode}): {result.stdout}\n{result.stderr}")
    if mode == "learn" and not contract.exists():
        raise SystemExit("the learning run wrote no contract")
    return elapsed


def bench(name: str, repeat: int, work: Path, env: dict[str, str]) -> dict[str, list[float]]:
    notebook = work / name
    shutil.copyfile(ROOT / "example_notebooks" / name, notebook)
    one_run(notebook, "learn", env)  # warm the caches of the OS; leaves the contract
    shutil.copyfile(
        notebook.with_name(notebook.stem + ".contract.yaml"),
        notebook.with_name(notebook.stem + ".contract.saved"),
    )
    times: dict[str, list[float]] = {mode: [] for mode in MODES}
    for round_number in range(repeat):
        order = MODES if round_number % 2 == 0 else tuple(reversed(MODES))
        for mode in order:
            times[mode].append(one_run(notebook, mode, env))
        print(
            f"{name} round {round_number + 1}: "
            + ", ".join(f"{m} {times[m][-1]:.2f} s" for m in MODES),
            flush=True,
        )
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "contract.md"))
    args = parser.parse_args()
    load = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        env = {**os.environ, "BENTOML_DO_NOT_TRACK": "True", "MLNB_STORE": str(work / "store")}
        for name in NOTEBOOKS:
            times = bench(name, args.repeat, work, env)
            median = {m: statistics.median(v) for m, v in times.items()}
            rows.append((name, median))
    lines = [
        "# Data contracts: cost of a run (`benchmarks/bench_contract.py`)",
        "",
        f"{platform.node()}, {os.cpu_count()} cores, load before {load[0]:.2f}; "
        f"medians of {args.repeat} interleaved `mlnb run NB --no-cache`.",
        "",
        "| notebook | off | check | check / off | learn | learn / off |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, m in rows:
        lines.append(
            f"| {name} | {m['off']:.2f} s | {m['check']:.2f} s | {m['check'] / m['off']:.3f}x "
            f"| {m['learn']:.2f} s | {m['learn'] / m['off']:.3f}x |"
        )
    text = "\n".join(lines) + "\n"
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
