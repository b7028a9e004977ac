// Audit: who read what. The newest records of the audit log (GET api/audit,
// filtered by key, act, route and time) and the chain's verification (GET
// api/audit/status). Both need the audit:read scope (docs/security.md).
import { api } from '../api';
import { clear, field, formatNumber, h, select } from '../dom';
import { runButton, viewFrame } from '../view';

export interface AuditState {
  key: string;
  act: string;
  route: string;
  range: string;
  limit: string;
}

export function auditDefaults(): AuditState {
  return { key: '', act: '', route: '', range: '7d', limit: '100' };
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

function recordsTable(records: AuditRecord[]): HTMLElement {
  const list = (items?: string[]) => (items && items.length ? items.join(', ') : '');
  return h('div', { class: 'table-scroll', tabindex: 0, role: 'region', 'aria-label': 'Audit records' },
    h('table', { class: 'data audit', id: 'audit-table' },
      h('caption', {}, `${records.length} record${records.length === 1 ? '' : 's'}, newest first`),
      h('thead', {}, h('tr', {}, ['Time', 'Act', 'Key', 'Route', 'Events', 'Rows', 'Subjects', 'Outcome']
        .map((name) => h('th', { scope: 'col' }, name)))),
      h('tbody', {}, records.slice().reverse().map((record) => h('tr', { 'data-act': record.act },
        h('th', { scope: 'row' }, h('time', { datetime: new Date(record.time_ms).toISOString() }, new Date(record.time_ms).toLocaleString())),
        h('td', {}, record.act), h('td', {}, record.key), h('td', {}, record.route),
        h('td', { class: 'wrap' }, list(record.events)),
        h('td', {}, formatNumber(record.rows ?? 0)), h('td', {}, formatNumber(record.subjects ?? 0)),
        h('td', { class: record.outcome === 'ok' ? '' : 'bad' }, record.outcome))))));
}

export function renderAudit(main: HTMLElement, state: AuditState, onRun: (state: AuditState) => void): void {
  const frame = viewFrame(main, 'Audit',
    'Every read, export and admin act, from the hash-chained audit log, and whether the chain still verifies.');
  const chain = h('section', { class: 'chain-box', 'aria-label': 'Chain verification' });
  frame.form.before(chain);
  const key = h('input', { type: 'text', name: 'key', value: state.key, placeholder: 'any key', autocomplete: 'off', spellcheck: 'false' });
  const act = select([['', 'Any act'], ['export', 'Exports'], ['query', 'Queries'], ['events.live', 'Live events'],
    ['key.', 'Key changes'], ['policy.', 'Policy'], ['audit.', 'Audit reads']], state.act, { name: 'act' });
  const route = h('input', { type: 'text', name: 'route', value: state.route, placeholder: 'any route, e.g. /api/2.0/export', autocomplete: 'off', spellcheck: 'false' });
  const range = select(RANGES, state.range, { name: 'range' });
  const limit = select([['50', '50'], ['100', '100'], ['500', '500'], ['1000', '1000']], state.limit, { name: 'limit' });
  frame.form.append(h('div', { class: 'row' }, field('Key', key), field('Act', act), field('Route', route),
    field('Time', range), field('Records', limit)), runButton('Show'));
  const verify = async () => {
    clear(chain);
    chain.append(h('p', { class: 'muted' }, 'Verifying the chain…'));
    try {
      const status = await api<ChainStatus>('GET', 'api/audit/status');
      clear(chain);
      chain.append(statusBox(status));
    } catch (error) {
      clear(chain);
      chain.append(h('p', { class: 'status error' }, `The chain could not be verified: ${(error as Error).message}`));
    }
  };
  const run = (current: AuditState) => frame.busy('Reading the audit log…', async () => {
    const params: Record<string, string> = { limit: current.limit };
    if (current.key) params.key = current.key;
    if (current.act) params.act = current.act;
    if (current.route) params.route = current.route;
    if (RANGE_MS[current.range]) params.from_ms = String(Date.now() - RANGE_MS[current.range]);
    const records = await api<AuditRecord[]>('GET', 'api/audit', params);
    clear(frame.results);
    frame.results.append(records.length ? recordsTable(records) : h('p', { class: 'empty' }, 'No records match.'));
  });
  frame.form.addEventListener('submit', (submitted) => {
    submitted.preventDefault();
    const current = { key: key.value.trim(), act: act.value, route: route.value.trim(), range: range.value, limit: limit.value };
    onRun(current);
    void run(current).then(verify);
  });
  void run(state).then(verify);
}
