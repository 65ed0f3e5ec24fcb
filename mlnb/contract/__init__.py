"""Data contracts: what each data stage hands on, learned from a run, then owned by the user.

A notebook's contract is ``NAME.contract.yaml`` beside ``NAME.ipynb``. For each data stage,
and each value the stage hands on to later stages (a DataFrame, a Series or a NumPy array of
at most two dimensions), it holds:

- ``schema``: a pandera ``DataFrameSchema`` in pandera's own YAML form (columns, dtypes,
  nullability, ranges, allowed categories; strict about the set of columns, never coercing);
- ``rows``: the band of row counts, ``[min, max]``;
- ``null_share``: the largest share of missing values each nullable column may have;
- ``warn``: the rules that report without failing the run: a rule name for every column
  (``less_than_or_equal_to``), or ``{column: rule}`` for one.

The first run that runs a data stage with no contract learns one (pandera's
``infer_schema``, then ranges and categories widened over the stage's values that share a
column, so another split of the same data passes) and the runner writes the file.
``mlnb contract NB`` learns it again from the latest run and shows the diff. Every later run
checks each data stage's values against it, all rules at once (pandera's lazy validation).

Reading and writing the file needs only PyYAML (:mod:`.document`); learning (:mod:`.learn`)
and checking (:mod:`.check`) import pandera, in a process beside the kernel (:mod:`.worker`),
only when a data stage runs; :mod:`.serve` gives the generated service its soft rules and
:mod:`.from_run` learns a contract again from a stored run (``mlnb contract``).
"""

from mlnb.contract.check import (
    StageChecker,
    StageVerdict,
    Violation,
    check_stage,
    violation_error,
    warm_up,
)
from mlnb.contract.document import (
    CONTRACT_VERSION,
    SUFFIX,
    contract_path,
    diff,
    enabled,
    file_sha256,
    new_document,
    parse,
    read,
    refreshed,
    render,
    same_rules,
    write_new,
)
from mlnb.contract.learn import DEFAULT_WARN, learn_stage
from mlnb.contract.serve import serve_rules
from mlnb.contract.values import as_table, is_tabular

__all__ = [
    "CONTRACT_VERSION",
    "DEFAULT_WARN",
    "SUFFIX",
    "StageChecker",
    "StageVerdict",
    "Violation",
    "as_table",
    "check_stage",
    "contract_path",
    "diff",
    "enabled",
    "file_sha256",
    "is_tabular",
    "learn_stage",
    "new_document",
    "parse",
    "read",
    "refreshed",
    "render",
    "same_rules",
    "serve_rules",
    "violation_error",
    "warm_up",
    "write_new",
]
