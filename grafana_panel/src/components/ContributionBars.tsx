/**
 * Ranked horizontal bars: each node's contribution (nats) to the outlier score, with its interval as a whisker,
 * its own latency and the request's latency had that node behaved normally (the counterfactual).
 */
import { css, cx } from '@emotion/css';
import { GrafanaTheme2 } from '@grafana/data';
import { useStyles2, useTheme2 } from '@grafana/ui';
import React from 'react';

import { formatLatency, formatNats, formatShare, kindLabel } from '../format';
import { palette } from '../theme';
import { Contribution, LatencyUnit } from '../types';

interface Props {
  contributions: Contribution[];
  topK: number;
  showIntervals: boolean;
  units: LatencyUnit;
  outlierScore: number | null;
  /** Node highlighted in the bars and the graph together (hover either). */
  highlighted?: string | null;
  onHover?: (node: string | null) => void;
  /** Narrow column: the label gets its own line above the bar. */
  compact?: boolean;
}

interface Domain {
  min: number;
  max: number;
}

/** The value range the bars are drawn on: always contains 0, every bar and (when shown) every whisker. */
export function barDomain(items: Contribution[], showIntervals: boolean): Domain {
  let min = 0;
  let max = 0;
  for (const c of items) {
    const values = [c.contribution, ...(showIntervals ? [c.lo, c.hi] : [])];
    for (const v of values) {
      if (v !== null && Number.isFinite(v)) {
        min = Math.min(min, v);
        max = Math.max(max, v);
      }
    }
  }
  if (max - min <= 0) {
    max = min + 1;
  }
  return { min, max };
}

function pct(value: number, d: Domain): number {
  return ((value - d.min) / (d.max - d.min)) * 100;
}

export const ContributionBars: React.FC<Props> = ({ contributions, topK, showIntervals, units, outlierScore, highlighted, onHover, compact }) => {
  const styles = useStyles2(getStyles);
  const theme = useTheme2();
  const colors = palette(theme);
  const k = Math.max(1, Math.floor(topK) || 1);
  const shown = contributions.slice(0, k);
  const rest = contributions.slice(k);
  const domain = barDomain(shown, showIntervals);
  const zero = pct(0, domain);
  const restSum = rest.reduce((a, c) => a + c.contribution, 0);
  const restShare = outlierScore ? restSum / outlierScore : null;

  if (!contributions.length) {
    return <div className={styles.empty}>The backend returned no contributions for this trace.</div>;
  }
  return (
    <div className={styles.list} data-testid="whyslow-bars" role="list" aria-label="Contributions to the outlier score">
      <div className={styles.legend}>
        <span>Contribution to how unusual this request is</span>
        <span>nats · share</span>
      </div>
      {shown.map((c, i) => {
        const value = pct(c.contribution, domain);
        const left = Math.min(zero, value);
        const width = Math.abs(value - zero);
        const color = c.contribution < 0 ? colors.negative : i === 0 ? colors.top : colors.positive;
        const hasInterval = showIntervals && c.lo !== null && c.hi !== null;
        const kind = kindLabel(c.kind);
        return (
          <div
            key={`${c.rank}:${c.node}`}
            className={cx(styles.row, compact && styles.rowCompact, highlighted === c.node && styles.rowHighlighted)}
            data-highlighted={highlighted === c.node || undefined}
            onMouseEnter={() => onHover?.(c.node)}
            onMouseLeave={() => onHover?.(null)}
            role="listitem"
            aria-label={`${c.rank}. ${c.service} ${c.operation}${kind ? ` (${kind})` : ''}: ${formatNats(c.contribution)} nats ${formatShare(c.share)}`}
            data-testid="whyslow-bar"
            data-rank={c.rank}
            data-node={c.node}
            data-service={c.service}
            data-operation={c.operation}
            data-contribution={c.contribution}
          >
            <div className={styles.rank} style={{ gridArea: 'rank' }}>{c.rank}</div>
            <div className={styles.label} style={{ gridArea: 'label' }} title={c.node}>
              <span className={styles.service}>{c.service}</span>
              <span className={styles.operation}> {c.operation}</span>
            </div>
            <div className={styles.track} style={{ gridArea: 'track' }} aria-hidden>
              <div className={styles.zero} style={{ left: `${zero}%` }} />
              <div
                className={cx(styles.bar, c.contribution < 0 && styles.negative)}
                data-testid="whyslow-bar-fill"
                style={{ left: `${left}%`, width: `${Math.max(width, 0.4)}%`, background: color }}
              />
              {hasInterval && (
                <div
                  className={styles.whisker}
                  data-testid="whyslow-whisker"
                  data-lo={c.lo ?? undefined}
                  data-hi={c.hi ?? undefined}
                  title={`interval ${formatNats(c.lo)} – ${formatNats(c.hi)} nats`}
                  style={{ left: `${pct(c.lo as number, domain)}%`, width: `${pct(c.hi as number, domain) - pct(c.lo as number, domain)}%` }}
                />
              )}
            </div>
            <div className={styles.value} style={{ gridArea: 'value' }}>
              <span className={styles.nats} data-testid="whyslow-bar-value">
                {formatNats(c.contribution)}
              </span>
              {c.share !== null && <span className={styles.share}>{formatShare(c.share)}</span>}
            </div>
            <div className={styles.detail} style={{ gridArea: 'detail' }} data-testid="whyslow-bar-detail">
              {kind && <span className={styles.kind}>{kind}</span>}
              {c.ownLatencyMs !== null && (
                <span>
                  own <strong>{formatLatency(c.ownLatencyMs, units)}</strong>
                  {c.nodeLatencyMs !== null && c.nodeLatencyMs !== c.ownLatencyMs && <> of {formatLatency(c.nodeLatencyMs, units)}</>}
                </span>
              )}
              {c.counterfactualLatencyMs !== null && (
                <span data-testid="whyslow-counterfactual">
                  would have taken <strong>{formatLatency(c.counterfactualLatencyMs, units)}</strong> if this were normal
                </span>
              )}
              {hasInterval && (
                <span className={styles.interval}>
                  interval {formatNats(c.lo)} – {formatNats(c.hi)}
                </span>
              )}
            </div>
          </div>
        );
      })}
      {shown.some((c) => c.contribution < 0) && (
        <div className={styles.note} data-testid="whyslow-negative-note">
          <span className={styles.swatch} style={{ background: colors.negative }} /> a negative contribution made this request
          look more normal, not less
        </div>
      )}
      {rest.length > 0 && (
        <div className={styles.rest} data-testid="whyslow-rest">
          + {rest.length} more {rest.length === 1 ? 'node' : 'nodes'}: {formatNats(restSum)} nats
          {restShare !== null ? ` (${formatShare(restShare)})` : ''} together
        </div>
      )}
    </div>
  );
};

