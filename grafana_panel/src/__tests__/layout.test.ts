import { layoutGraph } from '../layout';

function crossings(layout: ReturnType<typeof layoutGraph>): number {
  const pos = new Map(layout.nodes.map((n) => [n.id, n]));
  const segs = layout.edges.map((e) => [pos.get(e.source)!, pos.get(e.target)!]);
  let count = 0;
  for (let i = 0; i < segs.length; i++) {
    for (let j = i + 1; j < segs.length; j++) {
      const [a1, b1] = segs[i];
      const [a2, b2] = segs[j];
      if (a1.layer === a2.layer && b1.layer === b2.layer && a1.id !== a2.id && b1.id !== b2.id) {
        if ((a1.order - a2.order) * (b1.order - b2.order) < 0) {
          count++;
        }
      }
    }
  }
  return count;
}

describe('layoutGraph', () => {
  const edges = [
    { source: 'db', target: 'orders' },
    { source: 'orders', target: 'web' },
    { source: 'cache', target: 'web' },
    { source: 'db', target: 'web' },
  ];

  it('puts every cause below its effect and the entry point on top', () => {
    const layout = layoutGraph(['web'], edges);
    const layer = new Map(layout.nodes.map((n) => [n.id, n.layer]));
    expect(layer.get('web')).toBe(0);
    for (const e of edges) {
      expect(layer.get(e.source)!).toBeGreaterThan(layer.get(e.target)!);
    }
    expect(layer.get('db')).toBe(2); // longest path: db -> orders -> web
    expect(layout.edges).toHaveLength(edges.length);
  });

  it('never overlaps nodes and fits them in the box', () => {
    const layout = layoutGraph([], edges);
    for (const a of layout.nodes) {
      expect(a.x).toBeGreaterThanOrEqual(0);
      expect(a.x + layout.nodeWidth).toBeLessThanOrEqual(layout.width);
      expect(a.y + layout.nodeHeight).toBeLessThanOrEqual(layout.height);
      for (const b of layout.nodes) {
        if (a !== b && a.layer === b.layer) {
          expect(Math.abs(a.x - b.x)).toBeGreaterThanOrEqual(layout.nodeWidth);
        }
      }
    }
  });

  it('orders layers to remove crossings of a crossed bipartite graph', () => {
    // two callers, each with its own callee, given in crossed order
    const crossed = [
      { source: 'b1', target: 'a2' },
      { source: 'b2', target: 'a1' },
      { source: 'a1', target: 'root' },
      { source: 'a2', target: 'root' },
    ];
    const layout = layoutGraph(['root', 'a1', 'a2', 'b2', 'b1'], crossed);
    expect(crossings(layout)).toBe(0);
  });

  it('survives a cycle without recursing forever', () => {
    const layout = layoutGraph([], [
      { source: 'a', target: 'b' },
      { source: 'b', target: 'a' },
    ]);
    expect(layout.nodes).toHaveLength(2);
  });
});

describe('layoutGraph on a large service graph', () => {
  it('lays out 60 nodes without overlaps, causes always below effects', () => {
    const edges: Array<{ source: string; target: string }> = [];
    for (let i = 1; i < 60; i++) {
      edges.push({ source: `s${i}`, target: `s${Math.floor((i - 1) / 3)}` });
      if (i > 10 && i % 7 === 0) {
        edges.push({ source: `s${i}`, target: `s${i - 9}` });
      }
    }
    const layout = layoutGraph(['s0'], edges);
    expect(layout.nodes).toHaveLength(60);
    const byId = new Map(layout.nodes.map((n) => [n.id, n]));
    for (const e of edges) {
      expect(byId.get(e.source)!.layer).toBeGreaterThan(byId.get(e.target)!.layer);
    }
    const slots = new Set(layout.nodes.map((n) => `${n.layer}:${n.order}`));
    expect(slots.size).toBe(60);
  });
});
