/**
 * The sidebar's state and the one reducer that changes it: pure, so jest tests it whole.
 * Side effects (requests, polling, editing cells) live in model.ts and dispatch actions here.
 */

import { errorCellIndex, stageCellIndexes } from './cells';
import { FieldValue, coerceAll, initialValues } from './params';
import { IDraftStage, IErrorInfo, IImportance, IJob, IPipeline, IRun } from './types';

export interface IMessage {
  kind: 'error' | 'info';
  text: string;
}

/** The notebook's active cell, as far as tagging needs it. */
export interface ICellInfo {
  /** 0-based; the sidebar shows index + 1, as JupyterLab's status bar does. */
  index: number;
  cellType: string;
  tags: string[];
  /** cell.metadata.mlnb, when set. */
  options: { [key: string]: unknown } | null;
  /** The `%%mlnb` first line, when the cell has one. */
  magic: string | null;
}

/** The top features of one run's model: unknown until asked, then computed on request. */
export interface IImportanceState {
  runId: string;
  status: 'checking' | 'not-computed' | 'computing' | 'computed' | 'error';
  result: IImportance | null;
  message: string | null;
}

export interface IState {
  /** The active notebook's path relative to the server root, or null. */
  path: string | null;
  serverVersion: string | null;
  versionProblem: string | null;
  loading: boolean;
  pipeline: IPipeline | null;
  /** Why the notebook's pipeline cannot be read (validation errors included). */
  error: IErrorInfo | null;
  values: { [name: string]: FieldValue };
  /** The Jupyter kernel to run in (`mlnb run --kernel`); empty: the notebook's own. */
  kernel: string;
  cell: ICellInfo | null;
  runs: IRun[];
  /** The run started from this sidebar (or found running), polled until it ends. */
  activeRun: IRun | null;
  /** The latest build job of this notebook. */
  build: IJob | null;
  submitting: 'run' | 'build' | null;
  /** The notebook's file name when Run saved it before starting (null: it was saved already),
   * and the run it started (null until the server named it). */
  savedBeforeRun: { name: string; runId: string | null } | null;
  message: IMessage | null;
  importance: IImportanceState | null;
}

export const initialState: IState = {
  path: null,
  serverVersion: null,
  versionProblem: null,
  loading: false,
  pipeline: null,
  error: null,
  values: {},
  kernel: '',
  cell: null,
  runs: [],
  activeRun: null,
  build: null,
  submitting: null,
  savedBeforeRun: null,
  message: null,
  importance: null
};

export type Action =
  | { type: 'notebook'; path: string | null }
  | { type: 'version'; server: string | null; problem: string | null }
  | { type: 'inspect/start' }
  | { type: 'inspect/ok'; path: string; pipeline: IPipeline }
  | { type: 'inspect/error'; path: string; error: IErrorInfo }
  | { type: 'param'; name: string; value: FieldValue }
  | { type: 'params/reset' }
  | { type: 'kernel'; kernel: string }
  | { type: 'cell'; cell: ICellInfo | null }
  | { type: 'runs'; path: string; runs: IRun[] }
  | { type: 'submit'; what: 'run' | 'build' }
  | { type: 'run/saved'; name: string }
  | { type: 'submit/error'; message: string }
  | { type: 'run/progress'; path: string; run: IRun }
  | { type: 'build/progress'; path: string; job: IJob }
  | { type: 'message'; message: IMessage | null }
  | { type: 'importance'; path: string; importance: IImportanceState };

const FINISHED = new Set(['succeeded', 'failed']);

export function isFinished(run: IRun | null): boolean {
  return run !== null && FINISHED.has(run.status);
}

