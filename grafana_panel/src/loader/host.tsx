/**
 * A Grafana host in miniature, to load the built plugin the way Grafana's frontend does: the shared modules are
 * exposed to SystemJS under an import map, `public/plugins/<id>/module.js` is imported through SystemJS (AMD),
 * its `plugin` export must be a PanelPlugin of the shared @grafana/data, its options come from the plugin's own
 * options builder (edited in a side pane with the registered editors), and its panel is rendered in
 * @grafana/ui's PanelChrome with PanelProps built from the JSON data source's `POST /query` answer, fetched
 * through Grafana's data source proxy path.
 * URL: /?var-traceId=<hex>&theme=light|dark
 */
import { css } from '@emotion/css';
import {
  createTheme,
  dateTime,
  EventBusSrv,
  FieldConfigSource,
  GrafanaTheme2,
  LoadingState,
  PanelData,
  PanelOptionsEditorBuilder,
  PanelOptionsEditorItem,
  PanelPlugin,
  PanelProps,
  ThemeContext,
  TimeRange,
} from '@grafana/data';
import { GlobalStyles, PanelChrome, useStyles2 } from '@grafana/ui';
import React, { useEffect, useMemo, useState } from 'react';
import { createRoot } from 'react-dom/client';

import pluginJson from '../plugin.json';
import { runQuery } from '../harness/query';
import { registerOptionEditors } from './editors';
import { exposeSharedDependencies } from './sharedDependencies';
import { resolved, SystemJS } from './systemjs';

export const PLUGIN_PATH = `/public/plugins/${pluginJson.id}/module.js`;
/** Where Grafana's frontend sends a proxied data source query (the server adds the data source's auth). */
export const QUERY_URL = '/api/datasources/proxy/uid/whyslow/query';
/** The provisioned dashboard's target for the panel (deploy/grafana/dashboards/whyslow-rca.json). */
const TARGET = { target: 'rca', payload: { traceId: '$traceId' } };

type Options = Record<string, unknown>;
type Item = PanelOptionsEditorItem<Options>;

interface Loaded {
  plugin: PanelPlugin<Options>;
  items: Item[];
}

declare global {
  interface Window {
    /** What the test reads: load state, import map, resolved ids, the options in force. */
    __loader: {
      state: 'loading' | 'ready' | 'error';
      error?: string;
      imports: Record<string, string>;
      resolved: typeof resolved;
      options?: Options;
      optionPaths?: string[];
    };
  }
}

async function loadPlugin(): Promise<Loaded> {
  const exports = await SystemJS.import(PLUGIN_PATH);
  const plugin = exports.plugin;
  if (!(plugin instanceof PanelPlugin)) {
    throw new Error(`${PLUGIN_PATH} does not export a PanelPlugin of the shared @grafana/data`);
  }
  if (!plugin.panel) {
    throw new Error(`${PLUGIN_PATH}: the PanelPlugin has no panel component`);
  }
  const builder = new PanelOptionsEditorBuilder<Options>();
  plugin.getPanelOptionsSupplier()(builder, { data: [] });
  return { plugin: plugin as PanelPlugin<Options>, items: builder.getItems() };
}

function defaultsOf(items: Item[]): Options {
  return Object.fromEntries(items.map((item) => [item.path, item.defaultValue]));
}

function useQuery(traceId: string): PanelData {
  const [data, setData] = useState<PanelData | null>(null);
  const timeRange: TimeRange = useMemo(() => {
    const to = dateTime();
    return { from: dateTime(to.valueOf() - 3600_000), to, raw: { from: 'now-1h', to: 'now' } };
  }, []);
  useEffect(() => {
    const payload = JSON.parse(JSON.stringify(TARGET.payload).split('$traceId').join(traceId));
    runQuery(QUERY_URL, TARGET.target, payload, { from: timeRange.from.toDate(), to: timeRange.to.toDate() })
      .then((series) => setData({ state: LoadingState.Done, series, timeRange }))
      .catch((e: Error) => setData({ state: LoadingState.Error, series: [], timeRange, errors: [{ message: e.message }] }));
  }, [traceId, timeRange]);
  return data ?? { state: LoadingState.Loading, series: [], timeRange };
}

