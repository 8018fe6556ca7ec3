import { frames, outlierTables } from '../__fixtures__/frames';
import { frameError } from '../frames';
import { parseOutliers } from '../harness/outliers';
import { toDataFrame } from '@grafana/data';

describe('parseOutliers', () => {
  it('reads the outlier table by field name', () => {
    const rows = parseOutliers(frames(outlierTables()));
    expect(rows).toHaveLength(2);
    expect(rows[0]).toMatchObject({
      traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
      entry: 'frontend:GET /checkout',
      latencyMs: 1843.2,
      score: 9.3,
      rootCause: 'payment',
      time: 1764070000000,
    });
  });

  it('accepts ISO times and epoch seconds', () => {
    const t = toDataFrame({ columns: [{ text: 'trace_id' }, { text: 'time' }], rows: [['aa', '2026-01-02T03:04:05Z'], ['bb', 1764070000]] });
    const rows = parseOutliers([t]);
    expect(rows[0].time).toBe(Date.parse('2026-01-02T03:04:05Z'));
    expect(rows[1].time).toBe(1764070000000);
  });

  it('reports an error table', () => {
    const t = toDataFrame({ columns: [{ text: 'error' }], rows: [['limit must be positive']] });
    expect(frameError([t])).toBe('limit must be positive');
    expect(frameError(frames(outlierTables()))).toBeNull();
  });
});