export function reducer(state: IState, action: Action): IState {
  switch (action.type) {
    case 'notebook':
      if (action.path === state.path) {
        return state;
      }
      return {
        ...initialState,
        serverVersion: state.serverVersion,
        versionProblem: state.versionProblem,
        path: action.path
      };
    case 'version':
      return { ...state, serverVersion: action.server, versionProblem: action.problem };
    case 'inspect/start':
      return { ...state, loading: true };
    case 'inspect/ok': {
      if (action.path !== state.path) {
        return state; // an answer for a notebook that is no longer active
      }
      return {
        ...state,
        loading: false,
        pipeline: action.pipeline,
        error: null,
        values: mergeValues(state, action.pipeline)
      };
    }
    case 'inspect/error':
      if (action.path !== state.path) {
        return state;
      }
      return { ...state, loading: false, error: action.error };
    case 'param':
      return { ...state, values: { ...state.values, [action.name]: action.value } };
    case 'params/reset':
      return {
        ...state,
        values: state.pipeline ? initialValues(state.pipeline.parameter_details) : {}
      };
    case 'kernel':
      return { ...state, kernel: action.kernel };
    case 'cell':
      return { ...state, cell: action.cell };
    case 'runs':
      if (action.path !== state.path) {
        return state;
      }
      return { ...state, runs: action.runs };
    case 'submit':
      return {
        ...state,
        submitting: action.what,
        message: null,
        savedBeforeRun: action.what === 'run' ? null : state.savedBeforeRun
      };
    case 'run/saved':
      return { ...state, savedBeforeRun: { name: action.name, runId: null } };
    case 'submit/error':
      return { ...state, submitting: null, message: { kind: 'error', text: action.message } };
    case 'run/progress': {
      if (action.path !== state.path) {
        return state;
      }
      const run = action.run;
      const known = state.runs.some(r => r.run_id === run.run_id);
      const runs = known
        ? state.runs.map(r => (r.run_id === run.run_id ? { ...r, ...run } : r))
        : [run, ...state.runs];
      const saved = state.savedBeforeRun;
      return {
        ...state,
        activeRun: run,
        runs,
        submitting: state.submitting === 'run' ? null : state.submitting,
        savedBeforeRun:
          saved && saved.runId === null && state.submitting === 'run'
            ? { ...saved, runId: run.run_id }
            : saved
      };
    }
    case 'build/progress':
      if (action.path !== state.path) {
        return state;
      }
      return {
        ...state,
        build: action.job,
        submitting: state.submitting === 'build' ? null : state.submitting
      };
    case 'message':
      return { ...state, message: action.message };
    case 'importance': {
      if (action.path !== state.path) {
        return state;
      }
      const current = state.importance;
      // An answer about another run than the one shown (a newer run came) is dropped,
      // except a new "checking", which starts following that run.
      if (current && current.runId !== action.importance.runId && action.importance.status !== 'checking') {
        return state;
      }
      return { ...state, importance: action.importance };
    }
  }
}

/** Keep what the user typed for parameters that still exist with the same default. */
function mergeValues(state: IState, pipeline: IPipeline): { [name: string]: FieldValue } {
  const fresh = initialValues(pipeline.parameter_details);
  const before = state.pipeline
    ? new Map(state.pipeline.parameter_details.map(p => [p.name, p]))
    : new Map();
  for (const param of pipeline.parameter_details) {
    const old = before.get(param.name);
    if (
      old &&
      JSON.stringify(old.default) === JSON.stringify(param.default) &&
      param.name in state.values
    ) {
      fresh[param.name] = state.values[param.name];
    }
  }
  return fresh;
}

// ---------------------------------------------------------------- selectors

/** The stages to list: the pipeline's, or those found before validation failed. */
export function visibleStages(state: IState): IDraftStage[] {
  if (state.error) {
    return state.error.stages ?? [];
  }
  return state.pipeline ? state.pipeline.stages : [];
}

/**
 * Where the inspect error belongs: the stage it names, else the stage holding its cell.
 * `stage` is null when the error concerns no listed stage (it is then shown on top).
 */
export function errorPlacement(state: IState): { stage: string | null } | null {
  const error = state.error;
  if (!error) {
    return null;
  }
  const stages = visibleStages(state);
  if (error.stage && stages.some(s => s.name === error.stage)) {
    return { stage: error.stage };
  }
  const cell = errorCellIndex(error);
  if (cell !== null) {
    const holder = stages.find(s => stageCellIndexes(s).includes(cell));
    if (holder) {
      return { stage: holder.name };
    }
  }
  return { stage: null };
}

export function isRunning(state: IState): boolean {
  return (
    state.submitting === 'run' || (state.activeRun !== null && !isFinished(state.activeRun))
  );
}

export function isBuilding(state: IState): boolean {
  return state.submitting === 'build' || (state.build !== null && state.build.status === 'running');
}

export function formErrors(state: IState): { [name: string]: string } {
  return state.pipeline ? coerceAll(state.pipeline.parameter_details, state.values).errors : {};
}

/** Why Run is disabled, or null when it can be pressed. */
export function runBlocker(state: IState): string | null {
  if (!state.path) {
    return 'open a notebook';
  }
  if (state.versionProblem) {
    return state.versionProblem;
  }
  if (!state.pipeline || state.error) {
    return 'fix the pipeline first';
  }
  if (state.pipeline.stages.length === 0) {
    return 'tag a cell as a stage first';
  }
  if (isRunning(state)) {
    return 'a run is in progress';
  }
  if (Object.keys(formErrors(state)).length > 0) {
    return 'correct the parameters';
  }
  return null;
}

