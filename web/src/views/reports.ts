// Saved reports and the dashboard of pinned charts, kept server-side per
// project (api/reports, api/dashboards; docs/formats/dashboard-api.md), so
// every client of the project sees the same. A report is a view and the
// state its URL carries; the dashboard runs each pinned report's query and
// draws its chart and table.
import { api } from '../api';
import { clear, h } from '../dom';
import { viewFrame } from '../view';

export type ReportView = 'insights' | 'funnels' | 'retention';

export interface SavedReport {
  id: number;
  name: string;
  view: ReportView;
  state: unknown;
  updated_ms: number;
}

interface Dashboard {
  id: number;
  name: string;
  reports: number[];
}

// Draws a report's view (its form hidden) into `container` and runs it.
export type ReportRenderer = (container: HTMLElement, report: SavedReport) => void;

export const DASHBOARD_NAME = 'Dashboard';

// The project's dashboard (the first one; made on the first pin).
async function theDashboard(create: boolean): Promise<Dashboard | null> {
  const dashboards = await api<Dashboard[]>('GET', 'api/dashboards');
  if (dashboards.length || !create) return dashboards[0] ?? null;
  return api<Dashboard>('POST', 'api/dashboards', {}, { name: DASHBOARD_NAME, reports: [] });
}

export async function saveReport(name: string, view: ReportView, state: unknown, pin: boolean): Promise<SavedReport> {
  const report = await api<SavedReport>('POST', 'api/reports', {}, { name, view, state });
  if (pin) await setPinned(report.id, true);
  return report;
}

async function setPinned(id: number, pinned: boolean): Promise<void> {
  const dashboard = await theDashboard(pinned);
  if (!dashboard) return;
  const reports = dashboard.reports.filter((item) => item !== id);
  if (pinned) reports.push(id);
  await api('PUT', `api/dashboards/${dashboard.id}`, {}, { name: dashboard.name, reports });
}

const VIEW_NAMES: Record<ReportView, string> = { insights: 'Insights', funnels: 'Funnel', retention: 'Retention' };

export function renderReports(main: HTMLElement, hashOf: (report: SavedReport) => string): void {
  const frame = viewFrame(main, 'Saved reports',
    'Reports saved for this project, on the server: open one, pin it to the dashboard, or delete it. Save a report from Insights, Funnels or Retention.');
  frame.form.hidden = true;
  const load = () => frame.busy('Loading the saved reports…', async (isLatest) => {
    const [reports, dashboard] = await Promise.all([api<SavedReport[]>('GET', 'api/reports'), theDashboard(false)]);
    if (!isLatest()) return;
    const pinned = new Set(dashboard?.reports ?? []);
    clear(frame.results);
    if (!reports.length) {
      frame.results.append(h('p', { class: 'empty' }, 'No saved reports yet.'));
      return;
    }
    frame.results.append(h('ul', { class: 'saved-list', 'aria-label': 'Saved reports' }, reports.map((report) => {
      const isPinned = pinned.has(report.id);
      const pin = h('button', { type: 'button', class: 'secondary', 'aria-pressed': isPinned ? 'true' : 'false' },
        isPinned ? `Unpin ${report.name}` : `Pin ${report.name}`);
      pin.addEventListener('click', () => void frame.busy('Saving…', async () => {
        await setPinned(report.id, !isPinned);
        await load();
      }));
      const remove = h('button', { type: 'button', class: 'link' }, `Delete ${report.name}`);
      remove.addEventListener('click', () => {
        if (!confirm(`Delete the report “${report.name}”?`)) return;
        void frame.busy('Deleting…', async () => {
          await api('DELETE', `api/reports/${report.id}`);
          await load();
        });
      });
      return h('li', {}, h('a', { href: hashOf(report) }, report.name), ' ',
        h('span', { class: 'muted' }, `${VIEW_NAMES[report.view] ?? report.view}, saved ${new Date(report.updated_ms).toLocaleString()}`),
        ' ', pin, ' ', remove);
    })));
  });
  void load();
}

export function renderDashboard(main: HTMLElement, hashOf: (report: SavedReport) => string, draw: ReportRenderer): void {
  const frame = viewFrame(main, 'Dashboard', 'The charts pinned for this project, each run now.');
  frame.form.hidden = true;
  void frame.busy('Loading the dashboard…', async (isLatest) => {
    const [reports, dashboard] = await Promise.all([api<SavedReport[]>('GET', 'api/reports'), theDashboard(false)]);
    if (!isLatest()) return;
    const byId = new Map(reports.map((report) => [report.id, report]));
    const pinned = (dashboard?.reports ?? []).map((id) => byId.get(id)).filter((report): report is SavedReport => !!report);
    clear(frame.results);
    if (!pinned.length) {
      frame.results.append(h('p', { class: 'empty' }, 'Nothing pinned yet: save a report and pin it from ',
        h('a', { href: '#/reports' }, 'Saved reports'), '.'));
      return;
    }
    for (const report of pinned) {
      const body = h('div', { class: 'pinned' });
      frame.results.append(h('article', { class: 'card', 'aria-label': report.name },
        h('h2', {}, h('a', { href: hashOf(report) }, report.name)), body));
      draw(body, report);
    }
    document.title = 'Dashboard · minpanel';
  });
}
