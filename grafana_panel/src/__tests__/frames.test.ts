import { toDataFrame } from '@grafana/data';

import { frames, okTables } from '../__fixtures__/frames';
import { parseExplanation } from '../frames';

describe('parseExplanation', () => {
  it('finds each frame by its fields, whatever the order', () => {
    const [summary, contributions, graph] = okTables();
    const e = parseExplanation(frames([graph, contributions, summary]));
    expect(e.summary?.status).toBe('ok');
    expect(e.summary?.entry).toBe('frontend:GET /checkout');
    expect(e.summary?.outlierScore).toBeCloseTo(9.3);
    expect(e.contributions).toHaveLength(contributions.rows.length);
    expect(e.edges).toHaveLength(graph.rows.length);
    expect(e.edges[0]).toEqual({ source: 'payment:Charge', target: 'checkout:PlaceOrder', sourceContribution: expect.any(Number) });
  });

  it('keeps nulls as null and reads numbers sent as strings', () => {
    const table = {
      columns: ['rank', 'node', 'contribution', 'contribution_lo', 'contribution_hi', 'own_latency_ms'].map((text) => ({ text })),
      rows: [
        ['2', 'b:op', '0.5', null, null, 'n/a'],
        [1, 'net:a:op', 1.5, 1, 2, 10],
      ],
    };
    const e = parseExplanation([toDataFrame(table)]);
    expect(e.contributions.map((c) => c.node)).toEqual(['net:a:op', 'b:op']);
    expect(e.contributions[0]).toMatchObject({ service: 'a', operation: 'op', lo: 1, hi: 2, ownLatencyMs: 10 });
    expect(e.contributions[1]).toMatchObject({ service: 'b', operation: 'op', contribution: 0.5, lo: null, hi: null, ownLatencyMs: null });
  });

  it('derives missing shares from the outlier score', () => {
    const summary = toDataFrame({ columns: [{ text: 'status' }, { text: 'outlier_score' }], rows: [['ok', 4]] });
    const contributions = toDataFrame({ columns: [{ text: 'rank' }, { text: 'node' }, { text: 'contribution' }], rows: [[1, 'a:b', 3]] });
    expect(parseExplanation([summary, contributions]).contributions[0].share).toBeCloseTo(0.75);
  });

  it('treats an unknown status as an error', () => {
    const e = parseExplanation([toDataFrame({ columns: [{ text: 'status' }, { text: 'outlier_score' }], rows: [['weird', 1]] })]);
    expect(e.summary?.status).toBe('error');
  });

  it('returns an empty explanation for no frames', () => {
    expect(parseExplanation([])).toEqual({ summary: null, contributions: [], edges: [] });
  });
});
