/** Panel options (stored in the dashboard JSON) and the explanation model read from the data frames. */

export type LatencyUnit = 'auto' | 'ms' | 's';

export interface PanelOptions {
  /** How many contributors get a bar; the rest are summed in one line. */
  topK: number;
  /** Draw the bootstrap interval of each contribution as a whisker. */
  showIntervals: boolean;
  /** How latencies are written. */
  units: LatencyUnit;
  /** Show the causal graph beside the bars. */
  showGraph: boolean;
}

export const defaultOptions: PanelOptions = {
  topK: 5,
  showIntervals: true,
  units: 'auto',
  showGraph: true,
};

/** `status` of the summary frame (docs/ARCHITECTURE.md, "The explanation frames"). */
export type RcaStatus = 'ok' | 'no_trace' | 'unknown_trace' | 'learning' | 'not_outlier' | 'error';

export const RCA_STATUSES: readonly RcaStatus[] = ['ok', 'no_trace', 'unknown_trace', 'learning', 'not_outlier', 'error'];

export interface Summary {
  status: RcaStatus;
  message: string;
  traceId: string;
  entry: string;
  targetLatencyMs: number | null;
  outlierScore: number | null;
  rarerThan: number | null;
  modelTraces: number | null;
  /** `latency` (why slow; absent before errors existed) or `error` (why the request failed). */
  kind: 'latency' | 'error';
}

export interface Contribution {
  rank: number;
  node: string;
  service: string;
  operation: string;
  kind: string;
  /** nats; Shapley value, may be negative. */
  contribution: number;
  share: number | null;
  lo: number | null;
  hi: number | null;
  ownLatencyMs: number | null;
  nodeLatencyMs: number | null;
  counterfactualLatencyMs: number | null;
  /** Error explanations only (null otherwise): the node failed in this trace. */
  failed: boolean | null;
  /** P(it failed on its own, not through a failing callee). */
  ownFailure: number | null;
  /** P(the request succeeds) had it not failed on its own. */
  successWithout: number | null;
  /** It failed and its caller recovered (a handled error). */
  handled: boolean | null;
}

export interface CausalEdge {
  /** cause (callee) node id */
  source: string;
  /** effect (caller) node id */
  target: string;
  sourceContribution: number | null;
}

export interface Explanation {
  summary: Summary | null;
  contributions: Contribution[];
  edges: CausalEdge[];
}
