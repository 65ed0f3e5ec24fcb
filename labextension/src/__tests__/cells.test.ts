import { cellBadges, stageLabel } from '../badges';
import { cellNumber, cellRanges, cellsLabel, errorCellIndex, stageCellIndexes } from '../cells';
import { IPipeline } from '../types';

describe('cell numbers people read', () => {
  it('are 1-based, as JupyterLab status bar counts cells', () => {
    expect(cellNumber(0)).toBe(1);
    expect(cellNumber(5)).toBe(6);
  });

  it('join runs of cells into ranges, in order and once each', () => {
    expect(cellRanges([3, 4])).toBe('4-5');
    expect(cellRanges([0, 1, 2, 4])).toBe('1-3, 5');
    expect(cellRanges([6, 4, 3, 4])).toBe('4-5, 7');
    expect(cellRanges([])).toBe('');
    expect(cellsLabel([9])).toBe('cell 10');
    expect(cellsLabel([3, 4, 6])).toBe('cells 4-5, 7');
  });

  it('read the explicit 0-based keys first, the older ones when those are absent', () => {
    expect(stageCellIndexes({ cell_indexes: [3, 4], cells: [9] })).toEqual([3, 4]);
    expect(stageCellIndexes({ cells: [7] })).toEqual([7]);
    expect(errorCellIndex({ cell_index: 2, cell: 9 })).toBe(2);
    expect(errorCellIndex({ cell_index: null, cell: 9 })).toBeNull();
    expect(errorCellIndex({ cell: 0 })).toBe(0);
    expect(errorCellIndex({})).toBeNull();
  });
});

const stage = (name: string, kind: string, cells: number[]) => ({
  name,
  kind,
  cell_indexes: cells,
  cells: cells.map(c => c + 100), // the old key must not be read when the new one is there
  defines: [],
  uses: [],
  depends_on: [],
  model: null,
  metrics: [],
  outputs: []
});

const pipeline: IPipeline = {
  notebook: 'nb.ipynb',
  flavour: 'mlnb',
  stages: [stage('load', 'data', [3, 4]), stage('fit', 'train', [6]), stage('serve', 'serve', [8])],
  parameters: {},
  parameter_details: [],
  parameters_cell_index: 2,
  setup_cell_indexes: [1],
  skipped_cell_indexes: [7],
  parameters_cell: 102,
  setup_cells: [101],
  skipped_cells: [107],
  metric_names: []
};

describe('cell badges', () => {
  it('name the stage, or the kind alone for a stage named after it', () => {
    expect(stageLabel('data', 'load')).toBe('data: load');
    expect(stageLabel('serve', 'serve')).toBe('serve');
  });

  it('mark each cell of a stage, the tagged one as opening it, and the other roles', () => {
    const badges = cellBadges(pipeline);
    expect(Object.fromEntries([...badges].map(([i, b]) => [i, `${b.label}/${b.kind}/${b.part}`]))).toEqual({
      1: 'setup/setup/opens',
      2: 'parameters/parameters/opens',
      3: 'data: load/data/opens',
      4: 'data: load/data/continues',
      6: 'train: fit/train/opens',
      7: 'skip/skip/opens',
      8: 'serve/serve/opens'
    });
    expect(badges.has(0)).toBe(false);
    expect(badges.has(5)).toBe(false);
  });

  it('fall back to the older keys, and to the draft stages when validation failed', () => {
    const old: IPipeline = {
      ...pipeline,
      stages: [{ ...stage('load', 'data', []), cell_indexes: undefined, cells: [2] }],
      parameters_cell_index: undefined,
      setup_cell_indexes: undefined,
      skipped_cell_indexes: undefined,
      parameters_cell: 0,
      setup_cells: [],
      skipped_cells: []
    };
    expect([...cellBadges(old).keys()].sort()).toEqual([0, 2]);
    const draft = cellBadges(null, [{ name: 'data', kind: 'data', cells: [1] }]);
    expect(draft.get(1)).toEqual({ label: 'data', kind: 'data', part: 'opens' });
    expect(draft.size).toBe(1);
    expect(cellBadges(null).size).toBe(0);
  });
});
