// Runs after `webpack` in `npm run build`: loads dist/module.js the way Grafana does (an AMD module whose
// dependencies Grafana provides), checks it only asks for modules Grafana shares with plugins, and renders the
// production bundle's panel on fixture frames.
import { createTheme, PanelPlugin, ThemeContext } from '@grafana/data';
import { render, screen } from '@testing-library/react';
import fs from 'fs';
import path from 'path';
import React from 'react';

import pkg from '../package.json';
import { frames, okTables, panelData, panelProps } from '../src/__fixtures__/frames';

const DIST = path.join(__dirname, '..', 'dist');
// Modules Grafana's SystemJS loader exposes to plugins (a subset is enough for this panel).
const GRAFANA_SHARED = new Set([
  'react',
  'react-dom',
  '@grafana/data',
  '@grafana/ui',
  '@grafana/runtime',
  '@grafana/schema',
  '@emotion/css',
  '@emotion/react',
  'lodash',
  'rxjs',
  'moment',
]);

function loadAmd(file: string): { deps: string[]; exports: Record<string, unknown> } {
  const code = fs.readFileSync(file, 'utf8');
  let deps: string[] = [];
  let exports: Record<string, unknown> = {};
  const define = (d: string[], factory: (...mods: unknown[]) => Record<string, unknown>) => {
    deps = d;
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- what Grafana's loader hands to define()
    exports = factory(...d.map((name) => require(name)));
  };
  new Function('define', code)(define);
  return { deps, exports };
}

describe('dist/', () => {
  it('has the files Grafana needs, with the version filled in', () => {
    for (const file of ['module.js', 'plugin.json', 'img/logo.svg', 'README.md']) {
      expect(fs.existsSync(path.join(DIST, file))).toBe(true);
    }
    const meta = JSON.parse(fs.readFileSync(path.join(DIST, 'plugin.json'), 'utf8'));
    expect(meta).toMatchObject({ type: 'panel', id: 'whyslow-rootcause-panel' });
    expect(meta.info.version).toBe(pkg.version);
    expect(meta.info.updated).toMatch(/^\d{4}-\d{2}-\d{2}$/);
  });

  it('module.js is an AMD module that exports the panel plugin', () => {
    const { deps, exports } = loadAmd(path.join(DIST, 'module.js'));
    expect(deps.filter((d) => !GRAFANA_SHARED.has(d))).toEqual([]);
    const plugin = exports.plugin as PanelPlugin;
    expect(plugin).toBeInstanceOf(PanelPlugin);
    const Panel = plugin.panel!;
    render(
      <ThemeContext.Provider value={createTheme({ colors: { mode: 'light' } })}>
        <Panel {...panelProps(panelData(frames(okTables())))} />
      </ThemeContext.Provider>
    );
    const bars = screen.getAllByTestId('whyslow-bar');
    expect(bars[0]).toHaveAttribute('data-node', 'payment:Charge');
    expect(bars).toHaveLength(5);
  });
});
