import { contractRows, initialState, modelRun, reducer, violationText, IState } from '../state';
import { IRun } from '../types';

const violation = {
  value: 'X_train',
  column: 'mean radius',
  rule: 'less_than_or_equal_to',
  severity: 'error',
  rows: 3,
  examples: [1000.0, 1200.5],
  message: 'out of range'
};

const run: IRun = {
  run_id: 'r1',
  status: 'failed',
  stages: [
    { name: 'clean', kind: 'data', status: 'ran', contract: { status: 'passed', file: 'nb.contract.yaml', violations: [] } },
    { name: 'drift', kind: 'data', status: 'ran', contract: { status: 'warned', violations: [{ ...violation, severity: 'warn', rows: 1 }] } },
    { name: 'broken', kind: 'data', status: 'failed', contract: { status: 'failed', violations: [violation, violation, violation, violation] } },
    { name: 'first', kind: 'data', status: 'ran', contract: { status: 'learned', violations: [] } },
    { name: 'other', kind: 'data', status: 'ran', contract: { status: 'unchecked' } },
    { name: 'old', kind: 'data', status: 'ran' },
    { name: 'fit', kind: 'train', status: 'not-run' }
  ]
};

describe('data contracts', () => {
  it('gives each data stage its state and first violations', () => {
    const rows = contractRows(run);
    expect(rows.map(r => [r.stage, r.status])).toEqual([
      ['clean', 'passed'],
      ['drift', 'warned'],
      ['broken', 'failed'],
      ['first', 'learned'],
      ['other', 'unchecked'],
      ['old', '-']
    ]);
    expect(rows[2].violations).toHaveLength(3);
    expect(rows[2].more).toBe(1);
    expect(rows[2].violations[0]).toBe('X_train["mean radius"]: less_than_or_equal_to, 3 rows (e.g. 1000, 1200.5)');
    expect(rows[1].violations[0]).toMatch(/1 row \(e\.g\. 1000, 1200\.5\) \[warn\]$/);
    expect(contractRows(null)).toEqual([]);
  });

  it('writes a violation without column or rows', () => {
    expect(violationText({ value: 'y', rule: 'column_missing' })).toBe('y: column_missing');
  });
});

describe('top features', () => {
  const withRuns = (runs: IRun[]): IState => ({ ...initialState, path: 'nb.ipynb', runs });

  it('describes the newest succeeded run with a model', () => {
    const ok: IRun = { run_id: 'ok', status: 'succeeded', model: { class: 'LogisticRegression' } };
    const noModel: IRun = { run_id: 'nomodel', status: 'succeeded' };
    expect(modelRun(withRuns([run, noModel, ok]))?.run_id).toBe('ok');
    expect(modelRun(withRuns([run]))).toBeNull();
  });

  it('keeps following the run it checks and drops answers about another', () => {
    let state = withRuns([]);
    const at = (runId: string, status: 'checking' | 'computing' | 'computed') => ({
      type: 'importance' as const,
      path: 'nb.ipynb',
      importance: { runId, status, result: null, message: null }
    });
    state = reducer(state, at('a', 'checking'));
    state = reducer(state, at('b', 'checking'));
    expect(state.importance?.runId).toBe('b');
    expect(reducer(state, at('a', 'computed'))).toBe(state);
    state = reducer(state, at('b', 'computing'));
    expect(state.importance?.status).toBe('computing');
    expect(reducer(state, { ...at('b', 'computed'), path: 'other.ipynb' })).toBe(state);
  });
});
