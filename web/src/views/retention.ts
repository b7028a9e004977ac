// Retention: birth and return events, unit, periods and mode over POST
// api/query; the triangle as a heat-map table (rate and count per cohort
// and period; a period not yet begun is empty, one not yet over is marked)
// and the total curve below.
import { query } from '../api';
import { drawChart } from '../chart';
import { field, formatNumber, formatPercent, h, select } from '../dom';
import { breakdownInput, breakdownToQuery, eventInput, groupLabel, rangeControls, rangeToQuery, selector } from '../forms';
import type { Range, RetentionAnswer, RetentionTriangle } from '../types';
import { runButton, viewFrame } from '../view';

export interface RetentionState {
  birth: string;
  returning: string;
  unit: string;
  periods: number;
  mode: string;
  range: Range;
  breakdown: string;
  limit: number;
}

export function retentionDefaults(): RetentionState {
  return { birth: '', returning: '', unit: 'day', periods: 7, mode: 'on', range: { preset: '30d', from: '', to: '' }, breakdown: '', limit: 10 };
}

export function retentionQuery(state: RetentionState): unknown {
  const body: Record<string, unknown> = {
    kind: 'retention',
    ...rangeToQuery(state.range),
    birth: selector(state.birth),
    return: selector(state.returning),
    unit: state.unit,
    periods: state.periods,
    mode: state.mode,
  };
  const breakdown = breakdownToQuery(state.breakdown, state.limit);
  if (breakdown) body.breakdown = breakdown;
  return body;
}

export function renderRetention(main: HTMLElement, state: RetentionState, onRun: (state: RetentionState) => void, autorun: boolean): void {
  const frame = viewFrame(main, 'Retention', 'Who comes back: of the users who did the first event, the share who return in each later period.');
  const birth = eventInput(state.birth, 'First event');
  const returning = eventInput(state.returning, 'Return event');
  const unit = select([['day', 'Day'], ['week', 'Week']], state.unit, { name: 'unit' });
  const periods = h('input', { type: 'number', name: 'periods', min: 1, max: 120, value: state.periods, inputmode: 'numeric' });
  const mode = select([['on', 'Returned in that period'], ['on_or_after', 'Returned in that period or later']], state.mode, { name: 'mode' });
  const range = rangeControls(state.range);
  const breakdown = breakdownInput(state.breakdown);
  birth.removeAttribute('aria-label');
  returning.removeAttribute('aria-label');
  frame.form.append(
    h('div', { class: 'row' }, field('First event (cohort)', birth), field('Return event', returning)),
    h('div', { class: 'row' }, field('Period', unit), field('Periods', periods), field('Count', mode)),
    range.element, breakdown, runButton());
  const read = (): RetentionState => ({
    birth: birth.value, returning: returning.value, unit: unit.value, periods: Number(periods.value), mode: mode.value,
    range: range.read(), breakdown: breakdown.querySelector('input')!.value, limit: state.limit,
  });
  const run = (current: RetentionState) => frame.busy('Running the retention query…', async (isLatest) => {
    const answer = await query<RetentionAnswer>(retentionQuery(current));
    if (isLatest()) showRetention(frame.results, answer);
  });
  frame.form.addEventListener('submit', (event) => {
    event.preventDefault();
    const next = read();
    if (next.birth.trim() === '' || next.returning.trim() === '') {
      frame.status.className = 'status error';
      frame.status.textContent = 'Name the first event and the return event (or * for any event) before running.';
      return;
    }
    onRun(next);
    void run(next);
  });
  if (autorun && state.birth.trim() !== '' && state.returning.trim() !== '') void run(state);
}

function showRetention(results: HTMLElement, answer: RetentionAnswer): void {
  results.replaceChildren();
  results.append(h('h2', {}, `${formatNumber(answer.size)} users in ${answer.cohorts.length} cohorts`));
  results.append(triangle('All users', answer, answer.unit, 'retention-table'));
  const periods = answer.total.rates.map((_, index) => index);
  const curve = h('figure', { class: 'chart', 'aria-label': 'Retention curve: the share of all cohorts returning per period (the Total row of the table)' });
  results.append(h('h3', {}, 'Retention curve'), curve);
  drawChart(curve, periods, [{ label: 'Returned', values: answer.total.rates }], {
    time: false, percent: true, xName: 'Period', xLabel: (value) => `${answer.unit} ${value}`,
  });
  for (const [index, group] of (answer.groups ?? []).entries()) {
    results.append(triangle(groupLabel(group), group, answer.unit, `retention-group-${index}`));
  }
}

// The heat-map: one row per cohort, one column per period; the cell's
// background darkens with the rate (its text stays readable: white on the
// darker half).
function triangle(caption: string, data: RetentionTriangle, unit: string, id: string): HTMLElement {
  const periodCount = data.total.counts.length;
  const head = h('tr', {}, h('th', { scope: 'col' }, 'Cohort'), h('th', { scope: 'col' }, 'Users'),
    Array.from({ length: periodCount }, (_, period) => h('th', { scope: 'col' }, `${unit === 'week' ? 'Week' : 'Day'} ${period}`)));
  const cell = (count: number | null, rate: number | null, incomplete: boolean) => {
    if (count === null) return h('td', { class: 'heat none', 'data-value': 'null' }, '');
    const td = h('td', { class: `heat${incomplete ? ' incomplete' : ''}`, 'data-value': String(count), 'data-rate': String(rate),
      title: `${formatNumber(count)} users, ${formatPercent(rate)}${incomplete ? ' (period not over yet)' : ''}` },
    h('span', { class: 'rate' }, formatPercent(rate)), h('span', { class: 'count' }, formatNumber(count)));
    const level = rate ?? 0;
    td.style.backgroundColor = `rgba(29, 78, 216, ${(0.08 + 0.92 * level).toFixed(3)})`;
    if (level > 0.45) td.classList.add('dark');
    return td;
  };
  const total = h('tr', { class: 'total' }, h('th', { scope: 'row' }, 'Total'), h('td', { 'data-value': String(data.size) }, formatNumber(data.size)),
    data.total.counts.map((count, period) => cell(count, data.total.rates[period], false)));
  const rows = data.cohorts.map((cohort) => h('tr', {}, h('th', { scope: 'row' }, cohort.start),
    h('td', { 'data-value': String(cohort.size) }, formatNumber(cohort.size)),
    cohort.counts.map((count, period) => cell(count, cohort.rates[period], cohort.incomplete_from !== null && period >= cohort.incomplete_from))));
  return h('div', { class: 'table-scroll', tabindex: 0, role: 'region', 'aria-label': `Retention table: ${caption}` },
    h('table', { class: 'data triangle', id }, h('caption', {}, `${caption}: users returning per ${unit} after their first event (striped: period not over yet)`),
      h('thead', {}, head), h('tbody', {}, total, rows)));
}
