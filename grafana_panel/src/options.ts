/** The panel's options editor: top-k, intervals, units and the graph toggle. */
import { PanelOptionsEditorBuilder } from '@grafana/data';

import { defaultOptions, PanelOptions } from './types';

export function buildOptions(builder: PanelOptionsEditorBuilder<PanelOptions>): PanelOptionsEditorBuilder<PanelOptions> {
  return builder
    .addNumberInput({
      path: 'topK',
      name: 'Top contributors',
      description: 'How many services get their own bar; the others are summed in one line.',
      defaultValue: defaultOptions.topK,
      settings: { min: 1, max: 50, integer: true },
    })
    .addBooleanSwitch({
      path: 'showIntervals',
      name: 'Show intervals',
      description: 'Draw the uncertainty interval of each contribution as a whisker (when the backend computed one).',
      defaultValue: defaultOptions.showIntervals,
    })
    .addRadio({
      path: 'units',
      name: 'Latency units',
      defaultValue: defaultOptions.units,
      settings: {
        options: [
          { value: 'auto', label: 'Auto' },
          { value: 'ms', label: 'ms' },
          { value: 's', label: 's' },
        ],
      },
    })
    .addBooleanSwitch({
      path: 'showGraph',
      name: 'Show causal graph',
      description: 'A compact view of the service graph, nodes shaded by their contribution.',
      defaultValue: defaultOptions.showGraph,
    });
}
