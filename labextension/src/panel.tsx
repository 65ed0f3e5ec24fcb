/**
 * The sidebar's view: React components over the state, calling the model for every action.
 */

import { ReactWidget } from '@jupyterlab/ui-components';
import React, { useEffect, useState } from 'react';

import { api } from './api';
import { cellNumber, cellsLabel, errorCellIndex, stageCellIndexes } from './cells';
import { layoutDag } from './dag';
import { SidebarModel } from './model';
import { fieldKind, formatParameters } from './params';
import {
  IState,
  buildBlocker,
  contractRows,
  errorPlacement,
  formErrors,
  isRunning,
  modelRun,
  runBlocker,
  saveNote,
  stageStatuses,
  visibleStages
} from './state';
import { STAGE_KINDS, StageKind, markFromTags, splitNames } from './tagging';
import { IDraftStage, IErrorInfo, IImportance, IJob, IParameter, IRun, IStage } from './types';

export class MlnbSidebar extends ReactWidget {
  constructor(readonly model: SidebarModel) {
    super();
    this.addClass('mlnb-sidebar');
  }

  protected render(): JSX.Element {
    return <SidebarView model={this.model} />;
  }
}

function useModelState(model: SidebarModel): IState {
  const [state, setState] = useState(model.state);
  useEffect(() => {
    const update = (_: SidebarModel, next: IState) => setState(next);
    model.changed.connect(update);
    setState(model.state);
    return () => {
      model.changed.disconnect(update);
    };
  }, [model]);
  return state;
}

export function SidebarView({ model }: { model: SidebarModel }): JSX.Element {
  const state = useModelState(model);
  const name = state.path ? state.path.split('/').pop() : null;
  return (
    <div className="mlnb-body">
      <header className="mlnb-header">
        <span className="mlnb-title">mlnb pipeline</span>
        {name && <span className="mlnb-notebook" title={state.path ?? ''}>{name}</span>}
        {state.path && (
          <button
            className="mlnb-link"
            title="Read the notebook and its runs again"
            onClick={() => void Promise.all([model.inspect(), model.refreshRuns()])}
          >
            refresh
          </button>
        )}
      </header>
      {state.versionProblem && <div className="mlnb-banner mlnb-warning">{state.versionProblem}</div>}
      {state.message && (
        <div className={`mlnb-banner mlnb-${state.message.kind}`}>
          <span>{state.message.text}</span>
          <button className="mlnb-link" onClick={() => model.dispatch({ type: 'message', message: null })}>
            dismiss
          </button>
        </div>
      )}
      {state.path ? <NotebookView model={model} state={state} /> : (
        <p className="mlnb-empty">Open a notebook to see its stages, parameters and runs.</p>
      )}
    </div>
  );
}

function NotebookView({ model, state }: { model: SidebarModel; state: IState }): JSX.Element {
  const stages = visibleStages(state);
  const placement = errorPlacement(state);
  const statuses = stageStatuses(state.activeRun);
  return (
    <>
      {state.error && placement?.stage === null && <ErrorBox model={model} error={state.error} />}
      <section className="mlnb-section">
        <h3>Stages {state.loading && <span className="mlnb-muted">reading…</span>}</h3>
        {stages.length === 0 && !state.error && (
          <p className="mlnb-muted">
            No stages yet: select a code cell and tag it data, train or serve below.
          </p>
        )}
        <ol className="mlnb-stages">
          {stages.map((stage, i) => (
            <StageRow
              key={stage.name}
              model={model}
              stage={stage}
              number={i + 1}
              status={statuses[stage.name]}
              error={placement?.stage === stage.name ? state.error : null}
            />
          ))}
        </ol>
        {state.pipeline && !state.error && state.pipeline.stages.length > 0 && (
          <DagView stages={state.pipeline.stages} statuses={statuses} model={model} />
        )}
      </section>
      <TagSection model={model} state={state} />
      {state.pipeline && <ParametersForm model={model} state={state} />}
      <Actions model={model} state={state} />
      {state.activeRun && <LiveRun run={state.activeRun} />}
      {state.build && <BuildStatus job={state.build} />}
      <Contracts run={state.activeRun ?? state.runs[0] ?? null} />
      <TopFeatures model={model} state={state} />
      <History model={model} state={state} />
    </>
  );
}

