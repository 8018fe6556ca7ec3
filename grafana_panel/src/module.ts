import { PanelPlugin } from '@grafana/data';

import { RootCausePanel } from './components/RootCausePanel';
import { buildOptions } from './options';
import { PanelOptions } from './types';

export const plugin = new PanelPlugin<PanelOptions>(RootCausePanel).setPanelOptions(buildOptions);
