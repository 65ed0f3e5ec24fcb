import { layers, layoutDag } from '../dag';

const breastCancer = [
  { name: 'load', kind: 'data', depends_on: [] },
  { name: 'fit', kind: 'train', depends_on: ['load'] },
  { name: 'serve', kind: 'serve', depends_on: ['load', 'fit'] }
];

describe('layers', () => {
  it('puts a stage one below its deepest dependency', () => {
    expect(Object.fromEntries(layers(breastCancer))).toEqual({ load: 0, fit: 1, serve: 2 });
  });

  it('keeps independent stages on one layer', () => {
    const stages = [
      { name: 'a', kind: 'data', depends_on: [] },
      { name: 'b', kind: 'data', depends_on: [] },
      { name: 'c', kind: 'train', depends_on: ['a', 'b'] }
    ];
    expect(Object.fromEntries(layers(stages))).toEqual({ a: 0, b: 0, c: 1 });
  });

  it('survives a cycle and an unknown dependency without looping', () => {
    const stages = [
      { name: 'a', kind: 'step', depends_on: ['b'] },
      { name: 'b', kind: 'step', depends_on: ['a'] },
      { name: 'c', kind: 'step', depends_on: ['nowhere'] }
    ];
    const result = layers(stages);
    expect(result.size).toBe(3);
    expect(result.get('c')).toBe(0);
  });
});

describe('layoutDag', () => {
  it('draws one node per stage and one edge per dependency', () => {
    const dag = layoutDag(breastCancer);
    expect(dag.nodes.map(n => n.name)).toEqual(['load', 'fit', 'serve']);
    expect(dag.edges.map(e => `${e.from}->${e.to}`)).toEqual([
      'load->fit',
      'load->serve',
      'fit->serve'
    ]);
    for (const edge of dag.edges) {
      expect(edge.path).toMatch(/^M[\d.]+,[\d.]+ C/);
    }
  });

  it('places layers top to bottom with no overlapping nodes', () => {
    const stages = [
      { name: 'a', kind: 'data', depends_on: [] },
      { name: 'b', kind: 'data', depends_on: [] },
      { name: 'c', kind: 'train', depends_on: ['a', 'b'] }
    ];
    const dag = layoutDag(stages);
    const [a, b, c] = dag.nodes;
    expect(a.y).toBe(b.y);
    expect(c.y).toBeGreaterThan(a.y + a.height);
    expect(b.x).toBeGreaterThanOrEqual(a.x + a.width);
    for (const n of dag.nodes) {
      expect(n.x).toBeGreaterThanOrEqual(0);
      expect(n.x + n.width).toBeLessThanOrEqual(dag.width);
      expect(n.y + n.height).toBeLessThanOrEqual(dag.height);
    }
  });

  it('routes an edge that skips a layer beside the stages, inside the drawing', () => {
    const dag = layoutDag(breastCancer);
    const long = dag.edges.find(e => e.from === 'load' && e.to === 'serve')!;
    const fit = dag.nodes.find(n => n.name === 'fit')!;
    const xs = long.path.match(/-?[\d.]+(?=,)/g)!.map(Number);
    expect(Math.max(...xs)).toBeGreaterThan(fit.x + fit.width);
    expect(Math.max(...xs)).toBeLessThanOrEqual(dag.width);
  });

  it('is empty for no stages', () => {
    expect(layoutDag([])).toEqual({ nodes: [], edges: [], width: 0, height: 0 });
  });
});
