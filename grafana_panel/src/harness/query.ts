/**
 * The JSON API data source protocol as Grafana's simpod-json-datasource speaks it: POST /query with targets,
 * answered by table responses, turned into data frames the same way Grafana does (toDataFrame).
 */
import { DataFrame, toDataFrame } from '@grafana/data';

import { authHeaders } from './auth';

export interface QueryRange {
  from: Date;
  to: Date;
}

export function queryBody(target: string, payload: Record<string, unknown>, range: QueryRange) {
  const from = range.from.toISOString();
  const to = range.to.toISOString();
  return {
    app: 'whyslow-ui',
    requestId: `whyslow-${Date.now()}`,
    timezone: 'browser',
    range: { from, to, raw: { from, to } },
    interval: '1m',
    intervalMs: 60000,
    maxDataPoints: 1000,
    targets: [{ refId: 'A', target, payload, datasource: { type: 'simpod-json-datasource', uid: 'whyslow' } }],
    scopedVars: {},
    adhocFilters: [],
  };
}

/** Raised for HTTP and protocol failures; the message is meant for the user. */
export class QueryError extends Error {
  status?: number;
  constructor(message: string, status?: number) {
    super(message);
    this.name = 'QueryError';
    this.status = status;
  }
}

async function errorMessage(response: Response): Promise<string> {
  const text = await response.text().catch(() => '');
  try {
    const body = JSON.parse(text);
    const msg = body?.message ?? body?.error?.message ?? body?.error;
    if (typeof msg === 'string' && msg) {
      return msg;
    }
  } catch {
    // not JSON: fall through to the raw text
  }
  return text.trim().slice(0, 500) || response.statusText || 'request failed';
}

/** POSTs one target to `url` (with the bearer token, when there is one) and returns its frames; a 401 is a
 * QueryError with status 401. */
export async function runQuery(
  url: string,
  target: string,
  payload: Record<string, unknown>,
  range: QueryRange,
  signal?: AbortSignal,
  token = ''
): Promise<DataFrame[]> {
  let response: Response;
  try {
    response = await fetch(url, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json', ...authHeaders(token) },
      body: JSON.stringify(queryBody(target, payload, range)),
      signal,
    });
  } catch (e) {
    if ((e as Error).name === 'AbortError') {
      throw e;
    }
    throw new QueryError(`Cannot reach the whyslow backend at ${url}: ${(e as Error).message}`);
  }
  if (!response.ok) {
    throw new QueryError(`HTTP ${response.status}: ${await errorMessage(response)}`, response.status);
  }
  const body: unknown = await response.json().catch(() => {
    throw new QueryError('The whyslow backend answered with something that is not JSON.');
  });
  if (!Array.isArray(body)) {
    throw new QueryError('The whyslow backend answered /query with something other than a list of responses.');
  }
  return body.map((item, i) => {
    const frame = toDataFrame(item);
    return { ...frame, refId: frame.refId ?? 'A', name: frame.name ?? `${target}-${i}` };
  });
}
