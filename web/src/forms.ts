// Form pieces shared by the views: event lists, time ranges, filters and
// breakdowns, and their translation into the query API's JSON.
import { field, h, select, uid } from './dom';
import { EVENT_NAMES_LIST, PROPERTY_KEYS_LIST } from './names';
import type { FilterRow, Range } from './types';

export const RANGE_PRESETS: [string, string][] = [
  ['24h', 'Last 24 hours'],
  ['7d', 'Last 7 days'],
  ['30d', 'Last 30 days'],
  ['90d', 'Last 90 days'],
  ['365d', 'Last 365 days'],
  ['custom', 'Custom dates'],
];

export const OPERATORS: [string, string][] = [
  ['eq', 'equals'],
  ['ne', 'does not equal'],
  ['in', 'is one of'],
  ['not_in', 'is none of'],
  ['contains', 'contains'],
  ['starts_with', 'starts with'],
  ['gt', '>'],
  ['ge', '≥'],
  ['lt', '<'],
  ['le', '≤'],
  ['is_set', 'is set'],
  ['is_not_set', 'is not set'],
];

// The API's from/to for a range: presets are relative to the server's clock
// ("-7d" to "now"), custom ranges are local dates (to exclusive).
export function rangeToQuery(range: Range): { from: string; to: string } {
  if (range.preset === 'custom') return { from: range.from, to: range.to };
  if (range.preset === '24h') return { from: '-24h', to: 'now' };
  return { from: `-${parseInt(range.preset, 10)}d`, to: 'now' };
}

// A typed value: numbers, true, false and null as JSON; "quoted" text is
// the text inside the quotes; anything else is the text itself.
export function typedValue(text: string): unknown {
  const trimmed = text.trim();
  if (/^-?\d+(\.\d+)?([eE][-+]?\d+)?$/.test(trimmed)) return Number(trimmed);
  if (trimmed === 'true') return true;
  if (trimmed === 'false') return false;
  if (trimmed === 'null') return null;
  if (trimmed.length >= 2 && trimmed.startsWith('"') && trimmed.endsWith('"')) return trimmed.slice(1, -1);
  return text;
}

export function filtersToQuery(rows: FilterRow[]): unknown[] {
  return rows
    .filter((row) => row.property.trim() !== '')
    .map((row) => {
      const condition: Record<string, unknown> = { property: row.property.trim(), op: row.op };
      if (row.op === 'in' || row.op === 'not_in') {
        condition.values = row.value.split(',').map((item) => typedValue(item.trim()));
      } else if (row.op === 'contains' || row.op === 'starts_with') {
        condition.value = row.value;
      } else if (row.op !== 'is_set' && row.op !== 'is_not_set') {
        condition.value = typedValue(row.value);
      }
      return condition;
    });
}

// "country, plan" → ["country", "plan"] (the API takes at most two).
export function breakdownToQuery(text: string, limit: number): unknown | undefined {
  const properties = text.split(',').map((item) => item.trim()).filter((item) => item !== '');
  if (properties.length === 0) return undefined;
  return { properties, limit };
}

export function groupLabel(group: { breakdown?: unknown[]; other?: boolean }): string {
  if (group.other) return 'other';
  if (!group.breakdown) return 'all';
  return group.breakdown.map((value) => (value === null ? '(not set)' : typeof value === 'string' ? value : JSON.stringify(value))).join(' · ');
}

// The range controls; `read` gives the range as chosen.
export function rangeControls(range: Range): { element: HTMLElement; read: () => Range } {
  const preset = select(RANGE_PRESETS, range.preset, { name: 'range' });
  const from = h('input', { type: 'date', value: range.from, name: 'from' });
  const to = h('input', { type: 'date', value: range.to, name: 'to' });
  const custom = h('div', { class: 'row' }, field('From', from), field('Until (not included)', to));
  const sync = () => { custom.hidden = preset.value !== 'custom'; };
  preset.addEventListener('change', sync);
  sync();
  return {
    element: h('div', { class: 'group' }, field('Time range', preset), custom),
    read: () => ({ preset: preset.value, from: from.value, to: to.value }),
  };
}

