import {
  IState,
  buildBlocker,
  errorPlacement,
  initialState,
  isRunning,
  reducer,
  runBlocker,
  saveNote,
  stageStatuses,
  versionProblem,
  visibleStages
} from '../state';
import { IErrorInfo, IJob, IPipeline, IRun } from '../types';

const pipeline: IPipeline = {
  notebook: 'nb.ipynb',
  flavour: 'mlnb',
  stages: [
    { name: 'load', kind: 'data', cells: [1, 2], defines: ['X'], uses: [], depends_on: [], model: null, metrics: [], outputs: [] },
    { name: 'fit', kind: 'train', cells: [3], defines: ['m'], uses: ['X'], depends_on: ['load'], model: 'm', metrics: [], outputs: [] }
  ],
  parameters: { seed: 42 },
  parameter_details: [{ name: 'seed', default: 42, type: 'int', comment: '', choices: [] }],
  parameters_cell: 0,
  setup_cells: [],
  skipped_cells: [],
  metric_names: []
};

const error = (fields: Partial<IErrorInfo>): IErrorInfo => ({
  error: 'undefined-name',
  message: 'm',
  fix: 'f',
  notebook: 'nb.ipynb',
  cell: null,
  cell_first_line: null,
  stage: null,
  ...fields
});

const run = (id: string, status: string, stages: any[] = []): IRun => ({ run_id: id, status, stages });

function ready(): IState {
  let s = reducer(initialState, { type: 'notebook', path: 'nb.ipynb' });
  s = reducer(s, { type: 'version', server: '0.1.0', problem: null });
  return reducer(s, { type: 'inspect/ok', path: 'nb.ipynb', pipeline });
}

describe('reducer', () => {
  it('resets per notebook but keeps the server version', () => {
    const s = reducer(ready(), { type: 'notebook', path: 'other.ipynb' });
    expect(s.pipeline).toBeNull();
    expect(s.serverVersion).toBe('0.1.0');
    expect(reducer(s, { type: 'notebook', path: 'other.ipynb' })).toBe(s);
  });

  it('ignores answers for a notebook that is no longer active', () => {
    const s = reducer(ready(), { type: 'notebook', path: 'other.ipynb' });
    expect(reducer(s, { type: 'inspect/ok', path: 'nb.ipynb', pipeline })).toBe(s);
    expect(reducer(s, { type: 'runs', path: 'nb.ipynb', runs: [run('a', 'failed')] })).toBe(s);
    expect(reducer(s, { type: 'run/progress', path: 'nb.ipynb', run: run('a', 'running') })).toBe(s);
  });

  it('keeps typed parameters across re-inspection when the default is unchanged', () => {
    let s = reducer(ready(), { type: 'param', name: 'seed', value: '7' });
    s = reducer(s, { type: 'inspect/ok', path: 'nb.ipynb', pipeline });
    expect(s.values.seed).toBe('7');
    const changed = { ...pipeline, parameter_details: [{ ...pipeline.parameter_details[0], default: 1 }] };
    s = reducer(s, { type: 'inspect/ok', path: 'nb.ipynb', pipeline: changed });
    expect(s.values.seed).toBe('1');
    s = reducer(reducer(s, { type: 'param', name: 'seed', value: '9' }), { type: 'params/reset' });
    expect(s.values.seed).toBe('1');
  });

  it('keeps the kernel typed for runs, and a new notebook starts with its own kernel', () => {
    let s = reducer(ready(), { type: 'kernel', kernel: 'project-env' });
    expect(s.kernel).toBe('project-env');
    s = reducer(s, { type: 'inspect/ok', path: 'nb.ipynb', pipeline });
    expect(s.kernel).toBe('project-env');
    expect(reducer(s, { type: 'notebook', path: 'other.ipynb' }).kernel).toBe('');
  });

  it('tracks a run from submit to finish and merges it into the history', () => {
    let s = reducer(ready(), { type: 'runs', path: 'nb.ipynb', runs: [run('old', 'succeeded')] });
    s = reducer(s, { type: 'submit', what: 'run' });
    expect(isRunning(s)).toBe(true);
    expect(runBlocker(s)).toBe('a run is in progress');
    s = reducer(s, { type: 'run/progress', path: 'nb.ipynb', run: run('new', 'running', [{ name: 'load', kind: 'data', status: 'ran' }]) });
    expect(s.submitting).toBeNull();
    expect(s.runs.map(r => r.run_id)).toEqual(['new', 'old']);
    expect(isRunning(s)).toBe(true);
    s = reducer(s, { type: 'run/progress', path: 'nb.ipynb', run: run('new', 'succeeded') });
    expect(isRunning(s)).toBe(false);
    expect(s.runs.map(r => r.status)).toEqual(['succeeded', 'succeeded']);
    expect(runBlocker(s)).toBeNull();
  });

  it('shows a refused submit as a message and frees the button', () => {
    let s = reducer(ready(), { type: 'submit', what: 'build' });
    s = reducer(s, { type: 'submit/error', message: 'busy' });
    expect(s.submitting).toBeNull();
    expect(s.message).toEqual({ kind: 'error', text: 'busy' });
  });

  it('tracks a build job', () => {
    const job: IJob = {
      job_id: 'j', kind: 'build', status: 'running', path: 'nb.ipynb', run_id: null,
      started_at: '', finished_at: null, returncode: null, result: null, error: null, log: ''
    };
    let s = reducer(reducer(ready(), { type: 'submit', what: 'build' }), { type: 'build/progress', path: 'nb.ipynb', job });
    expect(buildBlocker(s)).toBe('a build is in progress');
    s = reducer(s, { type: 'build/progress', path: 'nb.ipynb', job: { ...job, status: 'succeeded' } });
    expect(buildBlocker(s)).toBeNull();
  });
});

