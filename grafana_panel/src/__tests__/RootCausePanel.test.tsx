import { createTheme, LoadingState, ThemeContext, toDataFrame } from '@grafana/data';
import { fireEvent, render, screen, within } from '@testing-library/react';
import React from 'react';

import { frames, okTables, panelData, panelProps, summaryOnly, Table } from '../__fixtures__/frames';
import { RootCausePanel } from '../components/RootCausePanel';
import { PanelOptions } from '../types';

function renderPanel(tables: Table[], options: Partial<PanelOptions> = {}, mode: 'dark' | 'light' = 'dark', width = 1000) {
  const props = panelProps(panelData(frames(tables)), options, { width, height: 600 });
  return render(
    <ThemeContext.Provider value={createTheme({ colors: { mode } })}>
      <RootCausePanel {...props} />
    </ThemeContext.Provider>
  );
}

function column(table: Table, name: string): unknown[] {
  const i = table.columns.findIndex((c) => c.text === name);
  return table.rows.map((r) => r[i]);
}

function bars() {
  return screen.queryAllByTestId('whyslow-bar');
}

describe('RootCausePanel with an explanation', () => {
  it('ranks the bars by contribution with service/operation labels', () => {
    renderPanel(okTables(), { topK: 10 });
    const rows = bars();
    const contributions = okTables()[1];
    expect(rows).toHaveLength(contributions.rows.length);
    expect(rows.map((r) => r.getAttribute('data-rank'))).toEqual(column(contributions, 'rank').map(String));
    expect(rows[0]).toHaveAttribute('data-node', 'payment:Charge');
    expect(within(rows[0]).getByText('payment')).toBeInTheDocument();
    expect(within(rows[0]).getByText(/Charge/)).toBeInTheDocument();
    expect(rows[1]).toHaveAttribute('data-service', 'postgres');
    expect(within(rows[1]).getByText('database')).toBeInTheDocument();
    expect(within(rows[2]).getByText('network')).toBeInTheDocument();
    // bar lengths follow the contributions: larger contribution, wider bar
    const widths = rows.map((r) => parseFloat((within(r).getByTestId('whyslow-bar-fill') as HTMLElement).style.width));
    const values = column(contributions, 'contribution') as number[];
    for (let i = 1; i < widths.length; i++) {
      expect(Math.sign(widths[i - 1] - widths[i])).toBe(Math.sign(Math.abs(values[i - 1]) - Math.abs(values[i])) || 0);
    }
  });

  it('orders by rank even when the rows arrive shuffled', () => {
    const tables = okTables();
    tables[1].rows.reverse();
    renderPanel(tables, { topK: 3 });
    expect(bars().map((r) => r.getAttribute('data-node'))).toEqual(['payment:Charge', 'postgres:SELECT orders', 'net:inventory:Reserve']);
  });

  it('shows the target: entry point, latency, outlier score and rarity', () => {
    renderPanel(okTables());
    expect(screen.getByTestId('whyslow-entry')).toHaveTextContent('frontend GET /checkout');
    expect(screen.getByTestId('whyslow-latency')).toHaveTextContent('1.84 s');
    expect(screen.getByTestId('whyslow-score')).toHaveTextContent('9.3 nats');
    // rarer_than = exp(9.3) = 10938.0 -> three significant digits
    expect(screen.getByTestId('whyslow-rarity')).toHaveTextContent('1 in 10,900 requests');
    expect(screen.getByTestId('whyslow-verdict')).toHaveTextContent(/payment Charge explains 66% of how unusual/);
    expect(screen.getByTestId('whyslow-verdict')).toHaveTextContent('would have taken 612 ms');
  });

  it('says "more than all" when the top share exceeds the score', () => {
    const tables = okTables();
    const share = tables[1].columns.findIndex((c) => c.text === 'share');
    tables[1].rows[0][share] = 2.36;
    renderPanel(tables);
    expect(screen.getByTestId('whyslow-verdict')).toHaveTextContent('explains more than all of how unusual this request is (236% of the score');
  });

  it('labels each bar with own latency and the counterfactual latency', () => {
    renderPanel(okTables());
    const first = bars()[0];
    expect(within(first).getByTestId('whyslow-bar-detail')).toHaveTextContent('own 1.21 s of 1.29 s');
    expect(within(first).getByTestId('whyslow-counterfactual')).toHaveTextContent('would have taken 612 ms if this were normal');
    expect(within(first).getByTestId('whyslow-bar-value')).toHaveTextContent('6.1');
  });

  it('draws interval whiskers spanning lo..hi, and hides them when asked', () => {
    const { unmount } = renderPanel(okTables(), { topK: 3 });
    const table = okTables()[1];
    const whiskers = screen.getAllByTestId('whyslow-whisker');
    expect(whiskers).toHaveLength(3);
    whiskers.forEach((w, i) => {
      expect(Number(w.getAttribute('data-lo'))).toBeCloseTo(column(table, 'contribution_lo')[i] as number);
      expect(Number(w.getAttribute('data-hi'))).toBeCloseTo(column(table, 'contribution_hi')[i] as number);
    });
    // the whisker of the top bar contains the end of its bar
    const bar = within(bars()[0]).getByTestId('whyslow-bar-fill') as HTMLElement;
    const end = parseFloat(bar.style.left) + parseFloat(bar.style.width);
    const w0 = whiskers[0] as HTMLElement;
    expect(parseFloat(w0.style.left)).toBeLessThanOrEqual(end);
    expect(parseFloat(w0.style.left) + parseFloat(w0.style.width)).toBeGreaterThanOrEqual(end);
    unmount();
    renderPanel(okTables(), { topK: 3, showIntervals: false });
    expect(screen.queryAllByTestId('whyslow-whisker')).toHaveLength(0);
  });

  it('has no whiskers when the backend computed no intervals', () => {
    const tables = okTables();
    const lo = tables[1].columns.findIndex((c) => c.text === 'contribution_lo');
    tables[1].rows.forEach((r) => {
      r[lo] = null;
      r[lo + 1] = null;
    });
    renderPanel(tables);
    expect(bars().length).toBeGreaterThan(0);
    expect(screen.queryAllByTestId('whyslow-whisker')).toHaveLength(0);
  });

  it('explains green bars only when a negative contribution is shown', () => {
    const { unmount } = renderPanel(okTables(), { topK: 3 });
    expect(screen.queryByTestId('whyslow-negative-note')).toBeNull();
    unmount();
    renderPanel(okTables(), { topK: 10 });
    expect(screen.getByTestId('whyslow-negative-note')).toHaveTextContent('more normal');
  });

  it('limits the bars to top-k and sums the rest', () => {
    renderPanel(okTables(), { topK: 2 });
    expect(bars()).toHaveLength(2);
    const values = column(okTables()[1], 'contribution') as number[];
    const rest = values.slice(2).reduce((a, b) => a + b, 0);
    const text = screen.getByTestId('whyslow-rest').textContent ?? '';
    const m = text.match(/\+ 5 more nodes: ([-\d.]+) nats \(([-\d.]+)%\) together/);
    expect(m).not.toBeNull();
    expect(Number(m![1])).toBeCloseTo(rest, 2);
    expect(Number(m![2])).toBeCloseTo((100 * rest) / 9.3, 0);
  });

  it('writes latencies in the chosen unit', () => {
    const { unmount } = renderPanel(okTables(), { units: 'ms' });
    expect(screen.getByTestId('whyslow-latency')).toHaveTextContent('1,843 ms');
    unmount();
    renderPanel(okTables(), { units: 's' });
    expect(screen.getByTestId('whyslow-latency')).toHaveTextContent('1.84 s');
    expect(within(bars()[0]).getByTestId('whyslow-counterfactual')).toHaveTextContent('0.61 s');
  });

  it('draws the causal graph with one node per node id and one edge per causal edge', () => {
    renderPanel(okTables());
    const nodes = screen.getAllByTestId('whyslow-graph-node').map((n) => n.getAttribute('data-node'));
    expect(new Set(nodes)).toEqual(new Set(column(okTables()[1], 'node')));
    expect(screen.getAllByTestId('whyslow-graph-edge')).toHaveLength(okTables()[2].rows.length);
  });

  it('highlights a node in the graph while its bar is hovered, and the bar while its node is', () => {
    renderPanel(okTables());
    const node = (id: string) => screen.getAllByTestId('whyslow-graph-node').find((n) => n.getAttribute('data-node') === id)!;
    fireEvent.mouseEnter(bars()[1]);
    expect(node('postgres:SELECT orders')).toHaveAttribute('data-highlighted', 'true');
    expect(node('payment:Charge')).not.toHaveAttribute('data-highlighted');
    fireEvent.mouseLeave(bars()[1]);
    expect(node('postgres:SELECT orders')).not.toHaveAttribute('data-highlighted');
    fireEvent.mouseEnter(node('payment:Charge'));
    expect(bars()[0]).toHaveAttribute('data-highlighted', 'true');
  });

  it('hides the graph when the option is off', () => {
    renderPanel(okTables(), { showGraph: false });
    expect(screen.queryByTestId('whyslow-graph')).toBeNull();
    expect(bars().length).toBeGreaterThan(0);
  });

  it('renders under the light theme and in a narrow panel', () => {
    renderPanel(okTables(), {}, 'light', 420);
    expect(screen.getByTestId('whyslow-panel')).toHaveAttribute('data-status', 'ok');
    expect(bars()[0]).toHaveAttribute('data-node', 'payment:Charge');
  });
});

