// Audit: who read what. The chain's verification (GET api/audit/status),
// the anomaly alerts (GET api/alerts: rule, key, what was exceeded, whether
// the key was suspended; an admin enables a suspended key with POST
// api/keys/<id>/enable) and the newest records of the audit log (GET
// api/audit, filtered by key, act, route and time). All need the audit:read
// scope (docs/security.md); enabling a key needs admin.
import { api, ApiError } from '../api';
import { clear, field, formatNumber, h, select } from '../dom';
import { runButton, turns, viewFrame } from '../view';

export interface AuditState {
  key: string;
  act: string;
  route: string;
  rule: string;
  range: string;
  limit: string;
}

export function auditDefaults(): AuditState {
  return { key: '', act: '', route: '', rule: '', range: '7d', limit: '100' };
}

// An alert as GET api/alerts lists it (docs/formats/dashboard-api.md).
interface Alert {
  seq: number;
  time_ms: number;
  key: string;
  project_id: number;
  rule: string;
  detail: string;
  suspended: boolean;
  key_state: string;
}

const RULES: [string, string][] = [['', 'Any rule'], ['volume', 'Volume'], ['window_rows', 'Rows in the window'],
  ['hours', 'Unusual hour'], ['address', 'New address'], ['burst', 'Burst']];
const ACCESS_KEY_ID = /^mpk_[0-9a-f]{16}$/;

// What went wrong, with the API's own message.
function explain(error: unknown): string {
  if (error instanceof ApiError && error.status !== 0) return `the server answered ${error.status}: ${error.message}`;
  return (error as Error).message;
}

interface AuditRecord {
  seq: number;
  time_ms: number;
  key: string;
  act: string;
  route: string;
  events?: string[];
  properties?: string[];
  rows?: number;
  subjects?: number;
  bytes?: number;
  // What a read asked (a query's one `query` record or its query.start,
  // export.start), masked by the server: personal values and credentials
  // stand as <masked…> (docs/formats/audit.md).
  params?: string;
  outcome: string;
}

interface ChainStatus {
  ok: boolean;
  records: number;
  anchors: number;
  torn_tail_bytes: number;
  problem: string;
  head: string;
  checked_ms: number;
}

const RANGES: [string, string][] = [['1h', 'Last hour'], ['24h', 'Last 24 hours'], ['7d', 'Last 7 days'], ['30d', 'Last 30 days'], ['all', 'All time']];
const RANGE_MS: Record<string, number> = { '1h': 3600e3, '24h': 86400e3, '7d': 7 * 86400e3, '30d': 30 * 86400e3 };

function statusBox(status: ChainStatus): HTMLElement {
  return h('div', { class: `chain ${status.ok ? 'ok' : 'broken'}`, role: 'status', 'aria-label': 'Audit chain status' },
    h('strong', {}, status.ok ? 'Chain verified' : 'Chain broken'), ' ',
    status.ok
      ? `${formatNumber(status.records)} records, ${formatNumber(status.anchors)} anchors checked; head ${status.head.slice(0, 16)}…`
      : status.problem,
    status.torn_tail_bytes ? ` (a torn tail of ${status.torn_tail_bytes} bytes: an append in flight or interrupted)` : '');
}

function timeCell(timeMs: number): HTMLElement {
  return h('th', { scope: 'row' }, h('time', { datetime: new Date(timeMs).toISOString() }, new Date(timeMs).toLocaleString()));
}