// An editable list of rows (events, steps, filters) with add and remove
// buttons; `make` builds one row's controls and its reader.
export function rowList<T>(
  legend: string,
  items: T[],
  blank: () => T,
  make: (item: T, index: number) => { element: HTMLElement; read: () => T },
  limits: { min: number; max: number; addLabel: string; itemName: string },
): { element: HTMLElement; read: () => T[] } {
  const list = h('ol', { class: 'rows' });
  const rows: { element: HTMLElement; read: () => T }[] = [];
  const addButton = h('button', { type: 'button', class: 'secondary' }, limits.addLabel);
  const refresh = () => {
    rows.forEach((row, index) => {
      const remove = row.element.querySelector<HTMLButtonElement>('button.remove');
      if (remove) {
        remove.disabled = rows.length <= limits.min;
        remove.setAttribute('aria-label', `Remove ${limits.itemName} ${index + 1}`);
      }
      row.element.querySelectorAll<HTMLElement>('[data-label]').forEach((control) => {
        control.setAttribute('aria-label', `${control.dataset.label} ${index + 1}`);
      });
    });
    addButton.disabled = rows.length >= limits.max;
  };
  const add = (item: T) => {
    const row = make(item, rows.length);
    const remove = h('button', { type: 'button', class: 'remove secondary' }, '×');
    const li = h('li', {}, row.element, remove);
    const entry = { element: li, read: row.read };
    remove.addEventListener('click', () => {
      rows.splice(rows.indexOf(entry), 1);
      li.remove();
      refresh();
      addButton.focus();
    });
    rows.push(entry);
    list.appendChild(li);
    refresh();
  };
  addButton.addEventListener('click', () => {
    add(blank());
    rows[rows.length - 1].element.querySelector<HTMLElement>('input, select')?.focus();
  });
  items.forEach(add);
  const fieldset = h('fieldset', { class: 'group' }, h('legend', {}, legend), list, addButton);
  return { element: fieldset, read: () => rows.map((row) => row.read()) };
}

export function eventInput(value: string, label: string): HTMLInputElement {
  return h('input', {
    type: 'text', value, 'data-label': label, placeholder: 'event name, or * for any event',
    autocomplete: 'off', spellcheck: 'false', required: true, list: EVENT_NAMES_LIST,
  });
}

// An event selector of the API: a name, or any event for "*".
export function selector(name: string, filters: unknown[] = []): unknown {
  const trimmed = name.trim();
  const base: Record<string, unknown> = trimmed === '*' ? { any_event: true } : { event: trimmed };
  if (filters.length > 0) base.filters = filters;
  return trimmed === '*' || filters.length > 0 ? base : trimmed;
}

export function filterRows(rows: FilterRow[]): { element: HTMLElement; read: () => FilterRow[] } {
  return rowList<FilterRow>('Filters (all must hold)', rows, () => ({ property: '', op: 'eq', value: '' }), (row) => {
    const property = h('input', { type: 'text', value: row.property, 'data-label': 'Filter property', placeholder: 'property', autocomplete: 'off', spellcheck: 'false', list: PROPERTY_KEYS_LIST });
    const op = select(OPERATORS, row.op, { 'data-label': 'Filter operator' });
    const value = h('input', { type: 'text', value: row.value, 'data-label': 'Filter value', placeholder: 'value (a, b for lists)', autocomplete: 'off', spellcheck: 'false' });
    const sync = () => { value.hidden = op.value === 'is_set' || op.value === 'is_not_set'; };
    op.addEventListener('change', sync);
    sync();
    return {
      element: h('div', { class: 'row' }, property, op, value),
      read: () => ({ property: property.value, op: op.value, value: value.value }),
    };
  }, { min: 0, max: 20, addLabel: 'Add filter', itemName: 'filter' });
}

export function breakdownInput(value: string): HTMLElement {
  return field('Breakdown', h('input', { type: 'text', name: 'breakdown', value, placeholder: 'property, up to two', autocomplete: 'off', spellcheck: 'false', list: PROPERTY_KEYS_LIST }),
    'Split by up to two properties, comma-separated.');
}

export { uid };
