/**
 * The host's option editors, registered under the ids Grafana's panel editor uses ('number', 'boolean', 'radio',
 * 'select', 'text'); Grafana's own live in its app, not in a package, so these are built from @grafana/ui's
 * Input, Switch, RadioButtonGroup and Select. The plugin's options builder picks them by id.
 */
import { SelectableValue, StandardEditorProps, StandardEditorsRegistryItem, standardEditorsRegistry } from '@grafana/data';
import { Input, RadioButtonGroup, Select, Switch } from '@grafana/ui';
import React, { useEffect, useState } from 'react';

interface NumberSettings {
  min?: number;
  max?: number;
  integer?: boolean;
}

/** A number within the item's settings (min, max, integer); blank or invalid input keeps the last value. */
export function clampNumber(text: string, settings: NumberSettings | undefined, previous: number): number {
  const value = Number(text);
  if (text.trim() === '' || !Number.isFinite(value)) {
    return previous;
  }
  let out = settings?.integer ? Math.round(value) : value;
  if (settings?.min !== undefined) {
    out = Math.max(settings.min, out);
  }
  if (settings?.max !== undefined) {
    out = Math.min(settings.max, out);
  }
  return out;
}

const NumberEditor: React.FC<StandardEditorProps<number, NumberSettings>> = ({ value, onChange, item, id }) => {
  const [text, setText] = useState(String(value ?? ''));
  useEffect(() => setText(String(value ?? '')), [value]);
  const commit = () => {
    const next = clampNumber(text, item.settings, value);
    setText(String(next));
    onChange(next);
  };
  return (
    <Input
      id={id}
      type="number"
      value={text}
      min={item.settings?.min}
      max={item.settings?.max}
      onChange={(e) => setText(e.currentTarget.value)}
      onBlur={commit}
      onKeyDown={(e) => {
        if (e.key === 'Enter') {
          commit();
        }
      }}
    />
  );
};

const BooleanEditor: React.FC<StandardEditorProps<boolean>> = ({ value, onChange, id }) => (
  <Switch id={id} value={Boolean(value)} onChange={(e) => onChange(e.currentTarget.checked)} />
);

interface OptionsSettings {
  options?: Array<SelectableValue<unknown>>;
}

const RadioEditor: React.FC<StandardEditorProps<unknown, OptionsSettings>> = ({ value, onChange, item }) => (
  <RadioButtonGroup value={value} options={item.settings?.options ?? []} onChange={(v) => onChange(v)} />
);

const SelectEditor: React.FC<StandardEditorProps<unknown, OptionsSettings>> = ({ value, onChange, item }) => (
  <Select value={value} options={item.settings?.options ?? []} onChange={(v) => onChange(v.value)} />
);

const TextEditor: React.FC<StandardEditorProps<string>> = ({ value, onChange, id }) => (
  <Input id={id} defaultValue={value ?? ''} onBlur={(e) => onChange(e.currentTarget.value)} />
);

const EDITORS: StandardEditorsRegistryItem[] = [
  { id: 'number', name: 'Number', editor: NumberEditor },
  { id: 'boolean', name: 'Boolean', editor: BooleanEditor },
  { id: 'radio', name: 'Radio', editor: RadioEditor },
  { id: 'select', name: 'Select', editor: SelectEditor },
  { id: 'text', name: 'Text', editor: TextEditor },
];

/** Fill @grafana/data's (shared) editor registry, as Grafana's app does at start-up. */
export function registerOptionEditors(): void {
  standardEditorsRegistry.setInit(() => EDITORS);
}
