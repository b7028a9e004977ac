// Funnels: steps, conversion window, order and breakdown over POST
// api/query; bars of each step's conversion with the drop-off, and a table
// (subjects, step and overall conversion, median and p90 time from the
// previous step — the API gives these two figures, not a full
// time-to-convert distribution).
import { query } from '../api';
import { PALETTE } from '../chart';
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
  const run = (current: FunnelsState) => frame.busy('Running the funnel…', async () => {
    showFunnel(frame.results, await query<FunnelAnswer>(funnelsQuery(current)));
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