describe('selectors', () => {
  it('places an error beside the stage it names or whose cell it is', () => {
    const draft = [{ name: 'load', kind: 'data', cells: [1, 2] }, { name: 'fit', kind: 'train', cells: [3, 4] }];
    const s = reducer(ready(), { type: 'inspect/error', path: 'nb.ipynb', error: error({ stage: 'fit', stages: draft }) });
    expect(visibleStages(s).map(x => x.name)).toEqual(['load', 'fit']);
    expect(errorPlacement(s)).toEqual({ stage: 'fit' });
    const byCell = reducer(s, { type: 'inspect/error', path: 'nb.ipynb', error: error({ cell: 4, stages: draft }) });
    expect(errorPlacement(byCell)).toEqual({ stage: 'fit' });
    const loose = reducer(s, { type: 'inspect/error', path: 'nb.ipynb', error: error({ cell: 9 }) });
    expect(errorPlacement(loose)).toEqual({ stage: null });
    expect(runBlocker(loose)).toBe('fix the pipeline first');
    expect(errorPlacement(ready())).toBeNull();
  });

  it('blocks Run on bad parameters, version mismatch and empty pipelines', () => {
    expect(runBlocker(reducer(ready(), { type: 'param', name: 'seed', value: 'x' }))).toBe('correct the parameters');
    const mismatch = reducer(ready(), { type: 'version', server: '9', problem: versionProblem('0.1.0', '9') });
    expect(runBlocker(mismatch)).toMatch('server extension is 9');
    const empty = reducer(ready(), { type: 'inspect/ok', path: 'nb.ipynb', pipeline: { ...pipeline, stages: [] } });
    expect(runBlocker(empty)).toBe('tag a cell as a stage first');
    expect(buildBlocker(empty)).toBe('the notebook needs a train stage');
    expect(runBlocker(initialState)).toBe('open a notebook');
  });

  it('compares versions', () => {
    expect(versionProblem('0.1.0', '0.1.0')).toBeNull();
    expect(versionProblem('0.1.0', null)).toMatch('not answering');
  });

  it('maps stage statuses by name', () => {
    expect(stageStatuses(run('r', 'failed', [{ name: 'load', status: 'cached' }, { name: 'fit', status: 'failed' }]))).toEqual({ load: 'cached', fit: 'failed' });
    expect(stageStatuses(null)).toEqual({});
  });
});

describe('placing errors by the explicit cell keys', () => {
  it('reads cell_index and cell_indexes before the older keys', () => {
    let s = ready();
    const draft = [
      { name: 'load', kind: 'data', cell_indexes: [1, 2], cells: [7] },
      { name: 'fit', kind: 'train', cell_indexes: [3, 4], cells: [8] }
    ];
    s = reducer(s, { type: 'inspect/error', path: 'nb.ipynb', error: error({ cell_index: 4, cell: 1, stages: draft }) });
    expect(errorPlacement(s)).toEqual({ stage: 'fit' });
  });
});

describe('saying that Run saved the notebook', () => {
  it('says nothing when the notebook was saved already', () => {
    const s = reducer(ready(), { type: 'submit', what: 'run' });
    expect(saveNote(s)).toBeNull();
  });

  it('says it saved and runs, then which run it saved before', () => {
    let s = reducer(ready(), { type: 'submit', what: 'run' });
    s = reducer(s, { type: 'run/saved', name: 'nb.ipynb' });
    expect(saveNote(s)).toBe('saved nb.ipynb; running…');
    s = reducer(s, { type: 'run/progress', path: 'nb.ipynb', run: run('r1', 'starting') });
    expect(saveNote(s)).toBe('saved nb.ipynb; running…');
    s = reducer(s, { type: 'run/progress', path: 'nb.ipynb', run: run('r1', 'succeeded') });
    expect(saveNote(s)).toBe('saved nb.ipynb before run r1');
    // A run found going later (started elsewhere) does not take the note over.
    s = reducer(s, { type: 'run/progress', path: 'nb.ipynb', run: run('r2', 'running') });
    expect(saveNote(s)).toBe('saved nb.ipynb before run r1');
    // The next Run starts afresh.
    s = reducer(s, { type: 'submit', what: 'run' });
    expect(saveNote(s)).toBeNull();
  });

  it('does not claim a run when the run did not start', () => {
    let s = reducer(ready(), { type: 'submit', what: 'run' });
    s = reducer(s, { type: 'run/saved', name: 'nb.ipynb' });
    s = reducer(s, { type: 'submit/error', message: 'cannot start the run: busy' });
    expect(saveNote(s)).toBe('saved nb.ipynb');
  });
});