function StageRow(props: {
  model: SidebarModel;
  stage: IStage | IDraftStage;
  number: number;
  status?: string;
  error: IErrorInfo | null;
}): JSX.Element {
  const { model, stage, number, status, error } = props;
  const full = 'depends_on' in stage ? stage : null;
  const cells = stageCellIndexes(stage);
  return (
    <li className={`mlnb-stage${error ? ' mlnb-stage-error' : ''}`} data-stage={stage.name}>
      <div className="mlnb-stage-row">
        <span className="mlnb-stage-number">{number}</span>
        <span className={`mlnb-kind mlnb-kind-${stage.kind}`}>{stage.kind}</span>
        <span className="mlnb-stage-name">{stage.name}</span>
        <button
          className="mlnb-link mlnb-cells"
          title="Go to the stage's first cell"
          onClick={() => void model.goToCell(cells[0])}
        >
          {cellsLabel(cells)}
        </button>
        {status && <StatusChip status={status} />}
      </div>
      {full && full.depends_on.length > 0 && (
        <div className="mlnb-muted mlnb-small">after {full.depends_on.join(', ')}</div>
      )}
      {full && full.model && <div className="mlnb-muted mlnb-small">model: {full.model}</div>}
      {error && <ErrorBox model={model} error={error} />}
    </li>
  );
}

function ErrorBox({ model, error }: { model: SidebarModel; error: IErrorInfo }): JSX.Element {
  const cell = errorCellIndex(error);
  return (
    <div className="mlnb-error-box" data-error={error.error}>
      <div className="mlnb-error-message">{error.message}</div>
      {error.fix && <div className="mlnb-fix">Fix: {error.fix}</div>}
      {cell !== null && (
        <button className="mlnb-link mlnb-go-to-cell" onClick={() => void model.goToCell(cell)}>
          go to cell {cellNumber(cell)}
        </button>
      )}
    </div>
  );
}

export function StatusChip({ status }: { status: string }): JSX.Element {
  return <span className={`mlnb-chip mlnb-status-${status}`}>{status}</span>;
}

function DagView(props: {
  stages: IStage[];
  statuses: { [name: string]: string };
  model: SidebarModel;
}): JSX.Element {
  const dag = layoutDag(props.stages);
  const cells = new Map(props.stages.map(s => [s.name, stageCellIndexes(s)[0]]));
  return (
    <svg
      className="mlnb-dag"
      viewBox={`0 0 ${dag.width} ${dag.height}`}
      width={dag.width}
      height={dag.height}
      role="img"
      aria-label="stage dependencies"
    >
      <defs>
        <marker id="mlnb-arrow" viewBox="0 0 8 8" refX="7" refY="4" markerWidth="6" markerHeight="6" orient="auto">
          <path d="M0,0 L8,4 L0,8 z" className="mlnb-dag-arrow" />
        </marker>
      </defs>
      {dag.edges.map(e => (
        <path key={`${e.from}->${e.to}`} d={e.path} className="mlnb-dag-edge" markerEnd="url(#mlnb-arrow)" />
      ))}
      {dag.nodes.map(n => (
        <g
          key={n.name}
          className={`mlnb-dag-node mlnb-kind-${n.kind} mlnb-status-${props.statuses[n.name] ?? 'none'}`}
          transform={`translate(${n.x},${n.y})`}
          onClick={() => void props.model.goToCell(cells.get(n.name) ?? 0)}
        >
          <title>{`${n.kind} stage ${n.name}`}</title>
          <rect width={n.width} height={n.height} rx={5} />
          <text x={n.width / 2} y={n.height / 2} dominantBaseline="central" textAnchor="middle">
            {n.name.length > 11 ? `${n.name.slice(0, 10)}…` : n.name}
          </text>
        </g>
      ))}
    </svg>
  );
}

