// Insights: segmentation over POST api/query (docs/queries.md) — events,
// measure, range and unit, filters and breakdown; a line or bar chart with a
// legend (exact values on hover) and the same numbers in a table. "Compare
// with the previous period" asks the query API for the range of the same
// length just before as well (`"compare": "previous_period"`) and lines the
// buckets up by position.
import { query } from '../api';
import { drawChart, type LineSeries, PALETTE } from '../chart';
import { field, formatNumber, formatPercent, h, select } from '../dom';
import {
  breakdownInput, breakdownToQuery, eventInput, filterRows, filtersToQuery, groupLabel, rangeControls,
  rangeToQuery, rowList, selector,
} from '../forms';
import type { FilterRow, Range, SegmentationAnswer, SegmentationSeries } from '../types';
import { runButton, viewFrame } from '../view';

export interface InsightsState {
  events: string[];
  measure: string;
  property: string;
  range: Range;
  unit: string;
  filters: FilterRow[];
  breakdown: string;
  limit: number;
  chart: string;
  compare: boolean;
}

export const MEASURES: [string, string][] = [
  ['total', 'Total events'],
  ['unique', 'Unique users'],
  ['per_subject_average', 'Events per user'],
  ['sum', 'Sum of a property'],
  ['average', 'Average of a property'],
  ['min', 'Minimum of a property'],
  ['max', 'Maximum of a property'],
  ['median', 'Median of a property'],
  ['p90', '90th percentile of a property'],
];
const PROPERTY_MEASURES = new Set(['sum', 'average', 'min', 'max', 'median', 'p90']);

export function insightsDefaults(): InsightsState {
  return {
    events: [''], measure: 'total', property: '', range: { preset: '30d', from: '', to: '' }, unit: 'day',
    filters: [], breakdown: '', limit: 10, chart: 'line', compare: false,
  };
}

export function insightsQuery(state: InsightsState): unknown {
  const body: Record<string, unknown> = {
    kind: 'segmentation',
    ...rangeToQuery(state.range),
    unit: state.unit,
    events: state.events.map((name) => selector(name)),
    measure: PROPERTY_MEASURES.has(state.measure) ? { type: state.measure, property: state.property.trim() } : state.measure,
  };
  const filters = filtersToQuery(state.filters);
  if (filters.length > 0) body.filters = filters;
  const breakdown = breakdownToQuery(state.breakdown, state.limit);
  if (breakdown) body.breakdown = breakdown;
  if (state.compare) body.compare = 'previous_period';
  return body;
}

function seriesLabel(series: SegmentationSeries): string {
  const name = series.any_event ? 'any event' : series.event ?? '';
  return series.breakdown || series.other ? `${name} · ${groupLabel(series)}` : name;
}

export function renderInsights(main: HTMLElement, state: InsightsState, onRun: (state: InsightsState) => void, autorun: boolean): void {
  const frame = viewFrame(main, 'Insights', 'How many: events over time, by measure, filtered and broken down.');
  const events = rowList('Events', state.events, () => '', (name) => {
    const input = eventInput(name, 'Event');
    return { element: input, read: () => input.value };
  }, { min: 1, max: 10, addLabel: 'Add event', itemName: 'event' });
  const measure = select(MEASURES, state.measure, { name: 'measure' });
  const property = h('input', { type: 'text', name: 'property', value: state.property, placeholder: 'numeric property', autocomplete: 'off', spellcheck: 'false' });
  const propertyField = field('Of property', property);
  const syncMeasure = () => { propertyField.hidden = !PROPERTY_MEASURES.has(measure.value); };
  measure.addEventListener('change', syncMeasure);
  syncMeasure();
  const range = rangeControls(state.range);
  const unit = select([['hour', 'Hour'], ['day', 'Day'], ['week', 'Week'], ['month', 'Month']], state.unit, { name: 'unit' });
  const filters = filterRows(state.filters);
  const breakdown = breakdownInput(state.breakdown);
  const chart = select([['line', 'Line'], ['bar', 'Bar']], state.chart, { name: 'chart' });
  const compare = h('input', { type: 'checkbox', name: 'compare', id: 'insights-compare' });
  compare.checked = state.compare;
  frame.form.append(
    events.element,
    h('div', { class: 'row' }, field('Measure', measure), propertyField, field('Per', unit), field('Chart', chart)),
    range.element,
    filters.element,
    h('div', { class: 'row' }, breakdown,
      h('div', { class: 'field check' }, compare, h('label', { for: 'insights-compare' }, 'Compare with the previous period'))),
    runButton(),
  );
  const read = (): InsightsState => ({
    events: events.read(), measure: measure.value, property: property.value, range: range.read(), unit: unit.value,
    filters: filters.read(), breakdown: breakdown.querySelector('input')!.value, limit: state.limit,
    chart: chart.value, compare: compare.checked,
  });
  const run = (current: InsightsState) => frame.busy('Running the query…', async (isLatest) => {
    const started = performance.now();
    const answer = await query<SegmentationAnswer>(insightsQuery(current));
    const answered = performance.now();
    if (!isLatest()) return;
    showInsights(frame.results, current, answer, answer.previous ?? null);
    showTiming(frame.results, started, answered);
  });
  frame.form.addEventListener('submit', (event) => {
    event.preventDefault();
    const next = read();
    if (next.events.some((name) => name.trim() === '')) {
      frame.status.className = 'status error';
      frame.status.textContent = 'Name every event (or * for any event) before running.';
      return;
    }
    onRun(next);
    void run(next);
  });
  if (autorun && state.events.every((name) => name.trim() !== '')) void run(state);
}