describe('RootCausePanel states', () => {
  function renderData(data: ReturnType<typeof panelData>) {
    return render(<RootCausePanel {...panelProps(data)} />);
  }

  const state = () => screen.getByTestId('whyslow-state');

  it('loading', () => {
    renderData(panelData([], { state: LoadingState.Loading }));
    expect(state()).toHaveAttribute('data-state', 'loading');
    expect(bars()).toHaveLength(0);
  });

  it('no trace selected: empty result', () => {
    renderData(panelData([]));
    expect(state()).toHaveAttribute('data-state', 'no_trace');
    expect(state()).toHaveTextContent('No trace selected');
  });

  it('no trace selected: backend status', () => {
    renderData(panelData(frames(summaryOnly('no_trace', 'no trace id given'))));
    expect(state()).toHaveAttribute('data-state', 'no_trace');
  });

  it('unknown trace', () => {
    renderData(panelData(frames(summaryOnly('unknown_trace', 'trace abc is not in the store'))));
    expect(state()).toHaveAttribute('data-state', 'unknown_trace');
    expect(state()).toHaveTextContent('Trace not found');
    expect(screen.getByTestId('whyslow-state-message')).toHaveTextContent('trace abc is not in the store');
  });

  it('model still learning, with the number of traces learned from', () => {
    renderData(panelData(frames(summaryOnly('learning', 'needs 200 traces', { model_traces: 57 }))));
    expect(state()).toHaveAttribute('data-state', 'learning');
    expect(state()).toHaveTextContent('Still learning');
    expect(state()).toHaveTextContent('Traces learned from so far: 57');
  });

  it('not an outlier', () => {
    renderData(panelData(frames(summaryOnly('not_outlier', '', { target_latency_ms: 120.5, outlier_score: 0.4, rarer_than: 1.5 }))));
    expect(state()).toHaveAttribute('data-state', 'not_outlier');
    expect(state()).toHaveTextContent('Not an outlier');
    expect(state()).toHaveTextContent('121 ms');
    expect(bars()).toHaveLength(0);
  });

  it('backend error status', () => {
    renderData(panelData(frames(summaryOnly('error', 'model file is corrupt'))));
    expect(state()).toHaveAttribute('data-state', 'error');
    expect(screen.getByRole('alert')).toHaveTextContent('model file is corrupt');
  });

  it('data source errors', () => {
    renderData(panelData([], { state: LoadingState.Error, errors: [{ message: 'Bad Gateway', status: 502 }] }));
    expect(state()).toHaveAttribute('data-state', 'error');
    expect(screen.getByTestId('whyslow-state-message')).toHaveTextContent('Bad Gateway');
  });

  it('frames that are not whyslow frames', () => {
    renderData(panelData([toDataFrame({ columns: [{ text: 'value', type: 'number' }], rows: [[1]] })]));
    expect(state()).toHaveAttribute('data-state', 'no_data');
  });

  it('keeps showing the explanation while a refresh loads', () => {
    renderData(panelData(frames(okTables()), { state: LoadingState.Loading }));
    expect(screen.getByTestId('whyslow-panel')).toHaveAttribute('data-status', 'ok');
  });
});

describe('RootCausePanel backend error tables', () => {
  it('shows the message of an {error} table', () => {
    render(<RootCausePanel {...panelProps(panelData([toDataFrame({ columns: [{ text: 'error' }], rows: [["unknown target 'x'"]] })]))} />);
    expect(screen.getByTestId('whyslow-state')).toHaveAttribute('data-state', 'error');
    expect(screen.getByTestId('whyslow-state-message')).toHaveTextContent("unknown target 'x'");
  });
});
