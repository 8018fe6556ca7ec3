/** Compact SVG view of the causal graph: entry point on top, callees below, nodes shaded by contribution. */
import { css } from '@emotion/css';
import { GrafanaTheme2 } from '@grafana/data';
import { useStyles2, useTheme2 } from '@grafana/ui';
import React, { useId, useMemo } from 'react';

import { formatNats, formatShare } from '../format';
import { GraphLayout, layoutGraph } from '../layout';
import { splitNodeId } from '../nodes';
import { nodeFill, palette } from '../theme';
import { CausalEdge, Contribution } from '../types';

interface Props {
  layout: GraphLayout;
  contributions: Contribution[];
  entry: string;
  maxHeight: number;
  /** Node highlighted in the bars and the graph together (hover either). */
  highlighted?: string | null;
  onHover?: (node: string | null) => void;
  /** Why-failed view: nodes that failed, and those whose failure a caller handled; edges between failed nodes
   * (the error passed from callee to caller) are the propagation path. */
  failure?: FailureMarks;
}

export interface FailureMarks {
  failed: Set<string>;
  handled: Set<string>;
}

/** The layout of the graph the panel draws: the entry point, every contributing node and every causal edge. */
export function graphLayout(edges: CausalEdge[], contributions: Contribution[], entry: string): GraphLayout {
  return layoutGraph([...(entry ? [entry] : []), ...contributions.map((c) => c.node)], edges);
}

const MAX_LABEL = 19;
/** Below this scale labels become unreadable: the graph scrolls instead of shrinking further. */
export const MIN_SCALE = 0.6;

function clip(text: string, n = MAX_LABEL): string {
  return text.length > n ? `${text.slice(0, n - 1)}…` : text;
}

export const CausalGraph: React.FC<Props> = ({ layout, contributions, entry, maxHeight, highlighted, onHover, failure }) => {
  const styles = useStyles2(getStyles);
  const theme = useTheme2();
  const colors = palette(theme);
  const byNode = useMemo(() => new Map(contributions.map((c) => [c.node, c])), [contributions]);
  const maxContribution = Math.max(0, ...contributions.map((c) => Math.abs(c.contribution)));
  const topNode = contributions.find((c) => c.contribution > 0)?.node;
  const markerId = `whyslow-arrow-${useId().replace(/[^a-zA-Z0-9_-]/g, '')}`;
  const { nodeWidth: w, nodeHeight: h } = layout;

  return (
    <figure className={styles.figure} data-testid="whyslow-graph">
      <figcaption className={styles.caption}>Causal graph · callee → caller</figcaption>
      <div className={styles.scroll}>
        <svg
          viewBox={`0 0 ${layout.width} ${layout.height}`}
          width="100%"
          style={{ maxHeight: Math.max(maxHeight, layout.height * MIN_SCALE), maxWidth: layout.width * 1.25, minWidth: layout.width * MIN_SCALE }}
          preserveAspectRatio="xMidYMin meet"
          role="img"
          aria-label="Causal graph of the trace's services"
        >
          <defs>
            <marker id={markerId} viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">
              <path d="M0,0 L10,5 L0,10 z" fill={colors.edge} />
            </marker>
          </defs>
          {layout.edges.map((e) => {
            const propagated =
              !!failure && failure.failed.has(e.source) && !failure.handled.has(e.source) && failure.failed.has(e.target);
            return (
              <path
                key={`${e.source}->${e.target}`}
                d={e.path}
                fill="none"
                stroke={propagated ? colors.top : colors.edge}
                strokeWidth={propagated ? 3 : 1.4}
                markerEnd={`url(#${markerId})`}
                data-testid="whyslow-graph-edge"
                data-propagation={propagated || undefined}
              />
            );
          })}
          {layout.nodes.map((n) => {
            const c = byNode.get(n.id);
            const names = c ? { service: c.service, operation: c.operation } : splitNodeId(n.id);
            const isTop = n.id === topNode;
            const isEntry = n.id === entry;
            const isFailed = !!failure?.failed.has(n.id);
            const isHandled = !!failure?.handled.has(n.id);
            const stroke = isTop || isFailed ? colors.top : isEntry ? colors.entry : theme.colors.border.medium;
            return (
              <g
              key={n.id}
              transform={`translate(${n.x},${n.y})`}
              data-testid="whyslow-graph-node"
              data-node={n.id}
              data-highlighted={highlighted === n.id || undefined}
              data-failed={isFailed || undefined}
              data-handled={isHandled || undefined}
              onMouseEnter={() => onHover?.(n.id)}
              onMouseLeave={() => onHover?.(null)}
            >
                <title>
                  {n.id}
                  {c ? `\ncontribution ${formatNats(c.contribution)} nats ${formatShare(c.share)}` : ''}
                  {isEntry ? `\nentry point (the ${failure ? 'failed' : 'slow'} request)` : ''}
                  {isHandled ? '\nfailed, handled by its caller' : isFailed ? '\nfailed' : ''}
                </title>
                <rect
                  width={w}
                  height={h}
                  rx={6}
                  fill={nodeFill(theme, c ? c.contribution : null, maxContribution, isTop)}
                  stroke={highlighted === n.id ? theme.colors.text.primary : stroke}
                  strokeWidth={highlighted === n.id ? 3 : isTop || isEntry || isFailed ? 2 : 1}
                  strokeDasharray={isHandled ? '5 3' : undefined}
                />
                <text x={w / 2} y={19} textAnchor="middle" className={styles.service}>
                  {clip(names.service)}
                  {c?.kind === 'call_gap' ? ' (net)' : ''}
                </text>
                <text x={w / 2} y={35} textAnchor="middle" className={styles.operation}>
                  {clip(names.operation)}
                </text>
              </g>
            );
          })}
        </svg>
      </div>
    </figure>
  );
};

const getStyles = (theme: GrafanaTheme2) => ({
  figure: css({ margin: 0, minWidth: 0, display: 'flex', flexDirection: 'column', gap: theme.spacing(0.5) }),
  scroll: css({ overflow: 'auto', maxWidth: '100%' }),
  caption: css({
    fontSize: theme.typography.bodySmall.fontSize,
    color: theme.colors.text.secondary,
    textTransform: 'uppercase',
    letterSpacing: '0.04em',
  }),
  service: css({ fill: theme.colors.text.primary, fontSize: 14, fontWeight: theme.typography.fontWeightMedium }),
  operation: css({ fill: theme.colors.text.secondary, fontSize: 12 }),
});
