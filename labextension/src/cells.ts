/**
 * Cell numbers as people read them, and the server's cell indexes: pure, no DOM.
 *
 * The server names a cell by its 0-based index in the notebook's `cells` list, under explicit
 * keys (`cell_index`, `cell_indexes`, `parameters_cell_index`, ...) next to the older `cell`,
 * `cells`, `parameters_cell`, ... Every number the sidebar shows is 1-based, as JupyterLab's
 * status bar says "Cell 6/12" for `cells[5]`. Navigation (goToCell) keeps the 0-based index.
 */

/** The number a person reads for the cell at 0-based `index`: `cells[5]` is cell 6. */
export function cellNumber(index: number): number {
  return index + 1;
}

/** 0-based indexes as 1-based ranges: `[3, 4, 6]` -> `4-5, 7`. */
export function cellRanges(indexes: readonly number[]): string {
  const numbers = [...new Set(indexes)].sort((a, b) => a - b).map(cellNumber);
  const parts: string[] = [];
  let start = NaN;
  let prev = NaN;
  for (const n of [...numbers, NaN]) {
    if (n === prev + 1) {
      prev = n;
      continue;
    }
    if (!Number.isNaN(start)) {
      parts.push(start === prev ? `${start}` : `${start}-${prev}`);
    }
    start = prev = n;
  }
  return parts.join(', ');
}

/** `cell 4` or `cells 4-5, 7` for 0-based indexes. */
export function cellsLabel(indexes: readonly number[]): string {
  const word = new Set(indexes).size === 1 ? 'cell' : 'cells';
  return `${word} ${cellRanges(indexes)}`;
}

/** A stage's cells (0-based): `cell_indexes`, else the older `cells`. */
export function stageCellIndexes(stage: { cell_indexes?: number[]; cells?: number[] }): number[] {
  return stage.cell_indexes ?? stage.cells ?? [];
}

/** The 0-based cell an error or a run's error names: `cell_index`, else `cell`; or null. */
export function errorCellIndex(error: { cell_index?: number | null; cell?: number | null }): number | null {
  const index = error.cell_index !== undefined ? error.cell_index : error.cell;
  return typeof index === 'number' ? index : null;
}
