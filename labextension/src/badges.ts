/**
 * Which badge each cell of the notebook wears: its stage (`data: load`, `serve`), or its role
 * (`parameters`, `setup`, `skip`). Pure: computed from the pipeline the server read, so the
 * badges say exactly what `mlnb run` will do. cellbadges.ts puts them on the cells.
 */

import { stageCellIndexes } from './cells';
import { IDraftStage, IPipeline } from './types';

export interface ICellBadge {
  /** The text shown: `data: load`, or the kind alone when the stage is named after it. */
  label: string;
  /** data | train | serve | step, or parameters | setup | skip. */
  kind: string;
  /** `opens` for the cell whose tag or `%%mlnb` line opens the stage; `continues` after it. */
  part: 'opens' | 'continues';
}

/** `data: load`, or `serve` for a stage named after its kind. */
export function stageLabel(kind: string, name: string): string {
  return name === kind ? kind : `${kind}: ${name}`;
}

/** By 0-based cell index, the badge of every cell the pipeline (or the draft stages found
 * before validation failed) names. */
export function cellBadges(
  pipeline: IPipeline | null,
  draft: readonly IDraftStage[] = []
): Map<number, ICellBadge> {
  const badges = new Map<number, ICellBadge>();
  const stages: readonly IDraftStage[] = pipeline ? pipeline.stages : draft;
  for (const stage of stages) {
    const cells = stageCellIndexes(stage);
    const label = stageLabel(stage.kind, stage.name);
    cells.forEach((index, i) => {
      badges.set(index, { label, kind: stage.kind, part: i === 0 ? 'opens' : 'continues' });
    });
  }
  if (!pipeline) {
    return badges;
  }
  const parameters =
    pipeline.parameters_cell_index !== undefined
      ? pipeline.parameters_cell_index
      : pipeline.parameters_cell;
  if (typeof parameters === 'number') {
    badges.set(parameters, { label: 'parameters', kind: 'parameters', part: 'opens' });
  }
  for (const index of pipeline.setup_cell_indexes ?? pipeline.setup_cells ?? []) {
    badges.set(index, { label: 'setup', kind: 'setup', part: 'opens' });
  }
  for (const index of pipeline.skipped_cell_indexes ?? pipeline.skipped_cells ?? []) {
    badges.set(index, { label: 'skip', kind: 'skip', part: 'opens' });
  }
  return badges;
}
