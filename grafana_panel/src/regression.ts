/**
 * Reads the regression frames of the data source's `regression` target (plugin/README.md): a one-row summary
 * (fields `observed_change`, `modelled_change`, ...) and one row per changed node. Recognised by field names.
 */
import { DataFrame } from '@grafana/data';

import { hasFields, num, rows, str } from './frames';

export const REGRESSION_SUMMARY_FIELDS = ['status', 'observed_change', 'modelled_change'];
export const REGRESSION_ROW_FIELDS = ['rank', 'node', 'contribution', 'change_kind'];

export interface RegressionSummary {
  status: string;
  message: string;
  entry: string;
  stat: string;
  unit: string;
  baselineValue: number | null;
  comparisonValue: number | null;
  observedChange: number | null;
  modelledChange: number | null;
  unexplained: number | null;
  noiseFloor: number | null;
  significant: boolean;
  baselineSource: string;
  baselineTraces: number | null;
  windowTraces: number | null;
}

export interface RegressionRow {
  rank: number;
  service: string;
  node: string;
  kind: string;
  changeKind: string;
  contribution: number;
  lo: number | null;
  hi: number | null;
  counterfactual: number | null;
}

export interface Regression {
  summary: RegressionSummary;
  rows: RegressionRow[];
}

/** The regression in a query result, or null when the result holds no regression summary. */
export function parseRegression(series: DataFrame[]): Regression | null {
  const summaryFrame = series.find((f) => hasFields(f, REGRESSION_SUMMARY_FIELDS));
  const first = summaryFrame ? rows(summaryFrame)[0] : undefined;
  if (!first) {
    return null;
  }
  const summary: RegressionSummary = {
    status: str(first('status')) || 'error',
    message: str(first('message')),
    entry: str(first('entry')),
    stat: str(first('stat')) || 'p99',
    unit: str(first('unit')) || 'ms',
    baselineValue: num(first('baseline_value')),
    comparisonValue: num(first('comparison_value')),
    observedChange: num(first('observed_change')),
    modelledChange: num(first('modelled_change')),
    unexplained: num(first('unexplained')),
    noiseFloor: num(first('noise_floor')),
    significant: num(first('significant')) === 1,
    baselineSource: str(first('baseline_source')),
    baselineTraces: num(first('baseline_traces')),
    windowTraces: num(first('window_traces')),
  };
  const out: RegressionRow[] = [];
  for (const frame of series.filter((f) => hasFields(f, REGRESSION_ROW_FIELDS))) {
    for (const row of rows(frame)) {
      const contribution = num(row('contribution'));
      if (contribution === null || !str(row('node'))) {
        continue;
      }
      out.push({
        rank: num(row('rank')) ?? out.length + 1,
        service: str(row('service')),
        node: str(row('node')),
        kind: str(row('kind')) || 'span',
        changeKind: str(row('change_kind')) || 'changed',
        contribution,
        lo: num(row('contribution_lo')),
        hi: num(row('contribution_hi')),
        counterfactual: num(row('counterfactual')),
      });
    }
  }
  return { summary, rows: out.sort((a, b) => a.rank - b.rank) };
}