function TagSection({ model, state }: { model: SidebarModel; state: IState }): JSX.Element | null {
  const cell = state.cell;
  const [name, setName] = useState('');
  const [modelVar, setModelVar] = useState('');
  const [metrics, setMetrics] = useState('');
  const mark = cell ? markFromTags(cell.tags) : null;
  useEffect(() => {
    setName(mark && mark.name !== mark.kind ? mark.name : '');
    const options = cell?.options ?? {};
    setModelVar(typeof options.model === 'string' ? options.model : '');
    setMetrics(Array.isArray(options.metrics) ? options.metrics.join(', ') : '');
  }, [cell?.index, mark?.kind, mark?.name]);
  if (!cell || state.pipeline?.flavour === 'kale') {
    return null;
  }
  const tag = (kind: StageKind) =>
    model.tagActiveCell({
      kind,
      name: name.trim() || kind,
      model: kind === 'train' ? modelVar.trim() || null : null,
      metrics: kind === 'train' ? splitNames(metrics) : []
    });
  return (
    <section className="mlnb-section mlnb-tagging">
      <h3>
        Active cell {cellNumber(cell.index)}
        {mark && <span className={`mlnb-kind mlnb-kind-${mark.kind}`}>{mark.kind}</span>}
        {mark && <span className="mlnb-muted"> {mark.name}</span>}
      </h3>
      {cell.cellType !== 'code' ? (
        <p className="mlnb-muted">Select a code cell to tag it as a stage.</p>
      ) : cell.magic ? (
        <p className="mlnb-muted">
          Marked by its first line <code>{cell.magic}</code>: edit that line to change the stage.
        </p>
      ) : (
        <>
          <div className="mlnb-field-row">
            <label>
              name
              <input
                className="mlnb-input mlnb-stage-name-input"
                value={name}
                placeholder="(the kind)"
                onChange={e => setName(e.target.value)}
              />
            </label>
          </div>
          <div className="mlnb-field-row">
            <label>
              model
              <input className="mlnb-input" value={modelVar} placeholder="train: model variable" onChange={e => setModelVar(e.target.value)} />
            </label>
            <label>
              metrics
              <input className="mlnb-input" value={metrics} placeholder="train: a, b" onChange={e => setMetrics(e.target.value)} />
            </label>
          </div>
          <div className="mlnb-buttons">
            {STAGE_KINDS.map(kind => (
              <button
                key={kind}
                className={`mlnb-button mlnb-tag-${kind}`}
                title={`Open a ${kind} stage at this cell (tag mlnb:${kind})`}
                onClick={() => tag(kind)}
              >
                {kind}
              </button>
            ))}
            <button
              className="mlnb-button mlnb-untag"
              disabled={!mark}
              title="Remove this cell's stage tag"
              onClick={() => model.untagActiveCell()}
            >
              untag
            </button>
          </div>
        </>
      )}
    </section>
  );
}

function ParametersForm({ model, state }: { model: SidebarModel; state: IState }): JSX.Element | null {
  const params = state.pipeline?.parameter_details ?? [];
  if (!params.length) {
    return null;
  }
  const errors = formErrors(state);
  return (
    <section className="mlnb-section mlnb-parameters">
      <h3>
        Parameters
        <button className="mlnb-link" onClick={() => model.dispatch({ type: 'params/reset' })}>
          defaults
        </button>
      </h3>
      {params.map(p => (
        <ParameterField
          key={p.name}
          param={p}
          value={state.values[p.name]}
          error={errors[p.name]}
          onChange={value => model.dispatch({ type: 'param', name: p.name, value })}
        />
      ))}
    </section>
  );
}

function ParameterField(props: {
  param: IParameter;
  value: string | boolean | undefined;
  error?: string;
  onChange: (value: string | boolean) => void;
}): JSX.Element {
  const { param, value, error, onChange } = props;
  const kind = fieldKind(param);
  let input: JSX.Element;
  if (kind === 'checkbox') {
    input = <input type="checkbox" checked={value === true} onChange={e => onChange(e.target.checked)} />;
  } else if (kind === 'select') {
    input = (
      <select className="mlnb-input" value={String(value)} onChange={e => onChange(e.target.value)}>
        {param.choices.map(c => (
          <option key={c} value={c}>{c}</option>
        ))}
      </select>
    );
  } else {
    input = (
      <input
        className={`mlnb-input${error ? ' mlnb-invalid' : ''}`}
        value={String(value ?? '')}
        readOnly={kind === 'readonly'}
        inputMode={kind === 'number' ? 'decimal' : undefined}
        onChange={e => onChange(e.target.value)}
      />
    );
  }
  return (
    <div className="mlnb-param" data-param={param.name}>
      <label>
        <span className="mlnb-param-name">{param.name}</span>
        <span className="mlnb-muted mlnb-small">{param.type}</span>
        {input}
      </label>
      {param.comment && !param.choices.length && <div className="mlnb-muted mlnb-small">{param.comment}</div>}
      {error && <div className="mlnb-field-error">{error}</div>}
    </div>
  );
}

