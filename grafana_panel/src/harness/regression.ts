/**
 * The standalone page's regression view (/ui/?view=regression&entry=…&stat=p99&from=now-15m&to=now): the
 * data source's `regression` target for that time range, as PanelData for the panel.
 */
import { dateTime, LoadingState, PanelData, TimeRange } from '@grafana/data';
import { useEffect, useState } from 'react';

import { QueryError, runQuery } from './query';

export interface RegressionParams {
  entry: string;
  stat: string;
  from: string;
  to: string;
}

const UNITS: Record<string, number> = { s: 1e3, m: 60e3, h: 3600e3, d: 86400e3, w: 7 * 86400e3 };

/** A time as the dashboard writes it: `now`, `now-15m`, unix ms or ISO 8601; null when unreadable. */
export function parseTime(text: string, now: number): number | null {
  const t = text.trim();
  const relative = /^now(?:-(\d+)([smhdw]))?$/.exec(t);
  if (relative) {
    return now - (relative[1] ? Number(relative[1]) * UNITS[relative[2]] : 0);
  }
  if (/^\d{10,16}$/.test(t)) {
    return Number(t);
  }
  const parsed = Date.parse(t);
  return Number.isFinite(parsed) ? parsed : null;
}

export function regressionRange(params: RegressionParams, now = Date.now()): TimeRange {
  const to = parseTime(params.to || 'now', now) ?? now;
  const from = parseTime(params.from || 'now-15m', now) ?? to - 15 * 60e3;
  return { from: dateTime(from), to: dateTime(to), raw: { from: params.from || 'now-15m', to: params.to || 'now' } };
}

/** The regression frames of the time range when ``active``; Loading while the query runs. */
export function useRegression(
  active: boolean,
  params: RegressionParams,
  token: string,
  onUnauthorized: () => void,
  queryUrl: string
): PanelData {
  const key = `${active}/${params.entry}/${params.stat}/${params.from}/${params.to}/${token}`;
  const [result, setResult] = useState<{ key: string; data: PanelData } | null>(null);
  useEffect(() => {
    const timeRange = regressionRange(params);
    if (!active) {
      setResult({ key, data: { state: LoadingState.Done, series: [], timeRange } });
      return undefined;
    }
    const abort = new AbortController();
    const payload: Record<string, unknown> = { stat: params.stat || 'p99' };
    if (params.entry) {
      payload.entry = params.entry;
    }
    runQuery(queryUrl, 'regression', payload, { from: timeRange.from.toDate(), to: timeRange.to.toDate() }, abort.signal, token)
      .then((series) => setResult({ key, data: { state: LoadingState.Done, series, timeRange } }))
      .catch((e) => {
        if ((e as Error).name === 'AbortError') {
          return;
        }
        if (e instanceof QueryError && e.status === 401) {
          onUnauthorized();
        }
        setResult({
          key,
          data: { state: LoadingState.Error, series: [], timeRange, errors: [{ message: (e as Error).message }] },
        });
      });
    return () => abort.abort();
    // eslint-disable-next-line react-hooks/exhaustive-deps -- ``key`` covers params
  }, [key, active, token, onUnauthorized, queryUrl]);
  if (result && result.key === key) {
    return result.data;
  }
  return { state: LoadingState.Loading, series: [], timeRange: regressionRange(params) };
}
