/** The standalone page's layout: header, recent outliers, and the panel in a Grafana-like frame. */
import { css, cx } from '@emotion/css';
import {
  dateTime,
  EventBusSrv,
  FieldConfigSource,
  getDefaultTimeRange,
  GrafanaTheme2,
  LoadingState,
  PanelData,
  TimeRange,
} from '@grafana/data';
import { useStyles2 } from '@grafana/ui';
import React, { useCallback, useEffect, useMemo, useRef, useState } from 'react';

import { NodeName } from '../components/NodeName';
import { RootCausePanel } from '../components/RootCausePanel';
import { formatLatency, formatNats } from '../format';
import { defaultOptions, PanelOptions } from '../types';
import { frameError } from '../frames';
import { clearToken, loadToken, saveToken } from './auth';
import { OutlierRow, parseOutliers } from './outliers';
import { QueryError, runQuery } from './query';
import { RegressionParams, useRegression } from './regression';

export interface UrlState {
  traceId: string;
  theme: 'light' | 'dark';
  /** Bootstrap resamples for contribution intervals (0: the server's default). */
  intervals: number;
  /** ``view=regression``: why the statistic of ``regression.entry`` changed in the time range. */
  view?: 'regression';
  regression?: RegressionParams;
}

const TRACE_ID = /^[0-9a-fA-F]{1,64}$/;
const QUERY_URL = '/query';
const OUTLIER_WINDOW_MS = 7 * 24 * 3600 * 1000;
const OUTLIER_REFRESH_MS = 15000;

export function readUrl(search: string): UrlState {
  const params = new URLSearchParams(search);
  const theme = params.get('theme') === 'light' ? 'light' : 'dark';
  const intervals = Math.max(0, Math.min(200, Math.floor(Number(params.get('intervals')) || 0)));
  const state: UrlState = { traceId: (params.get('traceId') ?? params.get('var-traceId') ?? '').trim(), theme, intervals };
  if (params.get('view') === 'regression') {
    state.view = 'regression';
    state.regression = {
      entry: params.get('entry') ?? '',
      stat: params.get('stat') ?? 'p99',
      from: params.get('from') ?? 'now-15m',
      to: params.get('to') ?? 'now',
    };
  }
  return state;
}

export function writeUrl(pathname: string, state: UrlState): string {
  const params = new URLSearchParams();
  if (state.traceId) {
    params.set('traceId', state.traceId);
  }
  params.set('theme', state.theme);
  if (state.intervals > 0) {
    params.set('intervals', String(state.intervals));
  }
  if (state.view === 'regression' && state.regression) {
    params.set('view', 'regression');
    for (const [k, v] of Object.entries(state.regression)) {
      if (v) {
        params.set(k, v);
      }
    }
  }
  return `${pathname}?${params.toString()}`;
}

function lastWindow(): TimeRange {
  const to = dateTime();
  const from = dateTime(to.valueOf() - OUTLIER_WINDOW_MS);
  return { from, to, raw: { from: 'now-7d', to: 'now' } };
}

function failed(e: unknown, timeRange: TimeRange): PanelData {
  const message = e instanceof Error ? e.message : String(e);
  return {
    state: LoadingState.Error,
    series: [],
    timeRange,
    errors: [{ message, status: e instanceof QueryError ? e.status : undefined }],
  };
}

/** Explanation frames for the trace in the URL, as PanelData. */
/** Explanation frames for the trace in the URL, as PanelData; Loading from the very render that changes the trace. */
function useExplanation(traceId: string, intervals: number, token: string, onUnauthorized: () => void): PanelData {
  const key = `${traceId}/${intervals}/${token}`;
  const [result, setResult] = useState<{ key: string; data: PanelData } | null>(null);
  useEffect(() => {
    const timeRange = lastWindow();
    const settle = (data: PanelData) => setResult({ key, data });
    if (!traceId) {
      settle({ state: LoadingState.Done, series: [], timeRange });
      return undefined;
    }
    if (!TRACE_ID.test(traceId)) {
      settle(failed(new Error(`"${traceId}" is not a trace id (expected up to 32 hexadecimal digits).`), timeRange));
      return undefined;
    }
    const abort = new AbortController();
    const payload = intervals > 0 ? { traceId, intervals } : { traceId };
    runQuery(QUERY_URL, 'rca', payload, { from: timeRange.from.toDate(), to: timeRange.to.toDate() }, abort.signal, token)
      .then((series) => settle({ state: LoadingState.Done, series, timeRange }))
      .catch((e) => {
        if ((e as Error).name !== 'AbortError') {
          if (isUnauthorized(e)) {
            onUnauthorized();
          }
          settle(failed(e, timeRange));
        }
      });
    return () => abort.abort();
  }, [key, traceId, intervals, token, onUnauthorized]);
  if (result && result.key === key) {
    return result.data;
  }
  return { state: LoadingState.Loading, series: [], timeRange: result?.data.timeRange ?? getDefaultTimeRange() };
}

