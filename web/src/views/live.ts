// Live events: the newest events as stored (GET api/events/live), every
// value the policy changed marked with what it did and why — minimisation
// seen working. The marks come from the server (docs/formats/dashboard-api.md
// says how it knows without ever storing the raw value).
import { api } from '../api';
import { clear, field, h, select } from '../dom';
import { runButton, viewFrame } from '../view';

export interface LiveState {
  limit: string;
  event: string;
}

export function liveDefaults(): LiveState {
  return { limit: '50', event: '' };
}

interface Mark {
  change: string;
  why: string;
}

interface LiveEvent {
  event: string;
  time_ms: number;
  distinct_id: string;
  properties: Record<string, unknown>;
  marks: Record<string, Mark>;
}

interface LiveAnswer {
  project: string;
  policy_version: number;
  events: LiveEvent[];
}

function valueText(value: unknown): string {
  return typeof value === 'string' ? value : JSON.stringify(value);
}

// One value with its mark: a badge naming the change, the reason as its
// accessible description and tooltip.
function marked(text: string, mark: Mark | undefined): HTMLElement {
  const value = h('span', { class: 'value' }, text);
  if (!mark) return h('span', {}, value);
  return h('span', { class: `marked ${mark.change}`, title: mark.why },
    value, ' ', h('span', { class: 'badge', 'aria-label': `${mark.change} by the policy: ${mark.why}` }, mark.change),
    h('span', { class: 'why' }, mark.why));
}

function eventCard(event: LiveEvent): HTMLElement {
  const rows = [
    h('tr', {}, h('th', { scope: 'row' }, 'distinct_id'), h('td', {}, marked(event.distinct_id, event.marks.distinct_id))),
    ...Object.entries(event.properties).map(([key, value]) => h('tr', {},
      h('th', { scope: 'row' }, key), h('td', {}, marked(valueText(value), event.marks[`properties.${key}`])))),
  ];
  const changed = Object.keys(event.marks).length;
  return h('li', { class: 'live-event' },
    h('h3', {}, marked(event.event, event.marks.event), ' ',
      h('time', { datetime: new Date(event.time_ms).toISOString(), class: 'muted' }, new Date(event.time_ms).toLocaleString())),
    h('p', { class: 'muted' }, `${changed} value${changed === 1 ? '' : 's'} changed by the policy`),
    h('div', { class: 'table-scroll' }, h('table', { class: 'data live' },
      h('caption', {}, `Properties of ${event.event} as stored`),
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Property'), h('th', { scope: 'col' }, 'Stored value'))),
      h('tbody', {}, rows))));
}

export function renderLive(main: HTMLElement, state: LiveState, onRun: (state: LiveState) => void): void {
  const frame = viewFrame(main, 'Live events',
    'The newest events exactly as stored, after the privacy policy. Every value the policy changed is marked with what it did and why.');
  const limit = select([['20', '20'], ['50', '50'], ['100', '100'], ['200', '200']], state.limit, { name: 'limit' });
  const event = h('input', { type: 'text', name: 'event', value: state.event, placeholder: 'any event', autocomplete: 'off', spellcheck: 'false' });
  frame.form.append(h('div', { class: 'row' }, field('Events shown', limit), field('Only the event', event)), runButton('Refresh'));
  const run = (current: LiveState) => frame.busy('Loading the newest events…', async (isLatest) => {
    const answer = await api<LiveAnswer>('GET', 'api/events/live', { limit: current.limit });
    if (!isLatest()) return;
    const shown = current.event ? answer.events.filter((item) => item.event === current.event) : answer.events;
    clear(frame.results);
    frame.results.append(h('p', { class: 'muted' },
      `Policy version ${answer.policy_version || 'built-in default'}; ${shown.length} event${shown.length === 1 ? '' : 's'}, newest first.`));
    if (!shown.length) {
      frame.results.append(h('p', { class: 'empty' }, 'No events stored yet.'));
      return;
    }
    frame.results.append(h('ol', { class: 'live-events', 'aria-label': 'Newest events' }, shown.map(eventCard)));
  });
  frame.form.addEventListener('submit', (submitted) => {
    submitted.preventDefault();
    const current = { limit: limit.value, event: event.value.trim() };
    onRun(current);
    void run(current);
  });
  void run(state);
}
