/** Test fixtures: JSON-datasource table responses turned into PanelProps exactly as Grafana would. */
import {
  DataFrame,
  EventBusSrv,
  getDefaultTimeRange,
  LoadingState,
  PanelData,
  PanelProps,
  toDataFrame,
} from '@grafana/data';

import { defaultOptions, PanelOptions } from '../types';
import outliersJson from './outliers.json';
import rcaOk from './rca-ok.json';

export interface Table {
  type: string;
  columns: Array<{ text: string; type: string }>;
  rows: unknown[][];
}

export const okTables = (): Table[] => JSON.parse(JSON.stringify(rcaOk));
export const outlierTables = (): Table[] => JSON.parse(JSON.stringify(outliersJson));

export function frames(tables: Table[]): DataFrame[] {
  return tables.map((t) => toDataFrame(t));
}

/** Summary table of the fixture with `status`/`message` replaced. */
export function summaryOnly(status: string, message = '', patch: Record<string, unknown> = {}): Table[] {
  const [summary] = okTables();
  const names = summary.columns.map((c) => c.text);
  summary.rows[0][names.indexOf('status')] = status;
  summary.rows[0][names.indexOf('message')] = message;
  for (const [k, v] of Object.entries(patch)) {
    summary.rows[0][names.indexOf(k)] = v;
  }
  return [summary];
}

export function panelData(series: DataFrame[], extra: Partial<PanelData> = {}): PanelData {
  return { state: LoadingState.Done, series, timeRange: getDefaultTimeRange(), ...extra };
}

export function panelProps(data: PanelData, options: Partial<PanelOptions> = {}, size = { width: 1000, height: 600 }): PanelProps<PanelOptions> {
  return {
    id: 1,
    data,
    timeRange: data.timeRange,
    timeZone: 'browser',
    options: { ...defaultOptions, ...options },
    onOptionsChange: () => undefined,
    fieldConfig: { defaults: {}, overrides: [] },
    onFieldConfigChange: () => undefined,
    transparent: false,
    width: size.width,
    height: size.height,
    renderCounter: 0,
    title: 'whyslow',
    eventBus: new EventBusSrv(),
    replaceVariables: (s: string) => s,
    onChangeTimeRange: () => undefined,
  };
}