// The alerts table; a suspended key's row has a button that enables it.
function alertsTable(alerts: Alert[], enable: (alert: Alert, button: HTMLButtonElement) => void): HTMLElement {
  const ruleName = (rule: string) => RULES.find(([value]) => value === rule)?.[1] ?? rule;
  return h('div', { class: 'table-scroll', tabindex: 0, role: 'region', 'aria-label': 'Anomaly alerts' },
    h('table', { class: 'data audit alerts', id: 'alerts-table' },
      h('caption', {}, `${alerts.length} alert${alerts.length === 1 ? '' : 's'}, newest first`),
      h('thead', {}, h('tr', {}, ['Time', 'Rule', 'Key', 'What was exceeded', 'Suspended', 'Key now']
        .map((name) => h('th', { scope: 'col' }, name)))),
      h('tbody', {}, alerts.map((alert) => {
        const button = alert.key_state === 'suspended'
          ? h('button', { type: 'button', class: 'secondary small', 'aria-label': `Enable key ${alert.key}` }, 'Enable')
          : null;
        if (button) button.addEventListener('click', () => enable(alert, button));
        return h('tr', { 'data-rule': alert.rule, 'data-key': alert.key },
          timeCell(alert.time_ms),
          h('td', {}, ruleName(alert.rule)), h('td', {}, alert.key),
          h('td', { class: 'wrap' }, alert.detail),
          h('td', { class: alert.suspended ? 'bad' : '' }, alert.suspended ? 'Yes, by this alert' : 'No'),
          h('td', { class: 'key-state' }, alert.key_state, button ? ' ' : '', button));
      }))));
}

function recordsTable(records: AuditRecord[]): HTMLElement {
  const list = (items?: string[]) => (items && items.length ? items.join(', ') : '');
  return h('div', { class: 'table-scroll', tabindex: 0, role: 'region', 'aria-label': 'Audit records' },
    h('table', { class: 'data audit', id: 'audit-table' },
      h('caption', {}, `${records.length} record${records.length === 1 ? '' : 's'}, newest first`),
      h('thead', {}, h('tr', {}, ['Time', 'Act', 'Key', 'Route', 'Events', 'Asked', 'Rows', 'Subjects', 'Outcome']
        .map((name) => h('th', { scope: 'col' }, name)))),
      h('tbody', {}, records.slice().reverse().map((record) => h('tr', { 'data-act': record.act },
        timeCell(record.time_ms),
        h('td', {}, record.act), h('td', {}, record.key), h('td', {}, record.route),
        h('td', { class: 'wrap' }, list(record.events)),
        h('td', { class: 'wrap params' }, record.params ? h('code', {}, record.params) : ''),
        h('td', {}, formatNumber(record.rows ?? 0)), h('td', {}, formatNumber(record.subjects ?? 0)),
        h('td', { class: record.outcome === 'ok' ? '' : 'bad' }, record.outcome))))));
}