const fieldConfig: FieldConfigSource = { defaults: {}, overrides: [] };
const noop = () => {};

const Dashboard: React.FC<{ loaded: Loaded; traceId: string }> = ({ loaded, traceId }) => {
  const styles = useStyles2(getStyles);
  const [options, setOptions] = useState<Options>(() => defaultsOf(loaded.items));
  const data = useQuery(traceId);
  const eventBus = useMemo(() => new EventBusSrv(), []);
  const Panel = loaded.plugin.panel as React.ComponentType<PanelProps<Options>>;
  useEffect(() => {
    window.__loader.options = options;
  }, [options]);
  const replaceVariables = (value: string) => value.split('$traceId').join(traceId);
  const title = replaceVariables('Why was trace $traceId slow?');
  return (
    <div className={styles.layout}>
      <div className={styles.panel} data-testid="loader-panel">
        <PanelChrome width={980} height={620} title={title} loadingState={data.state}>
          {(width, height) => (
            <Panel
              id={1}
              data={data}
              timeRange={data.timeRange}
              timeZone="browser"
              options={options}
              onOptionsChange={setOptions}
              fieldConfig={fieldConfig}
              onFieldConfigChange={noop}
              transparent={false}
              width={width}
              height={height}
              renderCounter={0}
              title={title}
              eventBus={eventBus}
              replaceVariables={replaceVariables}
              onChangeTimeRange={noop}
            />
          )}
        </PanelChrome>
      </div>
      <aside className={styles.options} data-testid="loader-options">
        <h3>Panel options</h3>
        {loaded.items.map((item) => {
          const Editor = item.editor;
          const id = `option-${item.path}`;
          return (
            <div key={item.path} className={styles.option} data-testid={id}>
              <label htmlFor={id}>{item.name}</label>
              {item.description && <div className={styles.description}>{item.description}</div>}
              <Editor
                id={id}
                value={options[item.path]}
                item={item}
                context={{ data: data.series, options }}
                onChange={(value) => setOptions((prev) => ({ ...prev, [item.path]: value }))}
              />
            </div>
          );
        })}
      </aside>
    </div>
  );
};

const getStyles = (theme: GrafanaTheme2) => ({
  layout: css({ display: 'flex', gap: theme.spacing(2), padding: theme.spacing(2), alignItems: 'flex-start' }),
  panel: css({ flex: 'none' }),
  options: css({
    width: 320,
    padding: theme.spacing(2),
    background: theme.colors.background.primary,
    border: `1px solid ${theme.colors.border.weak}`,
    h3: { fontSize: theme.typography.h5.fontSize },
  }),
  option: css({ marginBottom: theme.spacing(2), label: { display: 'block', fontWeight: theme.typography.fontWeightMedium } }),
  description: css({ color: theme.colors.text.secondary, fontSize: theme.typography.bodySmall.fontSize, marginBottom: 4 }),
});

async function boot(): Promise<void> {
  const params = new URLSearchParams(window.location.search);
  const theme = createTheme({ colors: { mode: params.get('theme') === 'light' ? 'light' : 'dark' } });
  document.body.style.background = theme.colors.background.canvas;
  document.body.style.color = theme.colors.text.primary;
  const imports = exposeSharedDependencies();
  window.__loader = { state: 'loading', imports, resolved };
  registerOptionEditors();
  const root = createRoot(document.getElementById('root') as HTMLElement);
  try {
    const loaded = await loadPlugin();
    window.__loader.optionPaths = loaded.items.map((item) => item.path);
    root.render(
      <ThemeContext.Provider value={theme}>
        <GlobalStyles />
        <Dashboard loaded={loaded} traceId={(params.get('var-traceId') ?? '').trim()} />
      </ThemeContext.Provider>
    );
    window.__loader.state = 'ready';
  } catch (e) {
    window.__loader.state = 'error';
    window.__loader.error = e instanceof Error ? e.message : String(e);
    root.render(<pre data-testid="loader-error">{window.__loader.error}</pre>);
  }
}

boot();