const getStyles = (theme: GrafanaTheme2) => ({
  list: css({ display: 'flex', flexDirection: 'column', gap: theme.spacing(1), minWidth: 0 }),
  legend: css({
    display: 'flex',
    justifyContent: 'space-between',
    fontSize: theme.typography.bodySmall.fontSize,
    color: theme.colors.text.secondary,
    textTransform: 'uppercase',
    letterSpacing: '0.04em',
  }),
  row: css({
    display: 'grid',
    gridTemplateColumns: '1.5em minmax(90px, 34%) minmax(60px, 1fr) auto',
    gridTemplateAreas: '"rank label track value" ". detail detail detail"',
    alignItems: 'center',
    columnGap: theme.spacing(1),
    rowGap: 2,
    padding: theme.spacing(0.75, 1),
    borderRadius: theme.shape.radius.default,
    background: theme.colors.background.secondary,
  }),
  rowCompact: css({
    gridTemplateColumns: '1.5em minmax(60px, 1fr) auto',
    gridTemplateAreas: '"rank label label" ". track value" ". detail detail"',
  }),
  rowHighlighted: css({ boxShadow: `inset 0 0 0 1px ${theme.colors.border.strong}`, background: theme.colors.action.hover }),
  rank: css({
    color: theme.colors.text.secondary,
    fontWeight: theme.typography.fontWeightBold,
    fontVariantNumeric: 'tabular-nums',
  }),
  label: css({ minWidth: 0, overflow: 'hidden', textOverflow: 'ellipsis', whiteSpace: 'nowrap' }),
  service: css({ fontWeight: theme.typography.fontWeightBold, color: theme.colors.text.primary }),
  operation: css({ color: theme.colors.text.secondary }),
  kind: css({
    padding: theme.spacing(0, 0.5),
    fontSize: theme.typography.bodySmall.fontSize,
    border: `1px solid ${theme.colors.border.medium}`,
    borderRadius: theme.shape.radius.default,
    color: theme.colors.text.secondary,
  }),
  track: css({ position: 'relative', height: 16 }),
  zero: css({ position: 'absolute', top: -3, bottom: -3, width: 1, background: theme.colors.border.strong }),
  bar: css({ position: 'absolute', top: 2, height: 12, borderRadius: `0 ${theme.shape.radius.default} ${theme.shape.radius.default} 0` }),
  negative: css({ borderRadius: `${theme.shape.radius.default} 0 0 ${theme.shape.radius.default}` }),
  whisker: css({
    position: 'absolute',
    top: 7,
    height: 2,
    background: theme.colors.text.primary,
    opacity: 0.75,
    '&::before, &::after': {
      content: '""',
      position: 'absolute',
      top: -4,
      height: 10,
      width: 2,
      background: theme.colors.text.primary,
    },
    '&::before': { left: 0 },
    '&::after': { right: 0 },
  }),
  value: css({ display: 'flex', gap: theme.spacing(1), justifyContent: 'flex-end', fontVariantNumeric: 'tabular-nums', whiteSpace: 'nowrap' }),
  nats: css({ fontWeight: theme.typography.fontWeightMedium }),
  share: css({ color: theme.colors.text.secondary, minWidth: '3.2em', textAlign: 'right' }),
  detail: css({
    display: 'flex',
    flexWrap: 'wrap',
    columnGap: theme.spacing(2),
    fontSize: theme.typography.bodySmall.fontSize,
    color: theme.colors.text.secondary,
    strong: { color: theme.colors.text.primary, fontWeight: theme.typography.fontWeightMedium },
  }),
  interval: css({ fontVariantNumeric: 'tabular-nums' }),
  rest: css({ fontSize: theme.typography.bodySmall.fontSize, color: theme.colors.text.secondary, paddingLeft: theme.spacing(1) }),
  note: css({ display: 'flex', alignItems: 'center', gap: theme.spacing(0.75), fontSize: theme.typography.bodySmall.fontSize, color: theme.colors.text.secondary, paddingLeft: theme.spacing(1) }),
  swatch: css({ display: 'inline-block', width: 10, height: 10, borderRadius: 2 }),
  empty: css({ color: theme.colors.text.secondary }),
});
