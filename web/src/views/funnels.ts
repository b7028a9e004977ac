// Funnels: steps, conversion window, order and breakdown over POST
// api/query; bars of each step's conversion with the drop-off, and a table
// (subjects, step and overall conversion, median and p90 time from the
// previous step); under them the time-to-convert distribution of a chosen
// step (the API's histogram, docs/queries.md "Time to convert") as a bar
// chart, and a table of every step's histogram.
import { query } from '../api';
import { drawChart, PALETTE } from '../chart';
import { field, formatDuration, formatNumber, formatPercent, h, select } from '../dom';
import { breakdownInput, breakdownToQuery, eventInput, groupLabel, rangeControls, rangeToQuery, rowList, selector } from '../forms';
import type { FunnelAnswer, FunnelStep, Range } from '../types';
import { runButton, viewFrame } from '../view';

export interface FunnelsState {
  steps: string[];
  window: number;
  windowUnit: string;
  order: string;
  range: Range;
  breakdown: string;
  limit: number;
}

export function funnelsDefaults(): FunnelsState {
  return { steps: ['', ''], window: 7, windowUnit: 'day', order: 'loose', range: { preset: '30d', from: '', to: '' }, breakdown: '', limit: 10 };
}

export function funnelsQuery(state: FunnelsState): unknown {
  const body: Record<string, unknown> = {
    kind: 'funnel',
    ...rangeToQuery(state.range),
    steps: state.steps.map((name) => selector(name)),
    window: { value: state.window, unit: state.windowUnit },
    order: state.order,
  };
  const breakdown = breakdownToQuery(state.breakdown, state.limit);
  if (breakdown) body.breakdown = breakdown;
  return body;
}

function stepName(step: FunnelStep): string {
  return step.any_event ? 'any event' : step.event ?? '';
}

export function renderFunnels(main: HTMLElement, state: FunnelsState, onRun: (state: FunnelsState) => void, autorun: boolean): void {
  const frame = viewFrame(main, 'Funnels', 'Who converts: the share of users who go through the steps in order, within the window.');
  const steps = rowList('Steps', state.steps, () => '', (name) => {
    const input = eventInput(name, 'Step');
    return { element: input, read: () => input.value };
  }, { min: 2, max: 16, addLabel: 'Add step', itemName: 'step' });
  const windowValue = h('input', { type: 'number', name: 'window', min: 1, max: 366, value: state.window, inputmode: 'numeric' });
  const windowUnit = select([['minute', 'Minutes'], ['hour', 'Hours'], ['day', 'Days'], ['week', 'Weeks']], state.windowUnit, { name: 'window_unit' });
  const order = select([['loose', 'Any events between steps'], ['strict', 'Strict: nothing between steps']], state.order, { name: 'order' });
  const range = rangeControls(state.range);
  const breakdown = breakdownInput(state.breakdown);
  frame.form.append(steps.element,
    h('div', { class: 'row' }, field('Conversion window', windowValue), field('Window unit', windowUnit), field('Order', order)),
    range.element, breakdown, runButton());
  const read = (): FunnelsState => ({
    steps: steps.read(), window: Number(windowValue.value), windowUnit: windowUnit.value, order: order.value,
    range: range.read(), breakdown: breakdown.querySelector('input')!.value, limit: state.limit,
  });
  const run = (current: FunnelsState) => frame.busy('Running the funnel…', async (isLatest) => {
    const answer = await query<FunnelAnswer>(funnelsQuery(current));
    if (isLatest()) showFunnel(frame.results, answer);
  });
  frame.form.addEventListener('submit', (event) => {
    event.preventDefault();
    const next = read();
    if (next.steps.some((name) => name.trim() === '')) {
      frame.status.className = 'status error';
      frame.status.textContent = 'Name every step (or * for any event) before running.';
      return;
    }
    onRun(next);
    void run(next);
  });
  if (autorun && state.steps.every((name) => name.trim() !== '')) void run(state);
}

function showFunnel(results: HTMLElement, answer: FunnelAnswer): void {
  results.replaceChildren();
  const first = answer.steps[0]?.subjects ?? 0;
  const overall = answer.steps[answer.steps.length - 1]?.overall_conversion ?? 0;
  results.append(h('h2', {}, `${formatPercent(overall)} converted`, h('span', { class: 'muted' }, ` · ${formatNumber(first)} users entered`)));
  const bars = h('ol', { class: 'funnel-bars', 'aria-label': 'Conversion per step; the table below holds the same numbers' });
  answer.steps.forEach((step, index) => {
    const reached = h('div', { class: 'bar-reached' });
    reached.style.height = `${Math.max(0, Math.min(100, step.overall_conversion * 100))}%`;
    reached.style.background = PALETTE[0];
    const dropped = index === 0 ? 0 : answer.steps[index - 1].overall_conversion - step.overall_conversion;
    const drop = h('div', { class: 'bar-dropped' });
    drop.style.height = `${Math.max(0, Math.min(100, dropped * 100))}%`;
    bars.append(h('li', {},
      h('div', { class: 'bar', title: `${stepName(step)}: ${formatNumber(step.subjects)} users, ${formatPercent(step.overall_conversion)} of step 1` }, drop, reached),
      h('div', { class: 'bar-label' }, h('strong', {}, `${index + 1}. ${stepName(step)}`), h('br'),
        `${formatPercent(step.overall_conversion)} · ${formatNumber(step.subjects)}`,
        index > 0 ? [h('br'), h('span', { class: 'drop' }, `−${formatNumber(answer.steps[index - 1].subjects - step.subjects)} dropped`)] : [])));
  });
  results.append(h('figure', { class: 'chart' }, bars));
  results.append(stepTable('All users', answer.steps, 'funnel-table'));
  showTimeToConvert(results, answer);
  for (const [index, group] of (answer.groups ?? []).entries()) {
    results.append(stepTable(groupLabel(group), group.steps, `funnel-group-${index}`));
  }
}

