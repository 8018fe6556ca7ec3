/** Which of the panel's states a query result is in (loading, error, no trace, ..., ok). */
import { DataQueryError, LoadingState, PanelData } from '@grafana/data';

import { frameError } from './frames';
import { Explanation } from './types';

export type ViewKind = 'loading' | 'error' | 'no_trace' | 'unknown_trace' | 'learning' | 'not_outlier' | 'no_data' | 'ok';

export interface ViewState {
  kind: ViewKind;
  message: string;
}

function errorText(errors: DataQueryError[]): string {
  const texts = errors
    .map((e) => e.message || e.data?.message || (e.status ? `HTTP ${e.status} ${e.statusText ?? ''}`.trim() : ''))
    .filter((t) => t);
  return texts.length ? Array.from(new Set(texts)).join('; ') : 'The whyslow data source returned an error.';
}

export function viewState(data: PanelData, explanation: Explanation): ViewState {
  const summary = explanation.summary;
  const errors = [...(data.errors ?? []), ...(data.error ? [data.error] : [])];
  if (errors.length || data.state === LoadingState.Error) {
    return { kind: 'error', message: errorText(errors) };
  }
  if (data.state === LoadingState.Loading && !summary) {
    return { kind: 'loading', message: 'Explaining this trace…' };
  }
  if (!summary) {
    const backendError = frameError(data.series);
    if (backendError) {
      return { kind: 'error', message: backendError };
    }
    if (data.series.length === 0) {
      return { kind: 'no_trace', message: '' };
    }
    return {
      kind: 'no_data',
      message: 'This query did not return whyslow explanation frames. Query the whyslow JSON API data source with the target "rca".',
    };
  }
  if (summary.status === 'error') {
    return { kind: 'error', message: summary.message || 'The whyslow backend could not explain this trace.' };
  }
  return { kind: summary.status, message: summary.message };
}
