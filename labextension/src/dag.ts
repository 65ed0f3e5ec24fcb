/**
 * Layout of the stage DAG for a small SVG drawing: pure, no DOM.
 *
 * Each stage sits on a layer one below the deepest stage it depends on; stages keep notebook
 * order within a layer. The sidebar is narrow, so layers go top to bottom.
 */

export interface IDagStage {
  name: string;
  kind: string;
  depends_on: string[];
}

export interface IDagNode {
  name: string;
  kind: string;
  layer: number;
  x: number; // top-left corner
  y: number;
  width: number;
  height: number;
}

export interface IDagEdge {
  from: string;
  to: string;
  /** An SVG path `d` attribute from the bottom of `from` to the top of `to`. */
  path: string;
}

export interface IDagLayout {
  nodes: IDagNode[];
  edges: IDagEdge[];
  width: number;
  height: number;
}

export interface IDagSizes {
  nodeWidth: number;
  nodeHeight: number;
  gapX: number;
  gapY: number;
  margin: number;
}

export const DEFAULT_SIZES: IDagSizes = {
  nodeWidth: 84,
  nodeHeight: 26,
  gapX: 14,
  gapY: 30,
  margin: 4
};

/** The layer of each stage: 0 without dependencies, else one more than its deepest dependency. */
export function layers(stages: IDagStage[]): Map<string, number> {
  const byName = new Map(stages.map(s => [s.name, s]));
  const result = new Map<string, number>();
  const visiting = new Set<string>();
  const visit = (name: string): number => {
    const known = result.get(name);
    if (known !== undefined) {
      return known;
    }
    const stage = byName.get(name);
    if (!stage || visiting.has(name)) {
      return -1; // unknown dependency or a cycle: the server reports those; draw what we can
    }
    visiting.add(name);
    let layer = 0;
    for (const dep of stage.depends_on) {
      layer = Math.max(layer, visit(dep) + 1);
    }
    visiting.delete(name);
    result.set(name, layer);
    return layer;
  };
  stages.forEach(s => visit(s.name));
  return result;
}

export function layoutDag(
  stages: IDagStage[],
  sizes: IDagSizes = DEFAULT_SIZES
): IDagLayout {
  const { nodeWidth, nodeHeight, gapX, gapY, margin } = sizes;
  const layerOf = layers(stages);
  const rows: IDagStage[][] = [];
  for (const stage of stages) {
    const layer = layerOf.get(stage.name) ?? 0;
    (rows[layer] = rows[layer] ?? []).push(stage);
  }
  const widest = Math.max(1, ...rows.map(r => (r ? r.length : 0)));
  const width = 2 * margin + widest * nodeWidth + (widest - 1) * gapX;
  const nodes: IDagNode[] = [];
  rows.forEach((row, layer) => {
    if (!row) {
      return;
    }
    const rowWidth = row.length * nodeWidth + (row.length - 1) * gapX;
    const left = (width - rowWidth) / 2;
    row.forEach((stage, i) => {
      nodes.push({
        name: stage.name,
        kind: stage.kind,
        layer,
        x: left + i * (nodeWidth + gapX),
        y: margin + layer * (nodeHeight + gapY),
        width: nodeWidth,
        height: nodeHeight
      });
    });
  });
  const at = new Map(nodes.map(n => [n.name, n]));
  const edges: IDagEdge[] = [];
  let right = width - margin;
  let lanes = 0;
  for (const stage of stages) {
    const to = at.get(stage.name);
    for (const dep of stage.depends_on) {
      const from = at.get(dep);
      if (!from || !to || from === to) {
        continue;
      }
      if (to.layer - from.layer <= 1) {
        edges.push({ from: dep, to: stage.name, path: edgePath(from, to) });
        continue;
      }
      // A long edge would cross the stages between: route it in a lane on the right.
      const between = nodes.filter(n => n.layer >= from.layer && n.layer <= to.layer);
      const edge = Math.max(...between.map(n => n.x + n.width));
      const lane = edge + gapX / 2 + 8 * lanes;
      lanes += 1;
      right = Math.max(right, lane);
      edges.push({ from: dep, to: stage.name, path: lanePath(from, to, lane) });
    }
  }
  const layerCount = rows.length;
  const height =
    layerCount === 0
      ? 0
      : 2 * margin + layerCount * nodeHeight + (layerCount - 1) * gapY;
  return { nodes, edges, width: nodes.length ? right + margin : 0, height };
}

const round = (v: number) => Math.round(v * 10) / 10;

/** From the right side of `from`, out to a vertical lane at `lane`, into the right of `to`. */
export function lanePath(from: IDagNode, to: IDagNode, lane: number): string {
  const x1 = from.x + from.width;
  const y1 = from.y + from.height / 2;
  const x2 = to.x + to.width;
  const y2 = to.y + to.height / 2;
  const r = round;
  return `M${r(x1)},${r(y1)} C${r(lane)},${r(y1)} ${r(lane)},${r(y2)} ${r(x2)},${r(y2)}`;
}

/** A cubic curve from the bottom centre of `from` to the top centre of `to`. */
export function edgePath(from: IDagNode, to: IDagNode): string {
  const x1 = from.x + from.width / 2;
  const y1 = from.y + from.height;
  const x2 = to.x + to.width / 2;
  const y2 = to.y;
  const bend = Math.max(12, (y2 - y1) / 2);
  const r = round;
  return `M${r(x1)},${r(y1)} C${r(x1)},${r(y1 + bend)} ${r(x2)},${r(y2 - bend)} ${r(x2)},${r(y2)}`;
}