function isUnauthorized(e: unknown): boolean {
  return e instanceof QueryError && e.status === 401;
}

function useOutliers(token: string, onUnauthorized: () => void): { rows: OutlierRow[]; error: string } {
  const [state, setState] = useState<{ rows: OutlierRow[]; error: string }>({ rows: [], error: '' });
  useEffect(() => {
    const abort = new AbortController();
    const load = () => {
      const range = lastWindow();
      runQuery(QUERY_URL, 'outliers', {}, { from: range.from.toDate(), to: range.to.toDate() }, abort.signal, token)
        .then((frames) => setState({ rows: parseOutliers(frames), error: frameError(frames) ?? '' }))
        .catch((e) => {
          if ((e as Error).name !== 'AbortError') {
            if (isUnauthorized(e)) {
              onUnauthorized();
            }
            setState((s) => ({ rows: s.rows, error: (e as Error).message }));
          }
        });
    };
    load();
    const timer = window.setInterval(load, OUTLIER_REFRESH_MS);
    return () => {
      abort.abort();
      window.clearInterval(timer);
    };
  }, [token, onUnauthorized]);
  return state;
}

function useSize<T extends HTMLElement>(): [React.RefObject<T>, { width: number; height: number }] {
  const ref = useRef<T>(null);
  const [size, setSize] = useState({ width: 0, height: 0 });
  useEffect(() => {
    const el = ref.current;
    if (!el) {
      return undefined;
    }
    const update = () => setSize({ width: Math.floor(el.clientWidth), height: Math.floor(el.clientHeight) });
    update();
    const observer = new ResizeObserver(update);
    observer.observe(el);
    return () => observer.disconnect();
  }, []);
  return [ref, size];
}

const noop = () => undefined;
const NO_REGRESSION: RegressionParams = { entry: '', stat: 'p99', from: 'now-15m', to: 'now' };
const fieldConfig: FieldConfigSource = { defaults: {}, overrides: [] };

