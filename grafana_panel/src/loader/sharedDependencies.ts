/**
 * The modules a Grafana frontend shares with plugins, as its sharedDependencies map names them (the subset a
 * panel built against @grafana/data and @grafana/ui needs: Grafana's own list adds lodash, rxjs, moment, d3,
 * jquery, app/core/* ...). A plugin that imports anything else fails to load here as it would in Grafana.
 */
import * as emotionCss from '@emotion/css';
import * as grafanaData from '@grafana/data';
import * as grafanaUIraw from '@grafana/ui';
import * as React from 'react';
import * as ReactDOM from 'react-dom';
import * as ReactDOMClient from 'react-dom/client';

import { SystemJS } from './systemjs';

// Grafana keeps the 6.4 -> 6.5 migration alias: the plugin base classes are reachable from @grafana/ui too.
const grafanaUI: Record<string, unknown> = { ...grafanaUIraw, PanelPlugin: grafanaData.PanelPlugin };

export const sharedDependencies: Record<string, object> = {
  '@emotion/css': emotionCss,
  '@grafana/data': grafanaData,
  '@grafana/ui': grafanaUI,
  react: React,
  'react-dom': ReactDOM,
  'react-dom/client': ReactDOMClient,
};

/** Grafana's buildImportMap: each shared module is set under a `package:` URL and mapped from its bare name. */
export function exposeSharedDependencies(): Record<string, string> {
  const imports: Record<string, string> = {};
  for (const [name, module] of Object.entries(sharedDependencies)) {
    const url = `package:${name}`;
    SystemJS.set(url, module);
    imports[name] = url;
  }
  SystemJS.addImportMap({ imports });
  return imports;
}
