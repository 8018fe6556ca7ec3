/**
 * The whyslow panel inside a real Grafana (plugin-e2e): the provisioned dashboard loads the plugin, its panel
 * renders, the panel editor offers the options of the plugin's options builder, and (with WHYSLOW_TRACE_ID set to
 * an explained slow trace, WHYSLOW_EXPECT_SERVICE to the service that was made slow) the first bar names it.
 * Skipped, not passed, without GRAFANA_URL.
 */
import { expect, test } from '@grafana/plugin-e2e';

import pluginJson from '../src/plugin.json';

const DASHBOARD_UID = 'whyslow-rca';
const PANEL_TITLE = 'Why was trace $traceId slow?';

test.skip(!process.env.GRAFANA_URL, 'GRAFANA_URL is not set: these specs need a running Grafana with the whyslow panel');

test('the provisioned dashboard loads the plugin and shows its panel', async ({ gotoDashboardPage, page }) => {
  const traceId = process.env.WHYSLOW_TRACE_ID ?? '';
  const dashboardPage = await gotoDashboardPage({
    uid: DASHBOARD_UID,
    queryParams: new URLSearchParams(traceId ? { 'var-traceId': traceId } : {}),
  });
  const panel = page.getByTestId('whyslow-panel');
  await expect(panel).toBeVisible();
  if (!traceId) {
    await expect(panel).toHaveAttribute('data-status', 'no_trace');
    return;
  }
  await expect(panel).toHaveAttribute('data-status', 'ok');
  const first = page.getByTestId('whyslow-bar').first();
  await expect(first).toHaveAttribute('data-rank', '1');
  if (process.env.WHYSLOW_EXPECT_SERVICE) {
    await expect(first).toHaveAttribute('data-service', process.env.WHYSLOW_EXPECT_SERVICE);
  }
  await expect(dashboardPage.getPanelByTitle(PANEL_TITLE.replace('$traceId', traceId)).locator).toBeVisible();
});

test('the panel editor offers the options builder of the plugin', async ({ panelEditPage, page }) => {
  await panelEditPage.setVisualization('whyslow root cause');
  await expect(page.getByText('Top contributors')).toBeVisible();
  await expect(page.getByText('Show causal graph')).toBeVisible();
  await expect(page.getByText('Latency units')).toBeVisible();
  expect(pluginJson.id).toBe('whyslow-rootcause-panel');
});
