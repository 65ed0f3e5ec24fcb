"""``mlnb export kfp NOTEBOOK -o pipeline.yaml``: the stage DAG as a Kubeflow Pipelines spec."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "export the stage DAG to an orchestrator (kfp: a Kubeflow Pipelines v2 spec)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", choices=["kfp"], help="what to export to")
    parser.add_argument("notebook", help="path to the .ipynb file")
    parser.add_argument("-o", "--output", required=True, help="the pipeline YAML to write")
    parser.add_argument(
        "--image", default="python:3.11", help="the container image tasks run in (python:3.11)"
    )
    parser.add_argument(
        "--pip",
        action="append",
        metavar="SPEC",
        help="a package each task pip-installs (repeatable; default: this mlnb release and the "
        "packages the notebook imports, pinned)",
    )
    parser.add_argument(
        "--no-install",
        action="store_true",
        help="the image already has mlnb and kfp: install nothing at task start",
    )
    parser.add_argument("--templates", help="a folder with your own kfp_pipeline.py.j2")


def run(args: argparse.Namespace) -> int:
    from mlnb.export.kfp import compile_pipeline, notebook_text, render_pipeline_module
    from mlnb.pipeline import load_pipeline

    pipeline = load_pipeline(args.notebook)
    source = render_pipeline_module(
        pipeline,
        notebook_text(args.notebook),
        image=args.image,
        packages=[] if args.no_install else args.pip,
        install_kfp=not args.no_install,
        templates=args.templates,
    )
    output = Path(args.output)
    compile_pipeline(source, output)
    print(f"{output}: {len(pipeline.stages)} task(s), {len(pipeline.parameters)} parameter(s)")
    return 0
