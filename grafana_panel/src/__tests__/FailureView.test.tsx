import { createTheme, ThemeContext } from '@grafana/data';
import { render, screen } from '@testing-library/react';
import React from 'react';

import { frames, panelData, panelProps, Table } from '../__fixtures__/frames';
import { RootCausePanel } from '../components/RootCausePanel';

const cols = (names: string[]) => names.map((text) => ({ text, type: 'string' }));
const SUMMARY = ['status', 'message', 'trace_id', 'entry', 'target_latency_ms', 'outlier_score', 'rarer_than', 'model_traces', 'kind'];
const CONTRIB = ['rank', 'node', 'service', 'operation', 'kind', 'contribution', 'share', 'contribution_lo', 'contribution_hi',
  'own_latency_ms', 'node_latency_ms', 'counterfactual_latency_ms', 'failed', 'own_failure', 'success_without', 'handled'];

/** A failed checkout: payments failed on its own and the frontend passed it on; a cart call failed but the
 * frontend's retry recovered (handled). Contributions sum to the score (as the backend computes them). */
function errorTables(): Table[] {
  const row = (rank: number, node: string, c: number, failed: number, own: number, success: number, handled: number) => {
    const [service, operation] = node.startsWith('net:') ? [node.split(':')[1], node.split(':')[2]] : node.split(':');
    return [rank, node, service, operation, node.startsWith('net:') ? 'call_gap' : 'span', c, c / 7.0, null, null, 1, 1, null,
      failed, own, success, handled];
  };
  return [
    { type: 'table', columns: cols(SUMMARY), rows: [['ok', 'failed', 'ab'.repeat(16), 'frontend:GET /checkout', 30, 7.0, 1097, 500, 'error']] },
    {
      type: 'table',
      columns: cols(CONTRIB),
      rows: [
        row(1, 'payments:POST /pay', 6.5, 1, 1.0, 1.0, 0),
        row(2, 'net:payments:POST /pay', 0.3, 1, 0.0, 0.0, 0),
        row(3, 'frontend:GET /checkout', 0.2, 1, 0.0, 0.0, 0),
        row(4, 'cart:GET /cart', 0.0, 1, 1.0, 0.0, 1),
      ],
    },
    {
      type: 'table',
      columns: cols(['source', 'target', 'source_contribution']),
      rows: [
        ['payments:POST /pay', 'net:payments:POST /pay', 6.5],
        ['net:payments:POST /pay', 'frontend:GET /checkout', 0.3],
        ['cart:GET /cart', 'frontend:GET /checkout', 0],
      ],
    },
  ];
}

describe('RootCausePanel with an error explanation', () => {
  it('asks why the request failed, names the originating service first, draws the propagation, sets handled errors apart', () => {
    const props = panelProps(panelData(frames(errorTables())), {}, { width: 1200, height: 700 });
    const { container } = render(
      <ThemeContext.Provider value={createTheme({ colors: { mode: 'dark' } })}>
        <RootCausePanel {...props} />
      </ThemeContext.Provider>
    );
    expect(screen.getByTestId('whyslow-failure')).toHaveTextContent('Why did this request fail?');
    expect(screen.queryByTestId('whyslow-target')).toBeNull();
    const origins = screen.getAllByTestId('whyslow-failure-origin');
    expect(origins[0]).toHaveAttribute('data-service', 'payments');
    expect(screen.getByTestId('whyslow-failure-verdict')).toHaveTextContent('succeeded with probability 100 %');
    expect(screen.getByTestId('whyslow-failure-handled')).toHaveTextContent('cart GET /cart');
    expect(screen.getByTestId('whyslow-failure-propagated')).toHaveTextContent('frontend GET /checkout');
    const node = (id: string) => container.querySelector(`[data-testid="whyslow-graph-node"][data-node="${id}"]`);
    expect(node('cart:GET /cart')).toHaveAttribute('data-handled', 'true');
    expect(node('cart:GET /cart')?.querySelector('rect')).toHaveAttribute('stroke-dasharray', '5 3');
    expect(node('payments:POST /pay')).toHaveAttribute('data-failed', 'true');
    expect(node('payments:POST /pay')).not.toHaveAttribute('data-handled');
    // the propagation path: payments -> its call -> the frontend; the handled cart error did not travel
    const propagated = container.querySelectorAll('[data-testid="whyslow-graph-edge"][data-propagation="true"]');
    expect(propagated.length).toBe(2);
  });
});
