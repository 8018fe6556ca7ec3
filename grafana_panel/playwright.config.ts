// @grafana/plugin-e2e specs against a real Grafana (the compose stack in deploy/, or any Grafana with the panel,
// the whyslow data source and the provisioned dashboard). They run only with GRAFANA_URL set and are reported as
// skipped otherwise (`npm run e2e`, or tests/panel/test_grafana_e2e.py). Browser: Debian's chromium when present.
import type { PluginOptions } from '@grafana/plugin-e2e';
import { defineConfig, devices } from '@playwright/test';
import { existsSync } from 'fs';
import path from 'path';

const chromium = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
// Without a Grafana there is nobody to sign in to: no auth project, and the specs skip themselves.
const grafana = Boolean(process.env.GRAFANA_URL);

export default defineConfig<PluginOptions>({
  testDir: './e2e',
  timeout: 60_000,
  retries: 0,
  reporter: [['list']],
  use: {
    baseURL: process.env.GRAFANA_URL,
    grafanaAPICredentials: {
      user: process.env.GRAFANA_ADMIN_USER ?? 'admin',
      password: process.env.GRAFANA_ADMIN_PASSWORD ?? 'admin',
    },
    provisioningRootDir: path.join(__dirname, '../deploy/grafana/provisioning'),
    launchOptions: existsSync(chromium) ? { executablePath: chromium, args: ['--no-sandbox'] } : {},
    screenshot: 'only-on-failure',
  },
  projects: grafana
    ? [
        { name: 'auth', testDir: './node_modules/@grafana/plugin-e2e/dist/auth', testMatch: [/.*\.js/] },
        {
          name: 'grafana',
          use: { ...devices['Desktop Chrome'], storageState: 'playwright/.auth/admin.json' },
          dependencies: ['auth'],
        },
      ]
    : [{ name: 'grafana', use: { ...devices['Desktop Chrome'] } }],
});
