/**
 * The sidebar's controller: follows the active notebook, talks to the server, polls runs and
 * builds, and edits cell tags. All state changes go through the pure reducer in state.ts.
 */

import { Cell } from '@jupyterlab/cells';
import { NotebookPanel } from '@jupyterlab/notebook';
import { Signal } from '@lumino/signaling';

import { api, ApiError } from './api';
import { cellBadges } from './badges';
import { showBadges } from './cellbadges';
import { coerceAll } from './params';
import {
  Action,
  ICellInfo,
  IState,
  initialState,
  isFinished,
  modelRun,
  reducer,
  versionProblem
} from './state';
import { IStageMark, checkMark, magicLine, tagCell, untagCell } from './tagging';
import { IErrorInfo, IRun } from './types';
import { FRONTEND_VERSION } from './version';

const INSPECT_DEBOUNCE_MS = 700;
const RUN_POLL_MS = 1000;
const BUILD_POLL_MS = 1500;

const sleep = (ms: number) => new Promise(resolve => setTimeout(resolve, ms));

function errorText(error: unknown): string {
  if (error instanceof ApiError) {
    return error.info.fix ? `${error.info.message} (${error.info.fix})` : error.info.message;
  }
  return String(error);
}

/** What the sidebar asks of JupyterLab's shell (index.ts gives the real ones). */
export interface IShellActions {
  /** Bring the notebook's tab to the front. */
  activate(panel: NotebookPanel): void;
  /** Show a run's HTML report in the main area. */
  openReport(url: string, runId: string): void;
  /** Open a notebook JupyterLab's Contents API serves (a path relative to the server root). */
  openNotebook(path: string): void;
}

/** Without a shell (a model on its own), there is nothing to bring forward or open into. */
const NO_SHELL: IShellActions = {
  activate: () => {},
  openReport: () => {},
  openNotebook: () => {}
};

export class SidebarModel {
  readonly changed = new Signal<SidebarModel, IState>(this);
  private _state: IState = initialState;
  private _panel: NotebookPanel | null = null;
  private _inspectTimer: number | null = null;
  private _polling = new Set<string>();
  private _disposed = false;

  constructor(private readonly _shell: IShellActions = NO_SHELL) {}

  get state(): IState {
    return this._state;
  }

  get panel(): NotebookPanel | null {
    return this._panel;
  }

  dispatch(action: Action): void {
    const next = reducer(this._state, action);
    if (next !== this._state) {
      this._state = next;
      this.changed.emit(next);
    }
  }

  dispose(): void {
    this._disposed = true;
    this._unfollow();
    Signal.clearData(this);
  }

  async checkVersion(): Promise<void> {
    let server: string | null = null;
    try {
      server = (await api.version()).version;
    } catch {
      server = null;
    }
    this.dispatch({ type: 'version', server, problem: versionProblem(FRONTEND_VERSION, server) });
  }

  // --- following the active notebook ---

  async setNotebook(panel: NotebookPanel | null): Promise<void> {
    if (panel === this._panel) {
      return;
    }
    this._unfollow();
    this._panel = panel;
    if (!panel) {
      this.dispatch({ type: 'notebook', path: null });
      return;
    }
    await panel.context.ready;
    if (this._panel !== panel) {
      return;
    }
    this.dispatch({ type: 'notebook', path: panel.context.path });
    panel.context.model.contentChanged.connect(this._scheduleInspect, this);
    panel.context.pathChanged.connect(this._onPathChanged, this);
    panel.content.activeCellChanged.connect(this._onActiveCell, this);
    panel.disposed.connect(this._onDisposed, this);
    this._onActiveCell();
    await Promise.all([this.inspect(), this.refreshRuns()]);
  }

  private _unfollow(): void {
    const panel = this._panel;
    if (this._inspectTimer !== null) {
      window.clearTimeout(this._inspectTimer);
      this._inspectTimer = null;
    }
    if (!panel || panel.isDisposed) {
      return;
    }
    panel.context.model?.contentChanged.disconnect(this._scheduleInspect, this);
    panel.context.pathChanged.disconnect(this._onPathChanged, this);
    panel.content.activeCellChanged.disconnect(this._onActiveCell, this);
    panel.disposed.disconnect(this._onDisposed, this);
    this._watchCell(null);
  }

  private _onDisposed(): void {
    this._panel = null;
    this.dispatch({ type: 'notebook', path: null });
  }

  private _onPathChanged(): void {
    const panel = this._panel;
    this._unfollow();
    this._panel = null;
    void this.setNotebook(panel);
  }

  private _scheduleInspect(): void {
    if (this._inspectTimer !== null) {
      window.clearTimeout(this._inspectTimer);
    }
    this._inspectTimer = window.setTimeout(() => {
      this._inspectTimer = null;
      void this.inspect();
    }, INSPECT_DEBOUNCE_MS);
  }

