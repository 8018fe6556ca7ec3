import { PanelOptionsEditorBuilder, standardEditorsRegistry } from '@grafana/data';

import { RootCausePanel } from '../components/RootCausePanel';
import { plugin } from '../module';
import { buildOptions } from '../options';
import { defaultOptions, PanelOptions } from '../types';

// Grafana's app fills this registry with its option editors at start-up; here only their ids are needed.
beforeAll(() => {
  standardEditorsRegistry.setInit(() =>
    ['number', 'boolean', 'radio', 'select', 'text'].map((id) => ({ id, name: id, editor: () => null }))
  );
});

describe('options builder', () => {
  it('declares top-k, intervals, units and graph with the documented defaults', () => {
    const builder = new PanelOptionsEditorBuilder<PanelOptions>();
    buildOptions(builder);
    const items = builder.getItems();
    expect(items.map((i) => i.path)).toEqual(['topK', 'showIntervals', 'units', 'showGraph']);
    const defaults = Object.fromEntries(items.map((i) => [i.path, i.defaultValue]));
    expect(defaults).toEqual(defaultOptions);
    const units = items.find((i) => i.path === 'units');
    expect(units?.settings?.options.map((o: { value: string }) => o.value)).toEqual(['auto', 'ms', 's']);
    expect(items.find((i) => i.path === 'topK')?.settings).toMatchObject({ min: 1, integer: true });
  });

  it('is what the plugin registers, with the panel component', () => {
    expect(plugin.panel).toBe(RootCausePanel);
    const builder = new PanelOptionsEditorBuilder<PanelOptions>();
    const supplier = plugin.getPanelOptionsSupplier();
    supplier(builder, { data: [] });
    expect(builder.getItems().map((i) => i.path)).toEqual(['topK', 'showIntervals', 'units', 'showGraph']);
  });
});
