/** The panel: reads the explanation frames from data.series and shows the verdict, the bars and the graph. */
import { css } from '@emotion/css';
import { GrafanaTheme2, PanelProps } from '@grafana/data';
import { useStyles2 } from '@grafana/ui';
import React, { useMemo, useState } from 'react';

import { formatLatency, formatNats, formatRarity } from '../format';
import { parseExplanation } from '../frames';
import { parseRegression } from '../regression';
import { viewState } from '../state';
import { defaultOptions, PanelOptions } from '../types';
import { CausalGraph, graphLayout } from './CausalGraph';
import { ContributionBars } from './ContributionBars';
import { failureMarks, FailureView } from './FailureView';
import { NodeName } from './NodeName';
import { RegressionView } from './RegressionView';
import { StateView } from './StateView';
import { TargetHeader } from './TargetHeader';

const WIDE = 760;
/** Side by side only when the graph column draws the graph at least this large; else it goes below the bars. */
const SIDE_SCALE = 0.85;
const GRAPH_SHARE = 0.4;
/** Bars narrower than this put each label on its own line. */
const COMPACT_BARS = 560;

export const RootCausePanel: React.FC<PanelProps<PanelOptions>> = ({ data, options, width, height }) => {
  const styles = useStyles2(getStyles);
  const opts: PanelOptions = { ...defaultOptions, ...options };
  const explanation = useMemo(() => parseExplanation(data.series), [data.series]);
  const entry = explanation.summary?.entry ?? '';
  const layout = useMemo(
    () => graphLayout(explanation.edges, explanation.contributions, entry),
    [explanation.edges, explanation.contributions, entry]
  );
  const [hovered, setHovered] = useState<string | null>(null);
  const regression = useMemo(() => parseRegression(data.series), [data.series]);
  const state = viewState(data, explanation);
  const summary = explanation.summary;
  const isError = summary?.kind === 'error';
  const failure = useMemo(() => (isError ? failureMarks(explanation.contributions) : undefined), [isError, explanation.contributions]);

  if (regression) {
    return (
      <div className={styles.root} style={{ width, height }} data-testid="whyslow-panel" data-status="regression">
        <RegressionView regression={regression} units={opts.units} topK={opts.topK} />
      </div>
    );
  }

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
            {isError ? (
              <>
                <NodeName node={summary.entry} /> did not fail, or failed no more rarely than it often does: there is no
                failure to explain.
              </>
            ) : (
              <>
                <NodeName node={summary.entry} /> took <strong>{formatLatency(summary.targetLatencyMs, opts.units)}</strong>,
                within what is normal for it. There is no slowness to explain.
              </>
            )}
          </div>
          <div className={styles.normalDetail}>{detail}</div>
        </div>
      </div>
    );
  }

  const graphOn = opts.showGraph && (explanation.edges.length > 0 || explanation.contributions.length > 1);
  const wide = width >= WIDE && (!graphOn || (width * GRAPH_SHARE) / layout.width >= SIDE_SCALE);
  return (
    <div className={styles.root} style={{ width, height }} data-testid="whyslow-panel" data-status="ok">
      {summary && isError && <FailureView summary={summary} contributions={explanation.contributions} />}
      {summary && !isError && <TargetHeader summary={summary} top={explanation.contributions[0] ?? null} units={opts.units} />}
      <div className={wide ? styles.bodyWide : styles.body}>
        <div className={styles.bars}>
          <ContributionBars
            contributions={explanation.contributions}
            topK={opts.topK}
            showIntervals={opts.showIntervals}
            units={opts.units}
            outlierScore={summary?.outlierScore ?? null}
            highlighted={hovered}
            onHover={setHovered}
            compact={(wide && graphOn ? width * (1 - GRAPH_SHARE) : width) < COMPACT_BARS}
          />
        </div>
        {graphOn && (
          <div className={wide ? styles.graphWide : styles.graph}>
            <CausalGraph
              layout={layout}
              contributions={explanation.contributions}
              entry={entry}
              highlighted={hovered}
              onHover={setHovered}
              failure={failure}
              maxHeight={wide ? Math.max(160, height - 120) : layout.height * 1.25}
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
  bars: css({ flex: `${(1 - GRAPH_SHARE) * 5} 1 0`, minWidth: 0, width: '100%' }),
  graph: css({ minWidth: 0 }),
  graphWide: css({ flex: `${GRAPH_SHARE * 5} 1 0`, minWidth: 0 }),
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
