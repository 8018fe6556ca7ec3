/** The slow request itself: entry point, latency, how rare it is, and the one-line verdict. */
import { css } from '@emotion/css';
import { GrafanaTheme2 } from '@grafana/data';
import { useStyles2 } from '@grafana/ui';
import React from 'react';

import { formatLatency, formatNats, formatRarity, formatShare } from '../format';
import { Contribution, LatencyUnit, Summary } from '../types';
import { NodeName } from './NodeName';

interface Props {
  summary: Summary;
  top: Contribution | null;
  units: LatencyUnit;
}

export const TargetHeader: React.FC<Props> = ({ summary, top, units }) => {
  const styles = useStyles2(getStyles);
  const rarity = formatRarity(summary.rarerThan);
  return (
    <div className={styles.header} data-testid="whyslow-target">
      <div className={styles.entry}>
        <div className={styles.caption}>Slow request</div>
        <div className={styles.entryName} data-testid="whyslow-entry">
          <NodeName node={summary.entry} />
        </div>
        {summary.traceId && (
          <div className={styles.trace} title={summary.traceId}>
            trace {summary.traceId}
          </div>
        )}
      </div>
      <div className={styles.stats}>
        <Stat label="latency" value={formatLatency(summary.targetLatencyMs, units)} testId="whyslow-latency" strong />
        <Stat
          label="outlier score"
          value={`${formatNats(summary.outlierScore)} nats`}
          hint="Information-theoretic outlier score: −log P(a request is at least this unusual)."
          testId="whyslow-score"
        />
        {rarity && <Stat label="rarer than" value={`${rarity} requests`} testId="whyslow-rarity" />}
      </div>
      {top && top.contribution > 0 && (
        <div className={styles.verdict} data-testid="whyslow-verdict">
          <span className={styles.culprit}>{top.service}</span>
          {top.operation && <span className={styles.op}> {top.operation}</span>}{' '}
          {top.share !== null && top.share > 1 ? (
            <>
              explains more than all of how unusual this request is (<strong>{formatShare(top.share)}</strong> of the
              score; other nodes offset part of it)
            </>
          ) : (
            <>
              explains <strong>{formatShare(top.share) || `${formatNats(top.contribution)} nats`}</strong> of how unusual this
              request is
            </>
          )}
          {top.counterfactualLatencyMs !== null && (
            <>
              ; had it behaved normally the request would have taken{' '}
              <strong>{formatLatency(top.counterfactualLatencyMs, units)}</strong>
            </>
          )}
          .
        </div>
      )}
    </div>
  );
};

const Stat: React.FC<{ label: string; value: string; hint?: string; testId: string; strong?: boolean }> = ({
  label,
  value,
  hint,
  testId,
  strong,
}) => {
  const styles = useStyles2(getStyles);
  return (
    <div className={styles.stat} title={hint}>
      <div className={strong ? styles.statValueStrong : styles.statValue} data-testid={testId}>
        {value}
      </div>
      <div className={styles.caption}>{label}</div>
    </div>
  );
};

const getStyles = (theme: GrafanaTheme2) => ({
  header: css({
    display: 'flex',
    flexWrap: 'wrap',
    alignItems: 'flex-end',
    gap: theme.spacing(1, 3),
    paddingBottom: theme.spacing(1.5),
    borderBottom: `1px solid ${theme.colors.border.weak}`,
  }),
  entry: css({ minWidth: 0, flex: '1 1 220px' }),
  entryName: css({
    fontSize: theme.typography.h4.fontSize,
    lineHeight: 1.3,
    overflow: 'hidden',
    textOverflow: 'ellipsis',
    whiteSpace: 'nowrap',
  }),
  trace: css({
    fontFamily: theme.typography.fontFamilyMonospace,
    fontSize: theme.typography.bodySmall.fontSize,
    color: theme.colors.text.secondary,
    overflow: 'hidden',
    textOverflow: 'ellipsis',
    whiteSpace: 'nowrap',
  }),
  caption: css({
    fontSize: theme.typography.bodySmall.fontSize,
    color: theme.colors.text.secondary,
    textTransform: 'uppercase',
    letterSpacing: '0.04em',
  }),
  stats: css({ display: 'flex', gap: theme.spacing(3), flexWrap: 'wrap' }),
  stat: css({ textAlign: 'right' }),
  statValue: css({ fontSize: theme.typography.h5.fontSize, fontWeight: theme.typography.fontWeightMedium, whiteSpace: 'nowrap' }),
  statValueStrong: css({
    fontSize: theme.typography.h3.fontSize,
    fontWeight: theme.typography.fontWeightBold,
    lineHeight: 1.1,
    whiteSpace: 'nowrap',
  }),
  verdict: css({
    flex: '1 1 100%',
    fontSize: theme.typography.body.fontSize,
    color: theme.colors.text.primary,
  }),
  culprit: css({ fontWeight: theme.typography.fontWeightBold, color: theme.visualization.getColorByName('red') }),
  op: css({ color: theme.colors.text.secondary }),
});
