"""``mlnb run``: execute a notebook's pipeline with papermill, record it, and cache its stages.

The modules split the work by idea. The pure core (no papermill, nbformat or IPython):
:mod:`~mlnb.run.params` (``-p`` values typed the papermill way), :mod:`~mlnb.run.keys`
(stage cache keys), :mod:`~mlnb.run.plan` (which stages run, what each saves and loads),
:mod:`~mlnb.run.assemble` (the notebook papermill executes, with mlnb's injected cells),
:mod:`~mlnb.run.record` (the run record), :mod:`~mlnb.run.lineage` (environment and git) and
:mod:`~mlnb.run.progress` (the terminal display). The edges: :mod:`~mlnb.run.executor`
(papermill, the kernel, signals) and, inside the kernel, :mod:`~mlnb.run.runtime` with
:mod:`~mlnb.run.outputs` (saving and loading values) and :mod:`~mlnb.run.profile` (the
training data's reference profile). :mod:`~mlnb.run.runner` ties them together.
"""