function stepTable(caption: string, steps: FunnelStep[], id: string): HTMLElement {
  return h('div', { class: 'table-scroll', tabindex: 0, role: 'region', 'aria-label': `Funnel table: ${caption}` },
    h('table', { class: 'data', id },
      h('caption', {}, caption),
      h('thead', {}, h('tr', {}, ['Step', 'Users', 'From previous step', 'Overall', 'Median time from previous', 'p90 time from previous']
        .map((label) => h('th', { scope: 'col' }, label)))),
      h('tbody', {}, steps.map((step, index) => h('tr', {},
        h('th', { scope: 'row' }, `${index + 1}. ${stepName(step)}`),
        h('td', { 'data-value': String(step.subjects) }, formatNumber(step.subjects)),
        h('td', { 'data-value': String(step.step_conversion) }, formatPercent(step.step_conversion)),
        h('td', { 'data-value': String(step.overall_conversion) }, formatPercent(step.overall_conversion)),
        h('td', {}, formatDuration(step.median_ms)),
        h('td', {}, formatDuration(step.p90_ms)))))));
}

// A bucket bound as people say it: "10 s", "5 min", "4 h", "7 d".
function shortDuration(ms: number): string {
  const units: [number, string][] = [[86400000, 'd'], [3600000, 'h'], [60000, 'min'], [1000, 's']];
  for (const [size, name] of units) {
    if (ms >= size && ms % size === 0) return `${ms / size} ${name}`;
  }
  return `${ms} ms`;
}

function bucketLabel(bounds: number[], index: number): string {
  if (index === bounds.length - 1) return index === 0 ? 'any time' : `${shortDuration(bounds[index])} or more`;
  if (index === 0) return `under ${shortDuration(bounds[1])}`;
  return `${shortDuration(bounds[index])} to ${shortDuration(bounds[index + 1])}`;
}

// The time-to-convert histogram of every step after the first: a bar chart
// of one step (a select picks it; the last by default) and a table of all.
function showTimeToConvert(results: HTMLElement, answer: FunnelAnswer): void {
  const bounds = answer.time_to_convert_buckets_ms ?? [];
  const later = answer.steps.map((step, index) => ({ step, index })).filter(({ index }) => index > 0);
  if (bounds.length === 0 || later.length === 0) return;
  const label = ({ step, index }: { step: FunnelStep; index: number }) => `${index + 1}. ${stepName(step)}`;
  const picker = select(later.map((entry): [string, string] => [String(entry.index), label(entry)]), String(later[later.length - 1].index),
    { name: 'time_to_convert_step' });
  const chartBox = h('figure', { class: 'chart', id: 'funnel-time-chart' });
  results.append(h('h2', {}, 'Time to convert'),
    h('div', { class: 'row' }, field('Time to convert to', picker, 'From the previous step; users per time range.')),
    chartBox);
  const x = bounds.map((_, index) => index);
  let destroy: (() => void) | null = null;
  const draw = () => {
    destroy?.();
    const entry = later.find(({ index }) => String(index) === picker.value) ?? later[later.length - 1];
    chartBox.setAttribute('aria-label', `Bar chart of the time from step ${entry.index} to ${label(entry)}; the table below holds the same numbers`);
    destroy = drawChart(chartBox, x, [{ label: label(entry), values: bounds.map((_, bucket) => entry.step.time_to_convert?.[bucket] ?? null) }],
      { bars: true, time: false, xLabel: (value) => (Number.isInteger(value) && value >= 0 && value < bounds.length ? bucketLabel(bounds, value) : ''), xName: 'Time', yLabel: 'Users' });
  };
  picker.addEventListener('change', draw);
  draw();
  results.append(h('div', { class: 'table-scroll', tabindex: 0, role: 'region', 'aria-label': 'Time to convert table' },
    h('table', { class: 'data', id: 'funnel-time-table' },
      h('caption', {}, 'Time to convert from the previous step: users per time range (withheld: fewer than the minimum group size)'),
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Time from previous step'), later.map((entry) => h('th', { scope: 'col' }, label(entry))))),
      h('tbody', {}, bounds.map((_, bucket) => h('tr', {},
        h('th', { scope: 'row' }, bucketLabel(bounds, bucket)),
        later.map(({ step }) => {
          const count = step.time_to_convert?.[bucket] ?? null;
          return h('td', { 'data-value': count === null ? 'null' : String(count) }, count === null ? 'withheld' : formatNumber(count));
        })))))));
}