export function renderAudit(main: HTMLElement, state: AuditState, onRun: (state: AuditState) => void): void {
  const frame = viewFrame(main, 'Audit',
    'Every read, export and admin act, from the hash-chained audit log, and whether the chain still verifies.');
  const chain = h('section', { class: 'chain-box', 'aria-label': 'Chain verification' });
  frame.form.before(chain);
  const alertsBox = h('section', { class: 'alerts-box', 'aria-labelledby': 'alerts-title' });
  frame.results.before(alertsBox);
  const key = h('input', { type: 'text', name: 'key', value: state.key, placeholder: 'any key', autocomplete: 'off', spellcheck: 'false' });
  const act = select([['', 'Any act'], ['export', 'Exports'], ['query', 'Queries'], ['events.live', 'Live events'],
    ['key.', 'Key changes'], ['policy.', 'Policy'], ['audit.', 'Audit reads']], state.act, { name: 'act' });
  const route = h('input', { type: 'text', name: 'route', value: state.route, placeholder: 'any route, e.g. /api/2.0/export', autocomplete: 'off', spellcheck: 'false' });
  const rule = select(RULES, state.rule, { name: 'rule' });
  const range = select(RANGES, state.range, { name: 'range' });
  const limit = select([['50', '50'], ['100', '100'], ['500', '500'], ['1000', '1000']], state.limit, { name: 'limit' });
  frame.form.append(h('div', { class: 'row' }, field('Key', key), field('Act', act), field('Route', route),
    field('Alert rule', rule), field('Time', range), field('Records', limit)), runButton('Show'));
  // The first load and a submitted form can overlap, and their answers come
  // back in any order: each box shows its newest request's answer only (two
  // overlapping alert reads once put the same alert in the table twice; the
  // records go through frame.busy, which does the same).
  const verifyTurn = turns();
  const alertsTurn = turns();
  const verify = async () => {
    const isLatest = verifyTurn();
    clear(chain);
    chain.append(h('p', { class: 'muted' }, 'Verifying the chain…'));
    let shown: HTMLElement;
    try {
      shown = statusBox(await api<ChainStatus>('GET', 'api/audit/status'));
    } catch (error) {
      shown = h('p', { class: 'status error' }, `The chain could not be verified: ${(error as Error).message}`);
    }
    if (!isLatest()) return;
    clear(chain);
    chain.append(shown);
  };
  // The alerts of the same key (when it is an access key: only those are
  // watched) and time; their own errors stay in their own box.
  const showAlerts = async (current: AuditState) => {
    const isLatest = alertsTurn();
    const title = h('h2', { id: 'alerts-title' }, 'Anomaly alerts');
    const note = h('div', { class: 'alerts-note', role: 'status', 'aria-live': 'polite' });
    const show = (...content: HTMLElement[]) => {
      if (!isLatest()) return;
      clear(alertsBox);
      alertsBox.append(title, note, ...content);
    };
    if (current.key && !ACCESS_KEY_ID.test(current.key)) {
      show(h('p', { class: 'empty' }, 'The anomaly rules watch access keys (mpk_…) only.'));
      return;
    }
    const params: Record<string, string> = { limit: current.limit };
    if (current.key) params.key = current.key;
    if (current.rule) params.rule = current.rule;
    if (RANGE_MS[current.range]) params.from_ms = String(Date.now() - RANGE_MS[current.range]);
    try {
      const alerts = await api<Alert[]>('GET', 'api/alerts', params);
      const enable = (alert: Alert, button: HTMLButtonElement) => {
        button.disabled = true;
        clear(note);
        note.className = 'alerts-note';
        api('POST', `api/keys/${encodeURIComponent(alert.key)}/enable`).then(() => showAlerts(current)).then(() => {
          alertsBox.querySelector('.alerts-note')?.append(`Key ${alert.key} enabled.`);
        }, (error: unknown) => {
          button.disabled = false;
          note.className = 'alerts-note status error';
          note.setAttribute('role', 'alert');
          note.append(`The key could not be enabled: ${explain(error)}`);
        });
      };
      show(alerts.length ? alertsTable(alerts, enable) : h('p', { class: 'empty' }, 'No alerts match.'));
    } catch (error) {
      show(h('p', { class: 'status error', role: 'alert' }, `The alerts could not be read: ${explain(error)}`));
    }
  };
  const run = (current: AuditState) => frame.busy('Reading the audit log…', async (isLatest) => {
    const params: Record<string, string> = { limit: current.limit };
    if (current.key) params.key = current.key;
    if (current.act) params.act = current.act;
    if (current.route) params.route = current.route;
    if (RANGE_MS[current.range]) params.from_ms = String(Date.now() - RANGE_MS[current.range]);
    const records = await api<AuditRecord[]>('GET', 'api/audit', params);
    if (!isLatest()) return;
    clear(frame.results);
    frame.results.append(h('h2', {}, 'Records'),
      records.length ? recordsTable(records) : h('p', { class: 'empty' }, 'No records match.'));
  });
  frame.form.addEventListener('submit', (submitted) => {
    submitted.preventDefault();
    const current = { key: key.value.trim(), act: act.value, route: route.value.trim(), rule: rule.value, range: range.value, limit: limit.value };
    onRun(current);
    void run(current).then(() => showAlerts(current)).then(verify);
  });
  void run(state).then(() => showAlerts(state)).then(verify);
}
