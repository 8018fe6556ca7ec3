/** "Why did this request fail?": the services whose own failure made it fail (originating service first), those
 * that only passed a callee's error on, and the errors a caller handled (shown apart: not blamed). */
import { css } from '@emotion/css';
import { GrafanaTheme2 } from '@grafana/data';
import { useStyles2 } from '@grafana/ui';
import React from 'react';

import { formatNats, formatRarity, formatShare } from '../format';
import { Contribution, Summary } from '../types';
import { FailureMarks } from './CausalGraph';
import { NodeName } from './NodeName';

interface Props {
  summary: Summary;
  contributions: Contribution[];
}

/** Failed and handled nodes of an error explanation (for the graph). */
export function failureMarks(contributions: Contribution[]): FailureMarks {
  return {
    failed: new Set(contributions.filter((c) => c.failed).map((c) => c.node)),
    handled: new Set(contributions.filter((c) => c.handled).map((c) => c.node)),
  };
}

/** A node in words: a call-gap node is the call into its service (it fails when the call does). */
function label(c: Contribution): string {
  return c.kind === 'call_gap' ? `the call to ${c.service} ${c.operation}` : `${c.service} ${c.operation}`;
}

function percent(p: number | null): string {
  return p === null ? '' : `${Math.round(100 * p)} %`;
}

export const FailureView: React.FC<Props> = ({ summary, contributions }) => {
  const styles = useStyles2(getStyles);
  // originating: most likely failed on its own (the posterior of its own failure), and blamed for some of it;
  // passed on: failed because a callee did
  const ownly = (c: Contribution) => (c.ownFailure ?? 0) >= 0.5;
  const origins = contributions.filter((c) => c.failed && !c.handled && ownly(c) && c.contribution > 0);
  const passedOn = contributions.filter((c) => c.failed && !c.handled && !ownly(c));
  const handled = contributions.filter((c) => c.handled);
  const rarity = formatRarity(summary.rarerThan);
  const top = origins[0];
  return (
    <div className={styles.root} data-testid="whyslow-failure">
      <div className={styles.caption}>Why did this request fail?</div>
      <div className={styles.head}>
        <NodeName node={summary.entry} /> failed · outlier score {formatNats(summary.outlierScore)} nats
        {rarity ? ` · rarer than ${rarity} requests` : ''}
      </div>
      {top && (
        <div className={styles.verdict} data-testid="whyslow-failure-verdict">
          <span className={styles.culprit}>{top.service}</span> {top.operation} failed on its own
          {top.successWithout !== null && top.successWithout > 0 && (
            <>
              ; had it not failed, the request would have succeeded with probability{' '}
              <strong>{percent(top.successWithout)}</strong>
            </>
          )}
          .
        </div>
      )}
      <ol className={styles.list} data-testid="whyslow-failure-origins">
        {origins.map((c) => (
          <li key={c.node} data-testid="whyslow-failure-origin" data-node={c.node} data-service={c.service}>
            <NodeName node={c.node} /> — {formatNats(c.contribution)} nats ({formatShare(c.share)}), failed on its own
            with probability {percent(c.ownFailure)}
          </li>
        ))}
      </ol>
      {passedOn.length > 0 && (
        <div className={styles.muted} data-testid="whyslow-failure-propagated">
          Passed the error on: {passedOn.map(label).join(', ')}
        </div>
      )}
      {handled.length > 0 && (
        <div className={styles.handled} data-testid="whyslow-failure-handled">
          Handled by the caller (not blamed): {handled.map(label).join(', ')}
        </div>
      )}
    </div>
  );
};

const getStyles = (theme: GrafanaTheme2) => ({
  root: css({ display: 'flex', flexDirection: 'column', gap: theme.spacing(0.75) }),
  caption: css({
    fontSize: theme.typography.bodySmall.fontSize,
    color: theme.colors.text.secondary,
    textTransform: 'uppercase',
    letterSpacing: '0.04em',
  }),
  head: css({ fontSize: theme.typography.h5.fontSize }),
  verdict: css({ strong: { color: theme.colors.text.primary } }),
  culprit: css({ color: theme.colors.error.text, fontWeight: theme.typography.fontWeightBold }),
  list: css({ margin: 0, paddingLeft: theme.spacing(3) }),
  muted: css({ color: theme.colors.text.secondary }),
  handled: css({
    color: theme.colors.text.secondary,
    border: `1px dashed ${theme.colors.border.strong}`,
    borderRadius: theme.shape.radius.default,
    padding: theme.spacing(0.5, 1),
  }),
});
