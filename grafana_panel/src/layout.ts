/**
 * Layered layout of the causal graph (a DAG, cause -> effect = callee -> caller), computed here so the panel
 * needs no graph library. The target (entry point) is on the top layer; every node sits one layer below the
 * deepest of its effects (longest path), so calls read top-down like a trace. Node order within a layer is
 * refined by barycenter sweeps, which removes most edge crossings of service graphs.
 */

export interface LayoutNode {
  id: string;
  layer: number;
  order: number;
  x: number;
  y: number;
}

export interface LayoutEdge {
  source: string;
  target: string;
  /** SVG path from the cause (below) to the effect (above). */
  path: string;
}

export interface GraphLayout {
  nodes: LayoutNode[];
  edges: LayoutEdge[];
  width: number;
  height: number;
  nodeWidth: number;
  nodeHeight: number;
}

export interface LayoutSizes {
  nodeWidth: number;
  nodeHeight: number;
  gapX: number;
  gapY: number;
  margin: number;
}

export const defaultSizes: LayoutSizes = { nodeWidth: 150, nodeHeight: 44, gapX: 18, gapY: 44, margin: 8 };

const SWEEPS = 6;

function assignLayers(ids: string[], effects: Map<string, string[]>): Map<string, number> {
  const layer = new Map<string, number>();
  const onStack = new Set<string>();
  const visit = (id: string): number => {
    const known = layer.get(id);
    if (known !== undefined) {
      return known;
    }
    if (onStack.has(id)) {
      return -1; // a cycle: not a DAG, break it here rather than recurse forever
    }
    onStack.add(id);
    let depth = 0;
    for (const e of effects.get(id) ?? []) {
      depth = Math.max(depth, visit(e) + 1);
    }
    onStack.delete(id);
    layer.set(id, depth);
    return depth;
  };
  ids.forEach(visit);
  return layer;
}

function barycenter(ids: string[], neighbours: Map<string, string[]>, position: Map<string, number>): string[] {
  const keyed = ids.map((id, i) => {
    const ps = (neighbours.get(id) ?? []).map((n) => position.get(n)).filter((p): p is number => p !== undefined);
    return { id, key: ps.length ? ps.reduce((a, b) => a + b, 0) / ps.length : i, i };
  });
  keyed.sort((a, b) => a.key - b.key || a.i - b.i);
  return keyed.map((k) => k.id);
}

/** Lays out `nodes` (all ids to show) and `edges` (cause -> effect). Unknown edge ends are added as nodes. */
export function layoutGraph(
  nodes: string[],
  edges: Array<{ source: string; target: string }>,
  sizes: LayoutSizes = defaultSizes
): GraphLayout {
  const ids = Array.from(new Set([...nodes, ...edges.flatMap((e) => [e.source, e.target])]));
  const effects = new Map<string, string[]>();
  const causes = new Map<string, string[]>();
  for (const e of edges) {
    if (e.source === e.target) {
      continue;
    }
    effects.set(e.source, [...(effects.get(e.source) ?? []), e.target]);
    causes.set(e.target, [...(causes.get(e.target) ?? []), e.source]);
  }
  const layerOf = assignLayers(ids, effects);
  const depth = Math.max(0, ...Array.from(layerOf.values()));
  const layers: string[][] = Array.from({ length: depth + 1 }, () => []);
  ids.forEach((id) => layers[layerOf.get(id) ?? 0].push(id));

  const position = new Map<string, number>();
  const record = () => layers.forEach((l) => l.forEach((id, i) => position.set(id, i - (l.length - 1) / 2)));
  record();
  for (let s = 0; s < SWEEPS; s++) {
    if (s % 2 === 0) {
      for (let l = 1; l < layers.length; l++) {
        layers[l] = barycenter(layers[l], effects, position);
        record();
      }
    } else {
      for (let l = layers.length - 2; l >= 0; l--) {
        layers[l] = barycenter(layers[l], causes, position);
        record();
      }
    }
  }

  const { nodeWidth, nodeHeight, gapX, gapY, margin } = sizes;
  const widest = Math.max(1, ...layers.map((l) => l.length));
  const width = widest * nodeWidth + (widest - 1) * gapX + 2 * margin;
  const height = layers.length * nodeHeight + (layers.length - 1) * gapY + 2 * margin;
  const placed = new Map<string, LayoutNode>();
  layers.forEach((l, layer) => {
    const rowWidth = l.length * nodeWidth + (l.length - 1) * gapX;
    const left = (width - rowWidth) / 2;
    l.forEach((id, order) => {
      placed.set(id, { id, layer, order, x: left + order * (nodeWidth + gapX), y: margin + layer * (nodeHeight + gapY) });
    });
  });

  const outEdges: LayoutEdge[] = [];
  for (const e of edges) {
    const a = placed.get(e.source);
    const b = placed.get(e.target);
    if (!a || !b || a === b) {
      continue;
    }
    const x1 = a.x + nodeWidth / 2;
    const y1 = a.y;
    const x2 = b.x + nodeWidth / 2;
    const y2 = b.y + nodeHeight;
    const bend = Math.max(gapY / 2, Math.abs(y1 - y2) / 2);
    outEdges.push({ source: e.source, target: e.target, path: `M${x1},${y1} C${x1},${y1 - bend} ${x2},${y2 + bend} ${x2},${y2}` });
  }
  return { nodes: Array.from(placed.values()), edges: outEdges, width, height, nodeWidth, nodeHeight };
}