/** The newest succeeded run, which Build packages (mlnb build runs the notebook if none). */
export function latestSucceeded(runs: IRun[]): IRun | null {
  return runs.find(r => r.status === 'succeeded') ?? null;
}

/** Why Build is disabled, or null when it can be pressed. */
export function buildBlocker(state: IState): string | null {
  if (!state.path) {
    return 'open a notebook';
  }
  if (state.versionProblem) {
    return state.versionProblem;
  }
  if (!state.pipeline || state.error) {
    return 'fix the pipeline first';
  }
  if (!state.pipeline.stages.some(s => s.kind === 'train')) {
    return 'the notebook needs a train stage';
  }
  if (isBuilding(state)) {
    return 'a build is in progress';
  }
  if (isRunning(state)) {
    return 'wait for the run to finish';
  }
  return null;
}

/** The run whose model the sidebar describes: the live run once it succeeded, else the newest
 * succeeded run with a model. */
export function modelRun(state: IState): IRun | null {
  const live = state.activeRun;
  if (live && live.status === 'succeeded') {
    return live;
  }
  return state.runs.find(r => r.status === 'succeeded' && r.model) ?? null;
}

export interface IContractRow {
  stage: string;
  status: string;
  file: string;
  violations: string[];
  more: number;
}

/** Each data stage's contract verdict in a run, with its first `limit` violations as text. */
export function contractRows(run: IRun | null, limit = 3): IContractRow[] {
  const rows: IContractRow[] = [];
  for (const stage of run?.stages ?? []) {
    if (stage.kind !== 'data') {
      continue;
    }
    const contract = stage.contract ?? null;
    const found = contract?.violations ?? [];
    rows.push({
      stage: stage.name,
      status: contract?.status ?? '-',
      file: contract?.file ?? '',
      violations: found.slice(0, limit).map(violationText),
      more: Math.max(found.length - limit, 0)
    });
  }
  return rows;
}

/** `X_train["mean radius"]: less_than_or_equal_to, 3 rows (e.g. 1000)`, and `[warn]`. */
export function violationText(v: {
  value?: string;
  column?: string | null;
  rule?: string;
  severity?: string;
  rows?: number | null;
  examples?: unknown[];
}): string {
  let text = v.value ?? '';
  if (v.column !== undefined && v.column !== null) {
    text += `[${JSON.stringify(String(v.column))}]`;
  }
  text += `: ${v.rule ?? 'rule'}`;
  if (typeof v.rows === 'number') {
    text += `, ${v.rows} row${v.rows === 1 ? '' : 's'}`;
  }
  if (Array.isArray(v.examples) && v.examples.length) {
    text += ` (e.g. ${v.examples.slice(0, 3).map(e => String(e).slice(0, 40)).join(', ')})`;
  }
  if (v.severity === 'warn') {
    text += ' [warn]';
  }
  return text;
}

/** Per-stage status of a run, by stage name. */
export function stageStatuses(run: IRun | null): { [stage: string]: string } {
  const result: { [stage: string]: string } = {};
  for (const stage of run?.stages ?? []) {
    result[stage.name] = stage.status;
  }
  return result;
}

/** What the sidebar says about saving before a run: `saved nb.ipynb; running…` while it goes,
 * `saved nb.ipynb before run ID` once it ended; null when Run did not save. */
export function saveNote(state: IState): string | null {
  const saved = state.savedBeforeRun;
  if (!saved) {
    return null;
  }
  const run = state.activeRun;
  if (saved.runId === null) {
    return state.submitting === 'run' ? `saved ${saved.name}; running…` : `saved ${saved.name}`;
  }
  if (run?.run_id !== saved.runId) {
    return `saved ${saved.name} before run ${saved.runId}`;
  }
  return isFinished(run)
    ? `saved ${saved.name} before run ${run.run_id}`
    : `saved ${saved.name}; running…`;
}

/** Compare the sidebar's version with the server extension's; a message when they differ. */
export function versionProblem(frontend: string, server: string | null): string | null {
  if (server === null) {
    return 'the mlnb server extension is not answering: is it installed and enabled? (jupyter server extension list)';
  }
  if (server !== frontend) {
    return `the mlnb server extension is ${server} but this sidebar is ${frontend}: reinstall mlnb and restart JupyterLab`;
  }
  return null;
}