  /** Read the pipeline of the open document, saved or not. */
  async inspect(): Promise<void> {
    const panel = this._panel;
    if (!panel || !panel.context.isReady) {
      return;
    }
    const path = panel.context.path;
    this.dispatch({ type: 'inspect/start' });
    const content = panel.context.model.toJSON() as any;
    const document = {
      ...content,
      cells: (content.cells ?? []).map((c: any) => ({
        cell_type: c.cell_type,
        source: c.source,
        metadata: c.metadata ?? {}
      }))
    };
    try {
      const pipeline = await api.inspectContent(path, document);
      this.dispatch({ type: 'inspect/ok', path, pipeline });
    } catch (error) {
      const info: IErrorInfo =
        error instanceof ApiError
          ? error.info
          : { error: 'client', message: String(error), fix: null, notebook: path, cell_index: null, cell: null, cell_first_line: null, stage: null };
      this.dispatch({ type: 'inspect/error', path, error: info });
    }
    this._showBadges(panel);
  }

  /** Badge each cell of the notebook with its stage, as the pipeline just read says. */
  private _showBadges(panel: NotebookPanel): void {
    if (panel !== this._panel || panel.isDisposed) {
      return;
    }
    const { pipeline, error } = this._state;
    showBadges(panel.content, cellBadges(error ? null : pipeline, error?.stages ?? []));
  }

  /** Show a run's HTML report in the main area. */
  openReport(runId: string): void {
    const path = this._state.path;
    if (path) {
      this._shell.openReport(api.reportUrl(path, runId), runId);
    }
  }

  /** Open a run's executed notebook in JupyterLab (when the Contents API serves it). */
  openExecutedNotebook(run: IRun): void {
    if (run.executed_notebook_path) {
      this._shell.openNotebook(run.executed_notebook_path);
    }
  }

  async refreshRuns(): Promise<void> {
    const path = this._state.path;
    if (!path) {
      return;
    }
    try {
      const { runs } = await api.runs(path);
      this.dispatch({ type: 'runs', path, runs });
      const going = runs.find(r => r.status === 'running');
      if (going && !this._polling.has(going.run_id)) {
        void this._pollRun(path, going.run_id);
      }
      void this.checkImportance();
    } catch (error) {
      this.dispatch({ type: 'message', message: { kind: 'error', text: `cannot list runs: ${errorText(error)}` } });
    }
  }

  // --- the active cell and tagging ---

  private _watched: Cell | null = null;

  private _watchCell(cell: Cell | null): void {
    if (this._watched && !this._watched.isDisposed) {
      this._watched.model.metadataChanged.disconnect(this._onActiveCell, this);
    }
    this._watched = cell;
    cell?.model.metadataChanged.connect(this._onActiveCell, this);
  }

  private _onActiveCell(): void {
    const notebook = this._panel?.content;
    const cell = notebook?.activeCell ?? null;
    if (cell !== this._watched) {
      this._watchCell(cell);
    }
    if (!notebook || !cell) {
      this.dispatch({ type: 'cell', cell: null });
      return;
    }
    const info: ICellInfo = {
      index: notebook.activeCellIndex,
      cellType: cell.model.type,
      tags: [...((cell.model.getMetadata('tags') as string[] | undefined) ?? [])],
      options: (cell.model.getMetadata('mlnb') as { [key: string]: unknown } | undefined) ?? null,
      magic: magicLine(cell.model.sharedModel.getSource())
    };
    this.dispatch({ type: 'cell', cell: info });
  }

  /** Tag the active cell as opening a stage; returns the problem, or null when done. */
  tagActiveCell(mark: IStageMark): string | null {
    const cell = this._panel?.content.activeCell;
    if (!cell) {
      return 'select a cell first';
    }
    if (cell.model.type !== 'code') {
      return 'only code cells can open a stage';
    }
    const problem = checkMark(mark, cell.model.sharedModel.getSource());
    if (problem) {
      this.dispatch({ type: 'message', message: { kind: 'error', text: problem } });
      return problem;
    }
    const tags = (cell.model.getMetadata('tags') as string[] | undefined) ?? [];
    const markup = tagCell(tags, mark);
    this._writeMarkup(cell, markup.tags, markup.mlnb);
    return null;
  }

  untagActiveCell(): void {
    const cell = this._panel?.content.activeCell;
    if (!cell) {
      return;
    }
    const markup = untagCell((cell.model.getMetadata('tags') as string[] | undefined) ?? []);
    this._writeMarkup(cell, markup.tags, markup.mlnb);
  }

  private _writeMarkup(cell: Cell, tags: string[], mlnb: unknown): void {
    if (tags.length) {
      cell.model.setMetadata('tags', tags);
    } else {
      cell.model.deleteMetadata('tags');
    }
    if (mlnb === undefined) {
      cell.model.deleteMetadata('mlnb');
    } else {
      cell.model.setMetadata('mlnb', mlnb);
    }
    this.dispatch({ type: 'message', message: null });
    this._onActiveCell();
    this._scheduleInspect();
  }

