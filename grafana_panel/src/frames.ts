/**
 * Reads the explanation frames (docs/ARCHITECTURE.md, "The explanation frames") out of `data.series`.
 * Frames are recognised by their field names, never by position or refId, so the panel works whatever
 * order the data source returns them in and ignores frames it does not know.
 */
import { DataFrame, Field } from '@grafana/data';

import { splitNodeId } from './nodes';
import { CausalEdge, Contribution, Explanation, RCA_STATUSES, RcaStatus, Summary } from './types';

type Row = (name: string) => unknown;

function fieldMap(frame: DataFrame): Map<string, Field> {
  const map = new Map<string, Field>();
  for (const field of frame.fields) {
    map.set(field.name, field);
  }
  return map;
}

export function hasFields(frame: DataFrame, names: string[]): boolean {
  const fields = new Set(frame.fields.map((f) => f.name));
  return names.every((n) => fields.has(n));
}

export function rows(frame: DataFrame): Row[] {
  const fields = fieldMap(frame);
  const out: Row[] = [];
  for (let i = 0; i < frame.length; i++) {
    out.push((name: string) => fields.get(name)?.values[i]);
  }
  return out;
}

/** A finite number or null (tables may carry nulls, strings of digits, NaN). */
export function num(value: unknown): number | null {
  if (value === null || value === undefined || value === '') {
    return null;
  }
  const n = typeof value === 'number' ? value : Number(value);
  return Number.isFinite(n) ? n : null;
}

/** A 1/0 (or boolean) flag; null when absent. */
function flag(value: unknown): boolean | null {
  if (typeof value === 'boolean') {
    return value;
  }
  const n = num(value);
  return n === null ? null : n !== 0;
}

export function str(value: unknown): string {
  return value === null || value === undefined ? '' : String(value);
}

function status(value: unknown): RcaStatus {
  const s = str(value) as RcaStatus;
  return RCA_STATUSES.includes(s) ? s : 'error';
}

export const SUMMARY_FIELDS = ['status', 'outlier_score'];
export const CONTRIBUTION_FIELDS = ['rank', 'node', 'contribution'];
export const GRAPH_FIELDS = ['source', 'target'];

export function parseSummary(frame: DataFrame): Summary | null {
  const row = rows(frame)[0];
  if (!row) {
    return null;
  }
  return {
    status: status(row('status')),
    message: str(row('message')),
    traceId: str(row('trace_id')),
    entry: str(row('entry')),
    targetLatencyMs: num(row('target_latency_ms')),
    outlierScore: num(row('outlier_score')),
    rarerThan: num(row('rarer_than')),
    modelTraces: num(row('model_traces')),
    kind: str(row('kind')) === 'error' ? 'error' : 'latency',
  };
}

export function parseContributions(frame: DataFrame): Contribution[] {
  const out: Contribution[] = [];
  for (const row of rows(frame)) {
    const node = str(row('node'));
    const contribution = num(row('contribution'));
    if (!node || contribution === null) {
      continue;
    }
    const fallback = splitNodeId(node);
    out.push({
      rank: num(row('rank')) ?? out.length + 1,
      node,
      service: str(row('service')) || fallback.service,
      operation: str(row('operation')) || fallback.operation,
      kind: str(row('kind')) || 'span',
      contribution,
      share: num(row('share')),
      lo: num(row('contribution_lo')),
      hi: num(row('contribution_hi')),
      ownLatencyMs: num(row('own_latency_ms')),
      nodeLatencyMs: num(row('node_latency_ms')),
      counterfactualLatencyMs: num(row('counterfactual_latency_ms')),
      failed: flag(row('failed')),
      ownFailure: num(row('own_failure')),
      successWithout: num(row('success_without')),
      handled: flag(row('handled')),
    });
  }
  return out.sort((a, b) => a.rank - b.rank || b.contribution - a.contribution);
}

export function parseGraph(frame: DataFrame): CausalEdge[] {
  const out: CausalEdge[] = [];
  for (const row of rows(frame)) {
    const source = str(row('source'));
    const target = str(row('target'));
    if (source && target) {
      out.push({ source, target, sourceContribution: num(row('source_contribution')) });
    }
  }
  return out;
}

/** The message of an error table ({error: string}) the backend answers for a target it cannot serve. */
export function frameError(frames: DataFrame[]): string | null {
  for (const frame of frames) {
    const field = frame.fields.find((f) => f.name === 'error');
    if (field && frame.fields.length === 1 && frame.length > 0) {
      return String(field.values[0] ?? 'error');
    }
  }
  return null;
}

/** The explanation carried by a query result; parts that are absent stay empty. */
export function parseExplanation(series: DataFrame[]): Explanation {
  const explanation: Explanation = { summary: null, contributions: [], edges: [] };
  for (const frame of series) {
    if (!explanation.summary && hasFields(frame, SUMMARY_FIELDS)) {
      explanation.summary = parseSummary(frame);
    } else if (hasFields(frame, CONTRIBUTION_FIELDS)) {
      explanation.contributions.push(...parseContributions(frame));
    } else if (hasFields(frame, GRAPH_FIELDS)) {
      explanation.edges.push(...parseGraph(frame));
    }
  }
  const score = explanation.summary?.outlierScore;
  if (score) {
    explanation.contributions = explanation.contributions.map((c) => (c.share === null ? { ...c, share: c.contribution / score } : c));
  }
  return explanation;
}
