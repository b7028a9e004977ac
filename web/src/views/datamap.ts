// Data map: the project's records of processing (GET api/datamap, admin
// scope; docs/privacy.md, "The data map") — where data comes from, each
// property key seen with what the policy stores of it, retention, who can
// read it and where it goes. The HTML and Markdown forms of the same map are
// a link away (the API's format=html and format=markdown).
import { api } from '../api';
import { clear, formatNumber, h } from '../dom';
import { runButton, viewFrame } from '../view';

interface SeenSource {
  route: string;
  sdk: string;
  first_seen_ms: number;
  last_seen_ms: number;
  volume: number;
}

interface SeenProperty {
  kind: string;
  key: string;
  category: string;
  personal: boolean;
  signals: string[];
  action: string;
  why: string;
  stored_as: string;
  first_seen_ms: number;
  last_seen_ms: number;
  volume: number;
  readable_by: string[];
}

interface Reader {
  id: string;
  name: string;
  scopes: string;
  all_projects: boolean;
  events: string[];
  properties: string[];
  expires_ms: number;
}

interface Recipient {
  what: string;
  where: string;
  who: string[];
}

interface ProjectMap {
  id: number;
  name: string;
  time_zone: string;
  policy_version: number;
  sources: SeenSource[];
  properties: SeenProperty[];
  uncatalogued_sightings: number;
  retention: { events_days: number; event_rules: { event: string; days: number }[]; profiles: string; consent: string; audit_days: number };
  readers: Reader[];
  recipients: Recipient[];
}

interface DataMapAnswer {
  generated_ms: number;
  projects: ProjectMap[];
}

function when(ms: number): HTMLElement {
  return h('time', { datetime: new Date(ms).toISOString() }, new Date(ms).toLocaleString());
}

function days(count: number): string {
  return count === 0 ? 'forever' : `${formatNumber(count)} days`;
}

function table(label: string, id: string, columns: string[], rows: HTMLElement[]): HTMLElement {
  return h('div', { class: 'table-scroll', tabindex: 0, role: 'region', 'aria-label': label },
    h('table', { class: 'data datamap', id },
      h('caption', {}, `${label}: ${rows.length} row${rows.length === 1 ? '' : 's'}`),
      h('thead', {}, h('tr', {}, columns.map((name) => h('th', { scope: 'col' }, name)))),
      h('tbody', {}, rows)));
}

function sourcesTable(map: ProjectMap): HTMLElement {
  return table('Ingestion sources', 'datamap-sources', ['Route', 'SDK', 'First seen', 'Last seen', 'Volume'],
    map.sources.map((source) => h('tr', {},
      h('th', { scope: 'row' }, source.route), h('td', {}, source.sdk || '—'),
      h('td', {}, when(source.first_seen_ms)), h('td', {}, when(source.last_seen_ms)),
      h('td', { class: 'number' }, formatNumber(source.volume)))));
}

function propertiesTable(map: ProjectMap): HTMLElement {
  return table('Properties seen', 'datamap-properties',
    ['Key', 'Kind', 'Category', 'Personal', 'Policy', 'Stored as', 'First seen', 'Last seen', 'Volume', 'Readable by'],
    map.properties.map((property) => h('tr', { 'data-key': property.key, 'data-kind': property.kind, class: property.personal ? 'personal' : '' },
      h('th', { scope: 'row' }, h('code', {}, property.key)), h('td', {}, property.kind),
      h('td', {}, property.category),
      h('td', {}, property.personal ? `yes (${property.signals.join(', ')})` : 'no'),
      h('td', { title: property.why }, `${property.action} — ${property.why}`),
      h('td', { class: 'wrap' }, property.stored_as),
      h('td', {}, when(property.first_seen_ms)), h('td', {}, when(property.last_seen_ms)),
      h('td', { class: 'number' }, formatNumber(property.volume)),
      h('td', { class: 'wrap' }, property.readable_by.join(', ') || 'nobody'))));
}

function readersTable(map: ProjectMap): HTMLElement {
  const all = (items: string[]) => (items.length ? items.join(', ') : 'all');
  return table('Who can read it', 'datamap-readers', ['Key', 'Name', 'Scopes', 'Projects', 'Events', 'Properties', 'Expires'],
    map.readers.map((reader) => h('tr', {},
      h('th', { scope: 'row' }, h('code', {}, reader.id)), h('td', {}, reader.name), h('td', {}, reader.scopes),
      h('td', {}, reader.all_projects ? 'all' : 'this one'), h('td', { class: 'wrap' }, all(reader.events)),
      h('td', { class: 'wrap' }, all(reader.properties)),
      h('td', {}, reader.expires_ms ? when(reader.expires_ms) : 'never'))));
}

function recipientsTable(map: ProjectMap): HTMLElement {
  return table('Where it goes', 'datamap-recipients', ['What', 'Where', 'Who'],
    map.recipients.map((recipient) => h('tr', {},
      h('th', { scope: 'row', class: 'wrap' }, recipient.what), h('td', { class: 'wrap' }, recipient.where),
      h('td', { class: 'wrap' }, recipient.who.join(', ') || '—'))));
}

function retentionLine(map: ProjectMap): HTMLElement {
  const rules = map.retention.event_rules.map((rule) => `${rule.event}: ${days(rule.days)}`);
  return h('p', { id: 'datamap-retention' },
    h('strong', {}, 'Retention: '), `events ${days(map.retention.events_days)}`,
    rules.length ? ` (${rules.join('; ')})` : '',
    `; profiles ${map.retention.profiles}; audit log ${days(map.retention.audit_days)}; consent signals: ${map.retention.consent}.`);
}

export function renderDataMap(main: HTMLElement): void {
  const frame = viewFrame(main, 'Data map',
    'The records of processing, written from the configuration and the traffic itself: every source and property key seen, ' +
    'what the policy stores of it, how long, who can read it and where it goes. Needs the admin scope.');
  frame.form.append(runButton('Refresh'));
  const run = () => frame.busy('Reading the data map…', async (isLatest) => {
    const answer = await api<DataMapAnswer>('GET', 'api/datamap');
    if (!isLatest()) return;
    clear(frame.results);
    for (const map of answer.projects) {
      const personal = map.properties.filter((property) => property.personal).length;
      frame.results.append(
        h('p', { class: 'lead', id: 'datamap-summary' },
          `${map.name}: ${map.sources.length} source${map.sources.length === 1 ? '' : 's'}, ` +
          `${map.properties.length} keys seen, ${personal} of them personal; policy version ${map.policy_version}.`),
        retentionLine(map),
        map.uncatalogued_sightings
          ? h('p', { class: 'status error' }, `${formatNumber(map.uncatalogued_sightings)} sightings of keys past the catalogue's limit are not listed.`)
          : '',
        sourcesTable(map), propertiesTable(map), readersTable(map), recipientsTable(map));
    }
  });
  frame.form.addEventListener('submit', (submitted) => {
    submitted.preventDefault();
    void run();
  });
  void run();
}