  /** Select a cell in the notebook and scroll it into view. */
  async goToCell(index: number): Promise<void> {
    const panel = this._panel;
    if (!panel || index < 0 || index >= panel.content.widgets.length) {
      return;
    }
    this._shell.activate(panel);
    panel.content.activeCellIndex = index;
    panel.content.deselectAll();
    await panel.content.scrollToCell(panel.content.widgets[index], 'start');
  }

  // --- runs ---

  async startRun(): Promise<void> {
    const panel = this._panel;
    const state = this._state;
    if (!panel || !state.path || !state.pipeline) {
      return;
    }
    const path = state.path;
    const { parameters, errors } = coerceAll(state.pipeline.parameter_details, state.values);
    if (Object.keys(errors).length) {
      this.dispatch({ type: 'submit/error', message: Object.values(errors).join('; ') });
      return;
    }
    this.dispatch({ type: 'submit', what: 'run' });
    if (panel.context.model.dirty) {
      // The run reads the file, so it must hold what is shown: save, and say so.
      const name = path.split('/').pop() ?? path;
      try {
        await panel.context.save();
      } catch (error) {
        this.dispatch({ type: 'submit/error', message: `cannot save ${name}, so the run did not start: ${errorText(error)}` });
        return;
      }
      this.dispatch({ type: 'run/saved', name });
    }
    try {
      const { run_id } = await api.startRun(path, parameters, state.kernel.trim() || undefined);
      this.dispatch({ type: 'run/progress', path, run: { run_id, status: 'starting', stages: [], parameters } });
      await this._pollRun(path, run_id);
    } catch (error) {
      this.dispatch({ type: 'submit/error', message: `cannot start the run: ${errorText(error)}` });
    }
  }

  private async _pollRun(path: string, runId: string): Promise<void> {
    if (this._polling.has(runId)) {
      return;
    }
    this._polling.add(runId);
    let failures = 0;
    try {
      while (!this._disposed && this._state.path === path) {
        let run: IRun;
        try {
          run = await api.run(path, runId);
          failures = 0;
        } catch (error) {
          if (++failures >= 5) {
            this.dispatch({ type: 'message', message: { kind: 'error', text: `lost track of run ${runId}: ${errorText(error)}` } });
            return;
          }
          await sleep(RUN_POLL_MS);
          continue;
        }
        this.dispatch({ type: 'run/progress', path, run });
        if (isFinished(run)) {
          await this.refreshRuns();
          return;
        }
        await sleep(RUN_POLL_MS);
      }
    } finally {
      this._polling.delete(runId);
    }
  }

  // --- the top features of the model ---

  /** Ask whether the model run's top features are known (the server reads its cache). */
  async checkImportance(): Promise<void> {
    const path = this._state.path;
    const run = modelRun(this._state);
    if (!path || !run || this._state.importance?.runId === run.run_id) {
      return;
    }
    const runId = run.run_id;
    this.dispatch({ type: 'importance', path, importance: { runId, status: 'checking', result: null, message: null } });
    try {
      const answer = await api.importance(path, runId);
      const status = answer.status === 'computed' ? 'computed' : 'not-computed';
      this.dispatch({ type: 'importance', path, importance: { runId, status, result: answer.importance, message: null } });
    } catch (error) {
      this.dispatch({ type: 'importance', path, importance: { runId, status: 'error', result: null, message: errorText(error) } });
    }
  }

  /** Compute the top features on the server (in a subprocess there); a status meanwhile. */
  async computeImportance(): Promise<void> {
    const path = this._state.path;
    const current = this._state.importance;
    if (!path || !current || current.status === 'computing') {
      return;
    }
    const runId = current.runId;
    this.dispatch({ type: 'importance', path, importance: { runId, status: 'computing', result: null, message: null } });
    try {
      const answer = await api.computeImportance(path, runId);
      this.dispatch({ type: 'importance', path, importance: { runId, status: 'computed', result: answer.importance, message: null } });
    } catch (error) {
      this.dispatch({ type: 'importance', path, importance: { runId, status: 'error', result: null, message: errorText(error) } });
    }
  }

  // --- builds ---

  async startBuild(runId: string | null = null): Promise<void> {
    const path = this._state.path;
    if (!path) {
      return;
    }
    this.dispatch({ type: 'submit', what: 'build' });
    let job;
    try {
      job = await api.startBuild(path, runId);
    } catch (error) {
      this.dispatch({ type: 'submit/error', message: `cannot start the build: ${errorText(error)}` });
      return;
    }
    this.dispatch({ type: 'build/progress', path, job });
    while (!this._disposed && this._state.path === path && job.status === 'running') {
      await sleep(BUILD_POLL_MS);
      try {
        job = await api.job(job.job_id);
      } catch (error) {
        this.dispatch({ type: 'message', message: { kind: 'error', text: `lost track of the build: ${errorText(error)}` } });
        return;
      }
      this.dispatch({ type: 'build/progress', path, job });
    }
    await this.refreshRuns();
  }
}
