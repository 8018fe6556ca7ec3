/** The panel: reads the explanation frames from data.series and shows the verdict, the bars and the graph. */
import { css } from '@emotion/css';
import { GrafanaTheme2, PanelProps } from '@grafana/data';
import { useStyles2 } from '@grafana/ui';
import React, { useMemo } from 'react';

import { formatLatency, formatNats, formatRarity } from '../format';
import { parseExplanation } from '../frames';
import { viewState } from '../state';
import { defaultOptions, PanelOptions } from '../types';
import { CausalGraph } from './CausalGraph';
import { ContributionBars } from './ContributionBars';
import { NodeName } from './NodeName';
import { StateView } from './StateView';
import { TargetHeader } from './TargetHeader';

const WIDE = 760;

export const RootCausePanel: React.FC<PanelProps<PanelOptions>> = ({ data, options, width, height }) => {
  const styles = useStyles2(getStyles);
  const opts: PanelOptions = { ...defaultOptions, ...options };
  const explanation = useMemo(() => parseExplanation(data.series), [data.series]);
  const state = viewState(data, explanation);
  const summary = explanation.summary;

  if (state.kind !== 'ok' && state.kind !== 'not_outlier') {
    return (
      <div className={styles.root} style={{ width, height }} data-testid="whyslow-panel" data-status={state.kind}>
        <StateView kind={state.kind} message={state.message} modelTraces={summary?.modelTraces} />
      </div>
    );
  }
  if (state.kind === 'not_outlier' && summary) {
    const rarity = formatRarity(summary.rarerThan);
    const detail =
      state.message ||
      `Outlier score ${formatNats(summary.outlierScore)} nats${rarity && (summary.rarerThan ?? 0) >= 2 ? ` (${rarity})` : ''}.`;
    return (
      <div className={styles.root} style={{ width, height }} data-testid="whyslow-panel" data-status="not_outlier">
        <div className={styles.normal} data-testid="whyslow-state" data-state="not_outlier" role="status">
          <div className={styles.normalBadge}>✓</div>
          <div className={styles.normalTitle}>Not an outlier</div>
          <div className={styles.normalBody}>
            <NodeName node={summary.entry} /> took <strong>{formatLatency(summary.targetLatencyMs, opts.units)}</strong>, within
            what is normal for it. There is no slowness to explain.
          </div>
          <div className={styles.normalDetail}>{detail}</div>
        </div>
      </div>
    );
  }

  const wide = width >= WIDE;
  const graphOn = opts.showGraph && (explanation.edges.length > 0 || explanation.contributions.length > 1);
  return (
    <div className={styles.root} style={{ width, height }} data-testid="whyslow-panel" data-status="ok">
      {summary && <TargetHeader summary={summary} top={explanation.contributions[0] ?? null} units={opts.units} />}
      <div className={wide ? styles.bodyWide : styles.body}>
        <div className={styles.bars}>
          <ContributionBars
            contributions={explanation.contributions}
            topK={opts.topK}
            showIntervals={opts.showIntervals}
            units={opts.units}
            outlierScore={summary?.outlierScore ?? null}
          />
        </div>
        {graphOn && (
          <div className={wide ? styles.graphWide : styles.graph}>
            <CausalGraph
              edges={explanation.edges}
              contributions={explanation.contributions}
              entry={summary?.entry ?? ''}
              maxHeight={wide ? Math.max(160, height - 120) : Math.max(160, height * 0.6)}
            />
          </div>
        )}
      </div>
    </div>
  );
};

const getStyles = (theme: GrafanaTheme2) => ({
  root: css({
    display: 'flex',
    flexDirection: 'column',
    gap: theme.spacing(1.5),
    overflow: 'auto',
    fontFamily: theme.typography.fontFamily,
    fontSize: theme.typography.body.fontSize,
    color: theme.colors.text.primary,
  }),
  body: css({ display: 'flex', flexDirection: 'column', gap: theme.spacing(2) }),
  bodyWide: css({ display: 'flex', flexDirection: 'row', gap: theme.spacing(3), alignItems: 'flex-start' }),
  bars: css({ flex: '3 1 0', minWidth: 0 }),
  graph: css({ minWidth: 0 }),
  graphWide: css({ flex: '2 1 0', minWidth: 0 }),
  normal: css({
    height: '100%',
    display: 'flex',
    flexDirection: 'column',
    alignItems: 'center',
    justifyContent: 'center',
    gap: theme.spacing(1),
    textAlign: 'center',
    padding: theme.spacing(2),
  }),
  normalBadge: css({
    width: 40,
    height: 40,
    borderRadius: '50%',
    display: 'flex',
    alignItems: 'center',
    justifyContent: 'center',
    fontSize: 22,
    color: theme.colors.success.text,
    border: `2px solid ${theme.colors.success.border}`,
  }),
  normalTitle: css({ fontSize: theme.typography.h4.fontSize }),
  normalDetail: css({ maxWidth: 560, color: theme.colors.text.secondary, fontSize: theme.typography.bodySmall.fontSize }),
  normalBody: css({ maxWidth: 560, color: theme.colors.text.secondary, strong: { color: theme.colors.text.primary } }),
});
