/**
 * The JSON the server extension sends (see mlnb/server/handlers.py and mlnb/server/service.py).
 * Types only: nothing here runs.
 *
 * Cells are 0-based indexes under explicit keys (`cell_index`, `cell_indexes`, ...); the older
 * keys (`cell`, `cells`, ...) carry the same values and are read only when the new one is
 * absent (see cells.ts). People read 1-based numbers.
 */

export type JSONValue =
  | string
  | number
  | boolean
  | null
  | JSONValue[]
  | { [key: string]: JSONValue };

/** A stage as `mlnb inspect --json` reports it. */
export interface IStage {
  name: string;
  kind: string; // data | train | serve, or `step` for Kale notebooks
  cell_indexes?: number[];
  cells: number[];
  defines: string[];
  uses: string[];
  depends_on: string[];
  model: string | null;
  metrics: string[];
  outputs: string[];
}

/** One `name = default` line of the parameters cell. */
export interface IParameter {
  name: string;
  default: JSONValue;
  type: string; // int | float | bool | str | none | list | dict | tuple | expr | ...
  comment: string;
  choices: string[];
}

/** The pipeline of a notebook: `mlnb.pipeline.Pipeline.to_json()`. */
export interface IPipeline {
  notebook: string;
  flavour: 'mlnb' | 'kale';
  stages: IStage[];
  parameters: { [name: string]: JSONValue };
  parameter_details: IParameter[];
  parameters_cell_index?: number | null;
  setup_cell_indexes?: number[];
  skipped_cell_indexes?: number[];
  parameters_cell: number | null;
  setup_cells: number[];
  skipped_cells: number[];
  metric_names: string[];
}

/** A stage found before validation failed (sent with inspect errors when it can be read). */
export interface IDraftStage {
  name: string;
  kind: string;
  cell_indexes?: number[];
  cells: number[];
}

/** The one error shape of every route: `MlnbError.to_json()` plus the HTTP status. */
export interface IErrorInfo {
  error: string;
  message: string;
  fix: string | null;
  notebook: string | null;
  cell_index?: number | null;
  cell: number | null;
  cell_first_line: string | null;
  stage: string | null;
  status?: number;
  stages?: IDraftStage[];
}

export type StageStatus = 'ran' | 'cached' | 'failed' | 'not-run' | 'running';

/** One broken rule of a data contract, as the run records it. */
export interface IContractViolation {
  value?: string;
  column?: string | null;
  rule?: string;
  severity?: 'error' | 'warn' | string;
  rows?: number | null;
  examples?: JSONValue[];
  message?: string;
}

export type ContractStatus = 'passed' | 'warned' | 'failed' | 'learned' | 'unchecked';

/** A data stage's contract verdict in a run (`stages[].contract` of run.json). */
export interface IStageContract {
  status: ContractStatus | string;
  file?: string;
  violations?: IContractViolation[];
}

export interface IStageRun {
  name: string;
  kind: string;
  status: StageStatus | string;
  seconds?: number | null;
  reason?: string | null;
  contract?: IStageContract | null;
}

/** One feature of a model's global importance (mlnb.importance). */
export interface IFeatureImportance {
  feature: string;
  mean_abs_contribution: number | null;
  permutation_mean: number | null;
  permutation_std: number | null;
}

/** How one figure was made, or why it is unavailable. */
export interface IImportancePart {
  available: boolean;
  reason?: string;
  method?: string;
  exact?: boolean;
  scoring?: string;
  repeats?: number;
  rows?: number;
  data?: string;
}

export interface IImportance {
  available: boolean;
  reason?: string;
  ordered_by?: string;
  features?: IFeatureImportance[];
  contribution?: IImportancePart;
  permutation?: IImportancePart;
  cached?: boolean;
}

/** GET/POST /mlnb/runs/ID/importance. */
export interface IImportanceAnswer {
  run_id: string;
  status: 'computed' | 'not-computed';
  importance: IImportance | null;
}

export interface IBuild {
  bento: string;
  model?: string;
  format?: string;
  built_at?: string;
}

/** Why a run failed, and where (`error` of run.json). */
export interface IRunError {
  stage?: string | null;
  cell_index?: number | null;
  cell?: number | null;
  ename?: string;
  evalue?: string;
  message?: string;
}

export type RunStatus = 'starting' | 'running' | 'succeeded' | 'failed';

/**
 * A run record (run.json) as far as the sidebar reads it: mlnb/run_record.schema.json is the
 * whole record, and tests/test_run_record_schema.py checks these interfaces against it.
 */
export interface IRun {
  run_id: string;
  status: RunStatus | string;
  parameters?: { [name: string]: JSONValue };
  stages?: IStageRun[];
  metrics?: { [name: string]: number };
  started_at?: string | null;
  finished_at?: string | null;
  builds?: IBuild[];
  model?: { class?: string; path?: string } | null;
  /** `runs/ID/notebook.ipynb` relative to the store, or null when the kernel never started. */
  executed_notebook?: string | null;
  /** The executed notebook as JupyterLab names it, when the Contents API opens it; else null
   * (download it from /mlnb/runs/ID/notebook). */
  executed_notebook_path?: string | null;
  error?: IRunError | null;
}

export type JobStatus = 'running' | 'succeeded' | 'failed';

/** A background job of the server (a build). */
export interface IJob {
  job_id: string;
  kind: 'run' | 'build';
  status: JobStatus;
  path: string;
  run_id: string | null;
  started_at: string;
  finished_at: string | null;
  returncode: number | null;
  result: { [key: string]: JSONValue } | null;
  error: IErrorInfo | null;
  log: string;
}