function Actions({ model, state }: { model: SidebarModel; state: IState }): JSX.Element {
  const runProblem = runBlocker(state);
  const buildProblem = buildBlocker(state);
  const note = saveNote(state);
  return (
    <section className="mlnb-section mlnb-actions">
      <label
        className="mlnb-kernel"
        style={{ flexBasis: '100%' }}
        title="The Jupyter kernel the run uses (mlnb run --kernel)"
      >
        <span className="mlnb-param-name">kernel</span>
        <input
          className="mlnb-input mlnb-kernel-input"
          value={state.kernel}
          placeholder="the notebook's kernel"
          spellCheck={false}
          onChange={e => model.dispatch({ type: 'kernel', kernel: e.target.value })}
        />
      </label>
      <button
        className="mlnb-button mlnb-primary mlnb-run-button"
        disabled={runProblem !== null}
        title={runProblem ?? 'Save the notebook and run the pipeline with these parameters'}
        onClick={() => void model.startRun()}
      >
        {isRunning(state) ? 'Running…' : 'Run'}
      </button>
      <button
        className="mlnb-button mlnb-build-button"
        disabled={buildProblem !== null}
        title={buildProblem ?? 'Build a BentoML service from the newest successful run'}
        onClick={() => void model.startBuild()}
      >
        {state.submitting === 'build' || state.build?.status === 'running' ? 'Building…' : 'Build'}
      </button>
      <div className="mlnb-muted mlnb-small mlnb-run-note" role="status" aria-live="polite">
        {note ?? ''}
      </div>
    </section>
  );
}

