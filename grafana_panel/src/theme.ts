/** Colours derived from the Grafana theme, shared by the bars and the graph. */
import { colorManipulator, GrafanaTheme2 } from '@grafana/data';

export interface Palette {
  top: string;
  positive: string;
  negative: string;
  entry: string;
  edge: string;
  text: string;
  muted: string;
}

export function palette(theme: GrafanaTheme2): Palette {
  const v = theme.visualization;
  return {
    top: v.getColorByName('red'),
    positive: v.getColorByName(theme.isDark ? 'orange' : 'dark-orange'),
    negative: v.getColorByName('green'),
    entry: v.getColorByName('blue'),
    edge: theme.colors.border.strong,
    text: theme.colors.text.primary,
    muted: theme.colors.text.secondary,
  };
}

/** Fill of a graph node: the contribution colour, stronger for a larger share of the score. */
export function nodeFill(theme: GrafanaTheme2, contribution: number | null, maxContribution: number, isTop: boolean): string {
  const p = palette(theme);
  if (contribution === null || maxContribution <= 0) {
    return theme.colors.background.secondary;
  }
  const strength = Math.min(1, Math.abs(contribution) / maxContribution);
  const base = contribution < 0 ? p.negative : isTop ? p.top : p.positive;
  return colorManipulator.alpha(base, 0.1 + 0.7 * strength);
}
