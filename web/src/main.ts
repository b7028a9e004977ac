// The dashboard's entry: sign-in, the hash router and the views. Every view
// keeps its whole state in the URL's fragment (#/insights?s=<JSON>), so a
// link restores the view; the key is never part of it.
import { chooseProject, signIn, signOut, storedKey, storedProject, storedProjectId, storedProjects, ApiError, ProjectInfo } from './api';
import { clear, field, h, select } from './dom';
import { loadNames } from './names';
import { auditDefaults, renderAudit } from './views/audit';
import { renderDataMap } from './views/datamap';
import { funnelsDefaults, renderFunnels } from './views/funnels';
import { insightsDefaults, renderInsights } from './views/insights';
import { liveDefaults, renderLive } from './views/live';
import { privacyDefaults, renderPrivacy } from './views/privacy';
import { renderDashboard, renderReports, ReportView, saveReport, SavedReport } from './views/reports';
import { renderRetention, retentionDefaults } from './views/retention';

type ViewName = ReportView | 'live' | 'privacy' | 'datamap' | 'audit' | 'reports' | 'dashboard' | 'projects';

interface Route {
  view: ViewName | 'sign-in';
  state: unknown;
}

const VIEWS: ViewName[] = ['insights', 'funnels', 'retention', 'live', 'privacy', 'datamap', 'audit', 'reports', 'dashboard', 'projects'];

function parseRoute(hash: string): Route {
  const match = /^#\/([a-z-]+)(?:\?(.*))?$/.exec(hash);
  if (!match) return { view: 'insights', state: null };
  const view = match[1] as Route['view'];
  if (view !== 'sign-in' && !VIEWS.includes(view)) return { view: 'insights', state: null };
  let state: unknown = null;
  const encoded = new URLSearchParams(match[2] ?? '').get('s');
  if (encoded) {
    try {
      state = JSON.parse(encoded);
    } catch {
      state = null;
    }
  }
  return { view, state };
}

export function viewHash(view: ViewName, state: unknown): string {
  return `#/${view}?${new URLSearchParams({ s: JSON.stringify(state) }).toString()}`;
}

// A state from a link: the defaults, overwritten by the link's known fields
// of the right type (an edited or old link never breaks the view).
function restore<T extends object>(defaults: T, saved: unknown): T {
  if (!saved || typeof saved !== 'object') return defaults;
  const result = { ...defaults } as Record<string, unknown>;
  for (const [key, value] of Object.entries(saved as Record<string, unknown>)) {
    const expected = (defaults as Record<string, unknown>)[key];
    if (expected === undefined) continue;
    if (Array.isArray(expected) ? Array.isArray(value) : typeof value === typeof expected && value !== null) {
      result[key] = value;
    }
  }
  return result as T;
}

function main(): HTMLElement {
  return document.getElementById('main')!;
}

// The header: the views, the project (a picker when the key reaches
// several), sign-out.
function setChrome(signedIn: boolean, view: Route['view']): void {
  const nav = document.getElementById('nav')!;
  const project = document.getElementById('project')!;
  const signOutButton = document.getElementById('sign-out')!;
  nav.hidden = !signedIn || !storedProjectId() && storedProjects().length > 1;
  project.hidden = !signedIn;
  signOutButton.hidden = !signedIn;
  clear(project);
  const projects = storedProjects();
  if (signedIn && projects.length > 1) {
    const picker = select(projects.map((item): [string, string] => [String(item.id), item.name]),
      storedProjectId(), { name: 'project', 'aria-label': 'Project' });
    if (!storedProjectId()) picker.prepend(h('option', { value: '', selected: true, disabled: true }, 'Choose…'));
    picker.addEventListener('change', () => {
      const chosen = projects.find((item) => String(item.id) === picker.value);
      if (chosen) pickProject(chosen);
    });
    project.append(h('label', { for: 'project-picker' }, 'Project '), picker);
    picker.id = 'project-picker';
  } else if (signedIn) {
    project.textContent = `Project: ${storedProject() ?? 'project'}`;
  }
  nav.querySelectorAll('a').forEach((link) => {
    if (link.dataset.view === view) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  });
}

// Another project: every view reads it from here on; the current view
// (its URL) is shown again for it, or Insights after the picker.
function pickProject(project: ProjectInfo): void {
  chooseProject(project);
  const current = parseRoute(location.hash);
  if (current.view === 'projects' || current.view === 'sign-in') location.hash = pendingHash || '#/insights';
  else route();
}

function renderProjects(): void {
  const root = main();
  clear(root);
  document.title = 'Projects · minpanel';
  const projects = storedProjects();
  root.append(h('h1', {}, 'Choose a project'),
    h('p', { class: 'lead' }, 'This key reaches several projects. Pick one; the header\'s picker switches later.'),
    projects.length
      ? h('ul', { class: 'project-list', 'aria-label': 'Projects' }, projects.map((project) => {
        const button = h('button', { type: 'button', class: 'secondary' }, project.name);
        button.addEventListener('click', () => pickProject(project));
        return h('li', {}, button, ' ', h('span', { class: 'muted' }, `id ${project.id}, ${project.time_zone}`));
      }))
      : h('p', { class: 'empty' }, 'This key may not list projects: sign in again with the project id.'));
}

