import { createTheme, ThemeContext } from '@grafana/data';
import { render, screen, within } from '@testing-library/react';
import React from 'react';

import { frames, panelData, panelProps, Table } from '../__fixtures__/frames';
import regressionOk from '../__fixtures__/regression-ok.json';
import { RootCausePanel } from '../components/RootCausePanel';
import { parseRegression } from '../regression';

const tables = (): Table[] => JSON.parse(JSON.stringify(regressionOk));

function renderPanel(t: Table[], topK = 10) {
  const props = panelProps(panelData(frames(t)), { topK }, { width: 900, height: 500 });
  return render(
    <ThemeContext.Provider value={createTheme({ colors: { mode: 'dark' } })}>
      <RootCausePanel {...props} />
    </ThemeContext.Provider>
  );
}

describe('regression frames', () => {
  it('parses the summary and the ranked rows', () => {
    const r = parseRegression(frames(tables()));
    expect(r).not.toBeNull();
    expect(r!.summary.stat).toBe('p99');
    expect(r!.summary.observedChange).toBeCloseTo(82.2);
    expect(r!.summary.significant).toBe(true);
    expect(r!.rows.map((x) => x.service)).toEqual(['cart', 'payments', 'fraud', 'frontend']);
    expect(r!.rows[2].changeKind).toBe('new');
  });

  it('is not mistaken for an explanation, and an explanation is not a regression', () => {
    expect(parseRegression(frames([tables()[1]]))).toBeNull();
  });
});

describe('RootCausePanel with a regression', () => {
  it('shows observed vs explained change, bars in ms with intervals and counterfactuals', () => {
    renderPanel(tables());
    const panel = screen.getByTestId('whyslow-panel');
    expect(panel).toHaveAttribute('data-status', 'regression');
    expect(screen.getByTestId('whyslow-regression')).toHaveAttribute('data-status', 'changed');
    expect(screen.getByTestId('whyslow-regression-observed')).toHaveTextContent('+82.2 ms');
    expect(screen.getByTestId('whyslow-regression-explained')).toHaveTextContent('+79.5 ms');
    const rows = screen.getAllByTestId('whyslow-regression-row');
    expect(rows.map((r) => r.getAttribute('data-service'))).toEqual(['cart', 'payments', 'fraud', 'frontend']);
    expect(within(rows[0]).getByTestId('whyslow-regression-value')).toHaveTextContent('+61.3 ms');
    expect(within(rows[0]).getByText(/p99 would be 201 ms had this not changed/)).toBeInTheDocument();
    expect(within(rows[2]).getByText(/new call/)).toBeInTheDocument();
    expect(within(rows[3]).getByTestId('whyslow-regression-value')).toHaveTextContent('−3.1 ms');
  });

  it('writes an error-rate change in percent and percentage points, not ms', () => {
    const rate = tables();
    const names = rate[0].columns.map((c) => c.text);
    const row = rate[0].rows[0];
    row[names.indexOf('stat')] = 'error_rate';
    row[names.indexOf('unit')] = 'percentage_points';
    row[names.indexOf('baseline_value')] = 1.0;
    row[names.indexOf('comparison_value')] = 10.25;
    row[names.indexOf('observed_change')] = 9.25;
    renderPanel(rate);
    const summary = screen.getByTestId('whyslow-regression');
    expect(summary).toHaveTextContent('1.00% → 10.25%');
    expect(screen.getByTestId('whyslow-regression-observed')).toHaveTextContent('+9.25 pp');
    const first = screen.getAllByTestId('whyslow-regression-row')[0];
    expect(within(first).getByTestId('whyslow-regression-value')).toHaveTextContent('+61.30 pp');
    expect(summary).not.toHaveTextContent(' ms');
  });

  it('says when nothing changed beyond the noise floor, and shows backend errors', () => {
    const quiet = tables();
    const names = quiet[0].columns.map((c) => c.text);
    quiet[0].rows[0][names.indexOf('significant')] = 0;
    quiet[1].rows = [];
    renderPanel(quiet);
    expect(screen.getByTestId('whyslow-regression')).toHaveAttribute('data-status', 'no_change');
    expect(screen.getByText('No change beyond resampling noise.')).toBeInTheDocument();
  });

  it('shows the error status message', () => {
    const bad = tables();
    const names = bad[0].columns.map((c) => c.text);
    bad[0].rows[0] = bad[0].rows[0].map(() => null);
    bad[0].rows[0][names.indexOf('status')] = 'error';
    bad[0].rows[0][names.indexOf('message')] = 'the baseline window holds 3 complete traces';
    bad[1].rows = [];
    renderPanel(bad);
    expect(screen.getByTestId('whyslow-regression')).toHaveAttribute('data-status', 'error');
    expect(screen.getByText(/holds 3 complete traces/)).toBeInTheDocument();
  });
});