function elapsed(from?: string | null, to?: string | null): string {
  if (!from) {
    return '';
  }
  const end = to ? Date.parse(to) : Date.now();
  const seconds = Math.max(0, (end - Date.parse(from)) / 1000);
  return seconds < 60 ? `${seconds.toFixed(0)} s` : `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
}

function LiveRun({ run }: { run: IRun }): JSX.Element {
  const error = run.error;
  const where = error ? runErrorPlace(error) : '';
  return (
    <section className={`mlnb-section mlnb-live mlnb-live-${run.status}`} data-run={run.run_id}>
      <h3>
        Latest run <StatusChip status={run.status} />
        <span className="mlnb-muted mlnb-small"> {elapsed(run.started_at, run.finished_at)}</span>
      </h3>
      <div className="mlnb-muted mlnb-small mlnb-run-id">{run.run_id}</div>
      <StageChips run={run} />
      {error && (
        <div className="mlnb-error-box">
          <div className="mlnb-error-message">
            {where ? `${where}: ` : ''}
            {error.ename ? `${error.ename}: ` : ''}
            {error.evalue ?? error.message}
          </div>
        </div>
      )}
      <Metrics metrics={run.metrics} />
    </section>
  );
}

/** `stage fit, cell 8` for a run's error (1-based, as people read cells). */
function runErrorPlace(error: NonNullable<IRun['error']>): string {
  const cell = errorCellIndex(error);
  const parts = [
    error.stage ? `stage ${error.stage}` : '',
    cell !== null ? `cell ${cellNumber(cell)}` : ''
  ];
  return parts.filter(Boolean).join(', ');
}

function StageChips({ run }: { run: IRun }): JSX.Element {
  return (
    <div className="mlnb-chips">
      {(run.stages ?? []).map(s => (
        <span key={s.name} className={`mlnb-chip mlnb-status-${s.status}`} title={s.reason ?? ''}>
          {s.name}: {s.status}
        </span>
      ))}
    </div>
  );
}

function Metrics({ metrics }: { metrics?: { [name: string]: number } }): JSX.Element | null {
  const entries = Object.entries(metrics ?? {});
  if (!entries.length) {
    return null;
  }
  return (
    <div className="mlnb-metrics">
      {entries.map(([k, v]) => (
        <span key={k} className="mlnb-metric">
          {k} <b>{typeof v === 'number' ? Number(v.toPrecision(4)) : String(v)}</b>
        </span>
      ))}
    </div>
  );
}

function BuildStatus({ job }: { job: IJob }): JSX.Element {
  const result = job.result as {
    bento?: string;
    model?: string;
    format?: string;
    reused?: boolean;
    reused_from_run?: string | null;
  } | null;
  return (
    <section className={`mlnb-section mlnb-build mlnb-build-${job.status}`}>
      <h3>
        Build <StatusChip status={job.status} />
        <span className="mlnb-muted mlnb-small"> {elapsed(job.started_at, job.finished_at)}</span>
      </h3>
      {result?.bento && (
        <div>
          {result.reused ? 'Reused the existing Bento ' : 'Bento '}
          <code className="mlnb-bento">{result.bento}</code>
          {result.format && <span className="mlnb-muted"> ({result.format})</span>}
          {result.reused && (
            <div className="mlnb-muted mlnb-small mlnb-reused">
              {result.reused_from_run ? `built from run ${result.reused_from_run}; ` : ''}same
              content, so no new Bento was made
            </div>
          )}
        </div>
      )}
      {job.error && <div className="mlnb-error-box"><div className="mlnb-error-message">{job.error.message}</div>{job.error.fix && <div className="mlnb-fix">Fix: {job.error.fix}</div>}</div>}
      {job.log && job.status !== 'succeeded' && <pre className="mlnb-log">{job.log.split('\n').slice(-6).join('\n')}</pre>}
    </section>
  );
}

function Contracts({ run }: { run: IRun | null }): JSX.Element | null {
  const rows = contractRows(run);
  if (!run || !rows.length) {
    return null;
  }
  return (
    <section className="mlnb-section mlnb-contracts" data-run={run.run_id}>
      <h3>Data contracts</h3>
      <ul>
        {rows.map(row => (
          <li key={row.stage} className={`mlnb-contract mlnb-contract-${row.status}`} data-stage={row.stage}>
            <div className="mlnb-stage-row">
              <span className="mlnb-stage-name">{row.stage}</span>
              <span className={`mlnb-chip mlnb-contract-status mlnb-contract-status-${row.status}`}>{row.status}</span>
              {row.file && <code className="mlnb-muted mlnb-small" title={row.file}>{row.file.split('/').pop()}</code>}
            </div>
            {row.violations.map((text, i) => (
              <div key={i} className="mlnb-violation mlnb-small">{text}</div>
            ))}
            {row.more > 0 && <div className="mlnb-muted mlnb-small">and {row.more} more</div>}
          </li>
        ))}
      </ul>
    </section>
  );
}

function importanceNote(result: IImportance): string {
  const parts: string[] = [];
  const c = result.contribution;
  if (c?.available) {
    parts.push(`mean |contribution|: ${c.method} SHAP (${c.exact ? 'exact' : 'sampled'}), ${c.rows} ${c.data} rows`);
  } else if (c) {
    parts.push(`no contributions: ${c.reason}`);
  }
  const p = result.permutation;
  if (p?.available) {
    parts.push(`permutation: drop in ${p.scoring}, ${p.repeats} shuffles of ${p.rows} ${p.data} rows`);
  } else if (p) {
    parts.push(`no permutation importance: ${p.reason}`);
  }
  return parts.join('; ');
}

function TopFeatures({ model, state }: { model: SidebarModel; state: IState }): JSX.Element | null {
  const run = modelRun(state);
  const imp = state.importance;
  if (!run || !imp || imp.runId !== run.run_id) {
    return null;
  }
  const result = imp.result;
  const features = (result?.features ?? []).slice(0, 10);
  const key = result?.ordered_by === 'permutation_mean' ? 'permutation_mean' : 'mean_abs_contribution';
  const top = Math.max(1e-12, ...features.map(f => Math.abs(f[key] ?? 0)));
  return (
    <section className={`mlnb-section mlnb-features mlnb-features-${imp.status}`} data-run={run.run_id}>
      <h3>
        Top features
        {imp.status === 'computing' && <span className="mlnb-muted mlnb-features-status">computing…</span>}
        {imp.status === 'checking' && <span className="mlnb-muted mlnb-features-status">checking…</span>}
        {(imp.status === 'not-computed' || imp.status === 'error') && (
          <button
            className="mlnb-link mlnb-features-compute"
            title="Compute the global importance of this run's model (once; the store keeps it)"
            onClick={() => void model.computeImportance()}
          >
            compute
          </button>
        )}
      </h3>
      {imp.status === 'not-computed' && (
        <p className="mlnb-muted mlnb-small">Not computed yet for run {run.run_id}.</p>
      )}
      {imp.message && <div className="mlnb-error-box"><div className="mlnb-error-message">{imp.message}</div></div>}
      {result && !result.available && <p className="mlnb-muted mlnb-small">Unavailable: {result.reason}</p>}
      {features.length > 0 && (
        <>
          <table className="mlnb-feature-table">
            <tbody>
              {features.map(f => (
                <tr key={f.feature} className="mlnb-feature" data-feature={f.feature}>
                  <td className="mlnb-feature-name" title={f.feature}>{f.feature}</td>
                  <td className="mlnb-feature-bar-cell">
                    <span
                      className="mlnb-feature-bar"
                      style={{ width: `${Math.round((60 * Math.max(f[key] ?? 0, 0)) / top)}px` }}
                    />
                  </td>
                  <td className="mlnb-small">{(f[key] ?? 0).toPrecision(3)}</td>
                </tr>
              ))}
            </tbody>
          </table>
          {result && <div className="mlnb-muted mlnb-small mlnb-features-note">{importanceNote(result)}</div>}
        </>
      )}
    </section>
  );
}

function History({ model, state }: { model: SidebarModel; state: IState }): JSX.Element {
  const building = state.submitting === 'build' || state.build?.status === 'running';
  return (
    <section className="mlnb-section mlnb-history">
      <h3>Runs</h3>
      {state.runs.length === 0 && <p className="mlnb-muted">No runs yet.</p>}
      <ul>
        {state.runs.map(run => (
          <li key={run.run_id} className="mlnb-run" data-run={run.run_id}>
            <div className="mlnb-run-head">
              <StatusChip status={run.status} />
              <code className="mlnb-run-id" title={run.run_id}>{run.run_id}</code>
              <span className="mlnb-muted mlnb-small">
                {run.started_at ? new Date(run.started_at).toLocaleString() : ''}
              </span>
              {run.status === 'succeeded' && (
                <button
                  className="mlnb-link"
                  disabled={building || isRunning(state)}
                  title="Build a BentoML service from this run"
                  onClick={() => void model.startBuild(run.run_id)}
                >
                  build
                </button>
              )}
            </div>
            {run.parameters && Object.keys(run.parameters).length > 0 && (
              <div className="mlnb-muted mlnb-small">{formatParameters(run.parameters)}</div>
            )}
            <StageChips run={run} />
            <Metrics metrics={run.metrics} />
            <RunFiles model={model} run={run} path={state.path ?? ''} />
            {(run.builds ?? []).map(b => (
              <div key={b.bento} className="mlnb-small">
                Bento <code className="mlnb-bento">{b.bento}</code>
                {b.format && <span className="mlnb-muted"> ({b.format})</span>}
              </div>
            ))}
          </li>
        ))}
      </ul>
    </section>
  );
}

/** A run's report (shown in the main area) and its executed notebook (opened in JupyterLab
 * when the server's Contents API serves it, else downloaded). */
function RunFiles({ model, run, path }: { model: SidebarModel; run: IRun; path: string }): JSX.Element | null {
  const finished = run.status === 'succeeded' || run.status === 'failed';
  if (!finished || !run.executed_notebook) {
    return null; // still going, or its kernel never started: no notebook, no report
  }
  return (
    <div className="mlnb-run-files mlnb-small">
      <button
        className="mlnb-link mlnb-report-link"
        title="Open this run's HTML report (mlnb report) in JupyterLab"
        onClick={() => model.openReport(run.run_id)}
      >
        report
      </button>
      {run.executed_notebook_path ? (
        <button
          className="mlnb-link mlnb-executed-link"
          title={`Open the executed notebook (${run.executed_notebook_path})`}
          onClick={() => model.openExecutedNotebook(run)}
        >
          executed notebook
        </button>
      ) : (
        <a
          className="mlnb-link mlnb-executed-link"
          href={api.executedNotebookUrl(path, run.run_id)}
          download
          title="Download the executed notebook (the store's folder is hidden from JupyterLab's file browser)"
        >
          executed notebook
        </a>
      )}
    </div>
  );
}