function renderSignIn(next: string): void {
  setChrome(false, 'sign-in');
  document.title = 'Sign in · minpanel';
  const root = main();
  clear(root);
  const key = h('input', { type: 'password', name: 'key', autocomplete: 'off', required: true, spellcheck: 'false' });
  const projectId = h('input', { type: 'text', name: 'project_id', autocomplete: 'off', spellcheck: 'false' });
  const status = h('div', { class: 'status', role: 'status', 'aria-live': 'polite' });
  const button = h('button', { type: 'submit', class: 'primary' }, 'Sign in');
  const form = h('form', { class: 'sign-in', 'aria-label': 'Sign in' },
    h('h1', {}, 'Sign in to minpanel'),
    h('p', {}, 'Paste a key of your project: the project secret, or an access key that may run queries. ' +
      'It stays in this tab only (session storage) and is sent to this server alone.'),
    field('Project key', key),
    field('Project id (server-wide keys only)', projectId, 'Leave empty for a project secret or a project\'s own key.'),
    button, status);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    if (!key.value.trim()) {
      status.className = 'status error';
      status.textContent = 'Enter a key.';
      key.focus();
      return;
    }
    button.disabled = true;
    status.className = 'status loading';
    status.textContent = 'Checking the key…';
    try {
      const signedIn = await signIn(key.value.trim(), projectId.value.trim());
      const after = next && !next.startsWith('#/sign-in') ? next : '#/insights';
      if (signedIn.choose) pendingHash = after;
      const target = signedIn.choose ? '#/projects' : after;
      if (location.hash === target) route();
      else location.hash = target;
    } catch (error) {
      status.className = 'status error';
      status.setAttribute('role', 'alert');
      const apiError = error as ApiError;
      status.textContent = apiError.status === 401 || apiError.status === 403
        ? `The key was refused (${apiError.status}): ${apiError.message}`
        : `Sign-in failed: ${apiError.message}`;
    } finally {
      button.disabled = false;
    }
  });
  root.append(form);
  key.focus();
}

let pendingHash = '';

// The bar above a query view: save its current state as a report of the
// project (and pin it to the dashboard).
function saveBar(view: ReportView, current: () => unknown): HTMLElement {
  const name = h('input', { type: 'text', name: 'report_name', autocomplete: 'off', maxlength: 200, required: true });
  const pin = h('input', { type: 'checkbox', name: 'pin', id: `${view}-pin` });
  pin.checked = true;
  const status = h('span', { class: 'status', role: 'status', 'aria-live': 'polite' });
  const form = h('form', { class: 'save-bar', 'aria-label': 'Save report' },
    field('Report name', name), h('div', { class: 'field check' }, pin, h('label', { for: `${view}-pin` }, 'Pin to the dashboard')),
    h('button', { type: 'submit', class: 'secondary' }, 'Save report'), status);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    if (!name.value.trim()) {
      status.className = 'status error';
      status.textContent = 'Name the report first.';
      name.focus();
      return;
    }
    status.className = 'status loading';
    status.textContent = 'Saving…';
    try {
      const report = await saveReport(name.value.trim(), view, current(), pin.checked);
      status.className = 'status';
      status.textContent = `Saved “${report.name}”${pin.checked ? ' and pinned to the dashboard' : ''}.`;
    } catch (error) {
      status.className = 'status error';
      status.textContent = `Not saved: ${(error as Error).message}`;
    }
  });
  return form;
}

function reportHash(report: SavedReport): string {
  return viewHash(report.view, report.state);
}

// Draws a query view into `container` with the state given and runs it.
function drawView(container: HTMLElement, view: ReportView, state: unknown, onRun: (state: unknown) => void, autorun: boolean): void {
  if (view === 'funnels') renderFunnels(container, restore(funnelsDefaults(), state), onRun, autorun);
  else if (view === 'retention') renderRetention(container, restore(retentionDefaults(), state), onRun, autorun);
  else renderInsights(container, restore(insightsDefaults(), state), onRun, autorun);
}

function route(): void {
  const current = parseRoute(location.hash);
  if (!storedKey() || current.view === 'sign-in') {
    if (current.view !== 'sign-in') pendingHash = location.hash;
    renderSignIn(pendingHash);
    return;
  }
  if (!storedProjectId() && storedProjects().length > 1 && current.view !== 'projects') {
    pendingHash = location.hash;
    location.hash = '#/projects';
    return;
  }
  setChrome(true, current.view);
  const onRun = (view: ViewName) => (state: unknown) => {
    const hash = viewHash(view, state);
    if (hash !== location.hash) history.pushState(null, '', hash);
  };
  const autorun = current.state !== null;
  const root = main();
  switch (current.view) {
    case 'projects':
      renderProjects();
      return;
    case 'live':
      renderLive(root, restore(liveDefaults(), current.state), onRun('live'));
      return;
    case 'privacy':
      renderPrivacy(root, restore(privacyDefaults(), current.state), onRun('privacy'));
      return;
    case 'audit':
      renderAudit(root, restore(auditDefaults(), current.state), onRun('audit'));
      return;
    case 'datamap':
      renderDataMap(root);
      return;
    case 'reports':
      renderReports(root, reportHash);
      return;
    case 'dashboard':
      renderDashboard(root, reportHash, (container, report) => drawView(container, report.view, report.state, () => undefined, true));
      return;
    default: {
      void loadNames(storedProjectId());
      const view = current.view as ReportView;
      let state: unknown = current.state;
      drawView(root, view, state, (next) => {
        state = next;
        onRun(view)(next);
      }, autorun);
      root.querySelector('h1')!.after(saveBar(view, () => state ?? parseRoute(location.hash).state ?? {}));
    }
  }
}

document.getElementById('sign-out')!.addEventListener('click', () => {
  signOut();
  pendingHash = '';
  location.hash = '#/sign-in';
});
window.addEventListener('hashchange', route);
route();
