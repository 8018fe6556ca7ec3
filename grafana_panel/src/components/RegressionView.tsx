/**
 * Why did a latency statistic change between a baseline and the dashboard's time range: the observed change, the
 * part the changed services explain, the noise floor, and one bar per changed node (ms, with its bootstrap
 * interval) with the counterfactual "p99 had this service not changed".
 */
import { css } from '@emotion/css';
import { GrafanaTheme2 } from '@grafana/data';
import { useStyles2, useTheme2 } from '@grafana/ui';
import React from 'react';

import { formatLatency, kindLabel } from '../format';
import { Regression, RegressionRow } from '../regression';
import { palette } from '../theme';
import { LatencyUnit } from '../types';

interface Props {
  regression: Regression;
  units: LatencyUnit;
  topK: number;
}

const BASELINES: Record<string, string> = {
  day_before: 'the same window a day earlier',
  hour_before: 'the hour before',
  given: 'the chosen baseline',
};

function signed(value: number | null, unit: string, units: LatencyUnit): string {
  if (value === null) {
    return '—';
  }
  const sign = value >= 0 ? '+' : '−';
  return sign + amount(Math.abs(value), unit, units, true);
}

/** A value of the statistic (or, with ``change``, a difference of two): ms for latency statistics, percent for
 * tail probabilities, and for the error rate percent values with changes in percentage points. */
function amount(value: number | null, unit: string, units: LatencyUnit, change = false): string {
  if (unit === 'probability') {
    return value === null ? '—' : `${(value * 100).toFixed(2)}%`;
  }
  if (unit === 'percentage_points') {
    return value === null ? '—' : `${value.toFixed(2)}${change ? ' pp' : '%'}`;
  }
  return formatLatency(value, units);
}

function domainOf(rows: RegressionRow[]): { min: number; max: number } {
  let min = 0;
  let max = 0;
  for (const r of rows) {
    for (const v of [r.contribution, r.lo, r.hi]) {
      if (v !== null && Number.isFinite(v)) {
        min = Math.min(min, v);
        max = Math.max(max, v);
      }
    }
  }
  return max - min > 0 ? { min, max } : { min, max: min + 1 };
}

export const RegressionView: React.FC<Props> = ({ regression, units, topK }) => {
  const styles = useStyles2(getStyles);
  const colors = palette(useTheme2());
  const s = regression.summary;
  if (s.status !== 'ok') {
    return (
      <div className={styles.message} data-testid="whyslow-regression" data-status="error" role="status">
        {s.message || 'The regression could not be computed.'}
      </div>
    );
  }
  const shown = regression.rows.slice(0, Math.max(1, Math.floor(topK) || 1));
  const d = domainOf(shown);
  const pct = (v: number) => ((v - d.min) / (d.max - d.min)) * 100;
  const zero = pct(0);
  return (
    <div className={styles.root} data-testid="whyslow-regression" data-status={s.significant ? 'changed' : 'no_change'}>
      <div className={styles.header}>
        <div className={styles.title}>
          {s.stat} of {s.entry}: {amount(s.baselineValue, s.unit, units)} → <strong>{amount(s.comparisonValue, s.unit, units)}</strong>{' '}
          <span data-testid="whyslow-regression-observed">({signed(s.observedChange, s.unit, units)})</span>
        </div>
        <div className={styles.detail}>
          Against {BASELINES[s.baselineSource] ?? 'the baseline'} ({s.baselineTraces ?? '?'} vs {s.windowTraces ?? '?'} requests):
          changed services explain <strong data-testid="whyslow-regression-explained">{signed(s.modelledChange, s.unit, units)}</strong>,
          unexplained {signed(s.unexplained, s.unit, units)}; resampling noise alone moves it up to ±
          {amount(s.noiseFloor, s.unit, units, true)}.
        </div>
        {!s.significant && (
          <div className={styles.verdict} role="status">
            No change beyond resampling noise.
          </div>
        )}
      </div>
      {shown.length > 0 && (
        <div role="list" aria-label="Change of the statistic per service" data-testid="whyslow-regression-bars">
          {shown.map((r, i) => {
            const v = pct(r.contribution);
            const color = r.contribution < 0 ? colors.negative : i === 0 ? colors.top : colors.positive;
            const whisker =
              r.lo !== null && r.hi !== null ? { left: pct(Math.min(r.lo, r.hi)), width: Math.abs(pct(r.hi) - pct(r.lo)) } : null;
            const kind = kindLabel(r.kind);
            return (
              <div key={r.node} className={styles.row} role="listitem" data-testid="whyslow-regression-row" data-service={r.service}>
                <div className={styles.label}>
                  <span className={styles.service}>{r.service}</span>
                  <span className={styles.node}>
                    {r.node}
                    {kind ? ` · ${kind}` : ''}
                    {r.changeKind !== 'changed' ? ` · ${r.changeKind} call` : ''}
                  </span>
                </div>
                <div className={styles.track}>
                  <div className={styles.zero} style={{ left: `${zero}%` }} />
                  <div
                    className={styles.bar}
                    style={{ left: `${Math.min(zero, v)}%`, width: `${Math.abs(v - zero)}%`, background: color }}
                  />
                  {whisker && <div className={styles.whisker} style={{ left: `${whisker.left}%`, width: `${whisker.width}%` }} />}
                </div>
                <div className={styles.value} data-testid="whyslow-regression-value">
                  {signed(r.contribution, s.unit, units)}
                </div>
                {r.counterfactual !== null && (
                  <div className={styles.counterfactual}>
                    {s.stat} would be {amount(r.counterfactual, s.unit, units)} had this not changed
                  </div>
                )}
              </div>
            );
          })}
        </div>
      )}
    </div>
  );
};

const getStyles = (theme: GrafanaTheme2) => ({
  root: css({ display: 'flex', flexDirection: 'column', gap: theme.spacing(1.5) }),
  header: css({ display: 'flex', flexDirection: 'column', gap: theme.spacing(0.5) }),
  title: css({ fontSize: theme.typography.h4.fontSize }),
  detail: css({ color: theme.colors.text.secondary, strong: { color: theme.colors.text.primary } }),
  verdict: css({ color: theme.colors.success.text }),
  message: css({ padding: theme.spacing(2), color: theme.colors.text.secondary }),
  row: css({
    display: 'grid',
    gridTemplateColumns: 'minmax(140px, 30%) 1fr 90px',
    alignItems: 'center',
    columnGap: theme.spacing(1),
    padding: theme.spacing(0.5, 0),
  }),
  label: css({ display: 'flex', flexDirection: 'column', minWidth: 0 }),
  service: css({ fontWeight: theme.typography.fontWeightMedium }),
  node: css({ color: theme.colors.text.secondary, fontSize: theme.typography.bodySmall.fontSize, overflowWrap: 'anywhere' }),
  track: css({ position: 'relative', height: 16, background: theme.colors.background.secondary, borderRadius: 2 }),
  zero: css({ position: 'absolute', top: 0, bottom: 0, width: 1, background: theme.colors.border.strong }),
  bar: css({ position: 'absolute', top: 3, height: 10, borderRadius: 2 }),
  whisker: css({ position: 'absolute', top: 7, height: 2, background: theme.colors.text.secondary, opacity: 0.8 }),
  value: css({ textAlign: 'right', fontVariantNumeric: 'tabular-nums' }),
  counterfactual: css({
    gridColumn: '1 / -1',
    color: theme.colors.text.secondary,
    fontSize: theme.typography.bodySmall.fontSize,
  }),
});
