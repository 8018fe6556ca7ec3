/** Recent outliers (target "outliers"): a table with at least a trace id per row, read by field name. */
import { DataFrame } from '@grafana/data';

import { num } from '../frames';

export interface OutlierRow {
  traceId: string;
  entry: string;
  time: number | null;
  latencyMs: number | null;
  score: number | null;
  rootCause: string;
}

function pick(frame: DataFrame, names: string[]) {
  return frame.fields.find((f) => names.includes(f.name));
}

function timeValue(value: unknown): number | null {
  if (typeof value === 'string' && value && !/^\d+(\.\d+)?$/.test(value)) {
    const t = Date.parse(value);
    return Number.isFinite(t) ? t : null;
  }
  const n = num(value);
  if (n === null) {
    return null;
  }
  // epoch seconds, milliseconds, microseconds or nanoseconds -> milliseconds
  return n > 1e17 ? n / 1e6 : n > 1e14 ? n / 1e3 : n < 1e11 ? n * 1000 : n;
}

export function parseOutliers(frames: DataFrame[]): OutlierRow[] {
  const out: OutlierRow[] = [];
  for (const frame of frames) {
    const id = pick(frame, ['trace_id', 'traceId', 'traceID']);
    if (!id) {
      continue;
    }
    const entry = pick(frame, ['entry', 'entry_point']);
    const time = pick(frame, ['time', 'Time', 'start', 'start_time', 'timestamp']);
    const latency = pick(frame, ['target_latency_ms', 'duration_ms', 'latency_ms']);
    const score = pick(frame, ['outlier_score', 'score']);
    const cause = pick(frame, ['root_cause_service', 'root_cause']);
    for (let i = 0; i < frame.length; i++) {
      const traceId = String(id.values[i] ?? '');
      if (!traceId) {
        continue;
      }
      out.push({
        traceId,
        entry: entry ? String(entry.values[i] ?? '') : '',
        time: time ? timeValue(time.values[i]) : null,
        latencyMs: latency ? num(latency.values[i]) : null,
        score: score ? num(score.values[i]) : null,
        rootCause: cause ? String(cause.values[i] ?? '') : '',
      });
    }
  }
  return out;
}