export const App: React.FC<{ url: UrlState; navigate: (next: UrlState) => void }> = ({ url, navigate }) => {
  const styles = useStyles2(getStyles);
  const [token, setToken] = useState(loadToken);
  const [signIn, setSignIn] = useState(false);
  const [tokenDraft, setTokenDraft] = useState('');
  const onUnauthorized = useCallback(() => setSignIn(true), []);
  const regressionView = url.view === 'regression' && !!url.regression;
  const explanation = useExplanation(regressionView ? '' : url.traceId, url.intervals, token, onUnauthorized);
  const regression = useRegression(regressionView, url.regression ?? NO_REGRESSION, token, onUnauthorized, QUERY_URL);
  const data = regressionView ? regression : explanation;
  const outliers = useOutliers(token, onUnauthorized);
  const [options, setOptions] = useState<PanelOptions>(defaultOptions);
  const [draft, setDraft] = useState(url.traceId);
  const [bodyRef, size] = useSize<HTMLDivElement>();
  const eventBus = useMemo(() => new EventBusSrv(), []);
  useEffect(() => setDraft(url.traceId), [url.traceId]);

  const replaceVariables = (value: string) => value.replace(/\$\{?traceId\}?/g, url.traceId);
  const padding = 16;

  return (
    <div className={styles.page}>
      <header className={styles.header}>
        <div className={styles.brand}>
          <img src="logo.svg" alt="" width={22} height={22} onError={(e) => (e.currentTarget.style.display = 'none')} />
          <span>whyslow</span>
          <span className={styles.tagline}>why was this request slow?</span>
        </div>
        <form
          className={styles.search}
          onSubmit={(e) => {
            e.preventDefault();
            navigate({ ...url, traceId: draft.trim(), view: undefined });
          }}
        >
          <input
            className={styles.input}
            value={draft}
            placeholder="trace id"
            aria-label="trace id"
            spellCheck={false}
            onChange={(e) => setDraft(e.target.value)}
          />
          <button className={styles.button} type="submit">
            Explain
          </button>
        </form>
        <button
          className={styles.button}
          type="button"
          data-testid="theme-toggle"
          onClick={() => navigate({ ...url, theme: url.theme === 'dark' ? 'light' : 'dark' })}
        >
          {url.theme === 'dark' ? 'Light' : 'Dark'} theme
        </button>
        {token && (
          <button
            className={styles.button}
            type="button"
            data-testid="sign-out"
            onClick={() => {
              clearToken();
              setToken('');
            }}
          >
            Sign out
          </button>
        )}
      </header>
      {signIn && (
        <form
          className={styles.auth}
          data-testid="auth-form"
          onSubmit={(e) => {
            e.preventDefault();
            const next = tokenDraft.trim();
            if (next) {
              saveToken(next);
              setTokenDraft('');
              setSignIn(false);
              setToken(next);
            }
          }}
        >
          <span>
            {token ? 'The backend rejected the token.' : 'This whyslow backend needs a token.'} Sign in with the
            bearer token it was started with (<code>--auth-token</code>); it is kept for this tab only.
          </span>
          <input
            className={styles.input}
            type="password"
            autoComplete="current-password"
            aria-label="auth token"
            data-testid="auth-token"
            value={tokenDraft}
            onChange={(e) => setTokenDraft(e.target.value)}
          />
          <button className={styles.button} type="submit" data-testid="auth-submit">
            Sign in
          </button>
        </form>
      )}
      <div className={styles.main}>
        <aside className={styles.side} data-testid="outlier-list">
          <div className={styles.sideTitle}>Recent outliers</div>
          {outliers.error && <div className={styles.sideError}>{outliers.error}</div>}
          {!outliers.error && outliers.rows.length === 0 && <div className={styles.sideEmpty}>None in the last 7 days.</div>}
          {outliers.rows.map((o) => (
            <button
              key={o.traceId}
              type="button"
              className={cx(styles.outlier, o.traceId === url.traceId && styles.outlierActive)}
              onClick={() => navigate({ ...url, traceId: o.traceId, view: undefined })}
              data-testid="outlier-item"
              data-trace-id={o.traceId}
            >
              <span className={styles.outlierEntry}>{o.entry ? <NodeName node={o.entry} /> : o.traceId.slice(0, 16)}</span>
              <span className={styles.outlierMeta}>
                {o.latencyMs !== null && formatLatency(o.latencyMs, 'auto')}
                {o.score !== null && ` · ${formatNats(o.score)} nats`}
                {o.rootCause && ` · ${o.rootCause}`}
              </span>
              <span className={styles.outlierMeta}>
                {o.time !== null ? new Date(o.time).toLocaleString() : ''} {o.traceId.slice(0, 8)}
              </span>
            </button>
          ))}
          <div className={styles.sideTitle}>Options</div>
          <label className={styles.option}>
            Top contributors
            <input
              type="number"
              min={1}
              max={50}
              value={options.topK}
              className={styles.small}
              onChange={(e) => setOptions({ ...options, topK: Math.max(1, Number(e.target.value) || 1) })}
            />
          </label>
          <label className={styles.option}>
            <input type="checkbox" checked={options.showIntervals} onChange={(e) => setOptions({ ...options, showIntervals: e.target.checked })} />
            Show intervals
          </label>
          <label className={styles.option}>
            <input type="checkbox" checked={options.showGraph} onChange={(e) => setOptions({ ...options, showGraph: e.target.checked })} />
            Show causal graph
          </label>
          <label className={styles.option}>
            Units
            <select
              value={options.units}
              className={styles.small}
              onChange={(e) => setOptions({ ...options, units: e.target.value as PanelOptions['units'] })}
            >
              <option value="auto">auto</option>
              <option value="ms">ms</option>
              <option value="s">s</option>
            </select>
          </label>
        </aside>
        <section className={styles.panel}>
          <div className={styles.panelTitle}>{regressionView ? 'Why did latency change?' : 'Why was this request slow?'}</div>
          <div className={styles.panelBody} ref={bodyRef}>
            {size.width > 0 && (
              <RootCausePanel
                id={1}
                data={data}
                timeRange={data.timeRange}
                timeZone="browser"
                options={options}
                onOptionsChange={setOptions}
                fieldConfig={fieldConfig}
                onFieldConfigChange={noop}
                transparent={false}
                width={size.width - 2 * padding}
                height={size.height - 2 * padding}
                renderCounter={0}
                title="Why was this request slow?"
                eventBus={eventBus}
                replaceVariables={replaceVariables}
                onChangeTimeRange={noop}
              />
            )}
          </div>
        </section>
      </div>
    </div>
  );
};