function showInsights(results: HTMLElement, state: InsightsState, answer: SegmentationAnswer, previous: SegmentationAnswer | null): void {
  results.replaceChildren();
  const x = answer.bucket_starts_ms.map((ms) => ms / 1000);
  const lines: LineSeries[] = answer.series.map((series, index) => ({
    label: seriesLabel(series), values: series.values, color: PALETTE[index % PALETTE.length],
  }));
  if (previous) {
    previous.series.forEach((series, index) => {
      const color = PALETTE[index % PALETTE.length];
      const values = answer.buckets.map((_, bucket) => series.values[bucket] ?? null);
      lines.push({ label: `${seriesLabel(series)} (previous period)`, values, dashed: true, color });
    });
  }
  const measureName = (MEASURES.find(([value]) => value === state.measure) ?? ['', state.measure])[1];
  const chartBox = h('figure', { class: 'chart', 'aria-label': `${state.chart === 'bar' ? 'Bar' : 'Line'} chart of ${measureName} per ${answer.unit}; the table below holds the same numbers` });
  results.append(h('h2', {}, `${measureName} per ${answer.unit}`), chartBox);
  if (answer.series.length === 0) {
    results.append(h('p', { class: 'empty' }, 'No events matched in this range.'));
  } else {
    drawChart(chartBox, x, lines, { bars: state.chart === 'bar', time: true });
  }
  const previousTotals = new Map<string, number | null>();
  previous?.series.forEach((series) => previousTotals.set(seriesLabel(series), series.total));
  const head = h('tr', {}, h('th', { scope: 'col' }, 'Series'), h('th', { scope: 'col' }, 'Total'),
    previous ? [h('th', { scope: 'col' }, 'Previous period'), h('th', { scope: 'col' }, 'Change')] : [],
    answer.buckets.map((bucket) => h('th', { scope: 'col' }, bucket)));
  const body = answer.series.map((series) => {
    const label = seriesLabel(series);
    const before = previousTotals.get(label);
    const change = before && series.total !== null ? (series.total - before) / before : null;
    return h('tr', {}, h('th', { scope: 'row' }, label), numberCell(series.total),
      previous ? [numberCell(before ?? null), h('td', {}, change === null ? '–' : `${change >= 0 ? '+' : ''}${formatPercent(change)}`)] : [],
      series.values.map((value) => numberCell(value)));
  });
  results.append(h('div', { class: 'table-scroll', tabindex: 0, role: 'region', 'aria-label': 'Insights table' },
    h('table', { class: 'data', id: 'insights-table' }, h('caption', {}, `${measureName}, ${answer.buckets.length} ${answer.unit} buckets`),
      h('thead', {}, head), h('tbody', {}, body))));
}

// How long the query took (the request, the server's work and the answer
// parsed) and the drawing (chart and table built, then the next frame
// painted), shown under the chart's title and kept as performance measures
// (minpanel:insights:query, minpanel:insights:render: the last run's only)
// for web/bench/breakdown.mjs.
function showTiming(results: HTMLElement, started: number, answered: number): void {
  const line = h('p', { class: 'muted timing', id: 'insights-timing' });
  results.querySelector('h2')?.after(line);
  const milliseconds = (value: number) => (value < 1000 ? `${Math.round(value)} ms` : `${(value / 1000).toFixed(2)} s`);
  requestAnimationFrame(() => setTimeout(() => {
    const drawn = performance.now();
    performance.clearMeasures('minpanel:insights:query');
    performance.clearMeasures('minpanel:insights:render');
    performance.measure('minpanel:insights:query', { start: started, end: answered });
    performance.measure('minpanel:insights:render', { start: answered, end: drawn });
    line.textContent = `Query ${milliseconds(answered - started)} · drawn in ${milliseconds(drawn - answered)}`;
  }, 0));
}

function numberCell(value: number | null): HTMLTableCellElement {
  return h('td', { 'data-value': value === null ? 'null' : String(value) }, formatNumber(value));
}