const getStyles = (theme: GrafanaTheme2) => ({
  page: css({
    height: '100%',
    display: 'flex',
    flexDirection: 'column',
    fontFamily: theme.typography.fontFamily,
    fontSize: theme.typography.body.fontSize,
    color: theme.colors.text.primary,
    background: theme.colors.background.canvas,
  }),
  header: css({
    display: 'flex',
    alignItems: 'center',
    gap: theme.spacing(2),
    padding: theme.spacing(1, 2),
    borderBottom: `1px solid ${theme.colors.border.weak}`,
    background: theme.colors.background.primary,
  }),
  brand: css({ display: 'flex', alignItems: 'center', gap: theme.spacing(1), fontSize: theme.typography.h4.fontSize, fontWeight: 500 }),
  tagline: css({
    fontSize: theme.typography.body.fontSize,
    color: theme.colors.text.secondary,
    fontWeight: 400,
    [theme.breakpoints.down('lg')]: { display: 'none' },
  }),
  search: css({ display: 'flex', gap: theme.spacing(1), marginLeft: 'auto', flex: '0 1 460px' }),
  input: css({
    flex: 1,
    minWidth: 120,
    padding: theme.spacing(0.5, 1),
    fontFamily: theme.typography.fontFamilyMonospace,
    color: theme.colors.text.primary,
    background: theme.components.input.background,
    border: `1px solid ${theme.components.input.borderColor}`,
    borderRadius: theme.shape.radius.default,
  }),
  button: css({
    whiteSpace: 'nowrap',
    padding: theme.spacing(0.5, 1.5),
    color: theme.colors.secondary.contrastText,
    background: theme.colors.secondary.main,
    border: `1px solid ${theme.colors.border.medium}`,
    borderRadius: theme.shape.radius.default,
    cursor: 'pointer',
    '&:hover': { background: theme.colors.secondary.shade },
  }),
  auth: css({
    display: 'flex',
    alignItems: 'center',
    gap: theme.spacing(1),
    padding: theme.spacing(1, 2),
    borderBottom: `1px solid ${theme.colors.border.weak}`,
    background: theme.colors.warning.transparent,
  }),
  main: css({ flex: 1, display: 'flex', minHeight: 0, gap: theme.spacing(2), padding: theme.spacing(2) }),
  side: css({ width: 250, flexShrink: 0, display: 'flex', flexDirection: 'column', gap: theme.spacing(0.5), overflowY: 'auto' }),
  sideTitle: css({
    marginTop: theme.spacing(1),
    fontSize: theme.typography.bodySmall.fontSize,
    color: theme.colors.text.secondary,
    textTransform: 'uppercase',
    letterSpacing: '0.04em',
  }),
  sideError: css({ color: theme.colors.error.text, fontSize: theme.typography.bodySmall.fontSize }),
  sideEmpty: css({ color: theme.colors.text.secondary, fontSize: theme.typography.bodySmall.fontSize }),
  outlier: css({
    display: 'flex',
    flexDirection: 'column',
    alignItems: 'flex-start',
    gap: 2,
    padding: theme.spacing(0.75, 1),
    textAlign: 'left',
    color: theme.colors.text.primary,
    background: theme.colors.background.primary,
    border: `1px solid ${theme.colors.border.weak}`,
    borderRadius: theme.shape.radius.default,
    cursor: 'pointer',
    '&:hover': { borderColor: theme.colors.border.strong },
  }),
  outlierActive: css({ borderColor: theme.colors.primary.border, boxShadow: `inset 3px 0 0 ${theme.colors.primary.main}` }),
  outlierEntry: css({ fontWeight: 500, maxWidth: '100%', overflow: 'hidden', textOverflow: 'ellipsis', whiteSpace: 'nowrap' }),
  outlierMeta: css({ fontSize: theme.typography.bodySmall.fontSize, color: theme.colors.text.secondary }),
  option: css({ display: 'flex', alignItems: 'center', gap: theme.spacing(1), fontSize: theme.typography.bodySmall.fontSize }),
  small: css({
    width: 70,
    color: theme.colors.text.primary,
    background: theme.components.input.background,
    border: `1px solid ${theme.components.input.borderColor}`,
    borderRadius: theme.shape.radius.default,
  }),
  panel: css({
    flex: 1,
    minWidth: 0,
    display: 'flex',
    flexDirection: 'column',
    background: theme.colors.background.primary,
    border: `1px solid ${theme.colors.border.weak}`,
    borderRadius: theme.shape.radius.default,
  }),
  panelTitle: css({ padding: theme.spacing(1, 2, 0), fontWeight: theme.typography.fontWeightMedium }),
  panelBody: css({ flex: 1, minHeight: 0, padding: 16 }),
});
