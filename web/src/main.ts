// The dashboard's entry: sign-in, the hash router and the views. Every view
// keeps its whole state in the URL's fragment (#/insights?s=<JSON>), so a
// link restores the view; the key is never part of it.
import { signIn, signOut, storedKey, storedProject, ApiError } from './api';
import { clear, field, h } from './dom';
import { funnelsDefaults, renderFunnels } from './views/funnels';
import { insightsDefaults, renderInsights } from './views/insights';
import { renderRetention, retentionDefaults } from './views/retention';

type ViewName = 'insights' | 'funnels' | 'retention';

interface Route {
  view: ViewName | 'sign-in';
  state: unknown;
}

const VIEWS: ViewName[] = ['insights', 'funnels', 'retention'];

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

function setChrome(signedIn: boolean, view: Route['view']): void {
  const nav = document.getElementById('nav')!;
  const project = document.getElementById('project')!;
  const signOutButton = document.getElementById('sign-out')!;
  nav.hidden = !signedIn;
  project.hidden = !signedIn;
  signOutButton.hidden = !signedIn;
  project.textContent = signedIn ? `Project: ${storedProject() ?? 'project'}` : '';
  nav.querySelectorAll('a').forEach((link) => {
    if (link.dataset.view === view) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  });
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
      await signIn(key.value.trim(), projectId.value.trim());
      const target = next && !next.startsWith('#/sign-in') ? next : '#/insights';
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

function route(): void {
  const current = parseRoute(location.hash);
  if (!storedKey() || current.view === 'sign-in') {
    if (current.view !== 'sign-in') pendingHash = location.hash;
    renderSignIn(pendingHash);
    return;
  }
  setChrome(true, current.view);
  const onRun = (view: ViewName) => (state: unknown) => {
    const hash = viewHash(view, state);
    if (hash !== location.hash) history.pushState(null, '', hash);
  };
  const autorun = current.state !== null;
  if (current.view === 'funnels') {
    renderFunnels(main(), restore(funnelsDefaults(), current.state), onRun('funnels'), autorun);
  } else if (current.view === 'retention') {
    renderRetention(main(), restore(retentionDefaults(), current.state), onRun('retention'), autorun);
  } else {
    renderInsights(main(), restore(insightsDefaults(), current.state), onRun('insights'), autorun);
  }
}

document.getElementById('sign-out')!.addEventListener('click', () => {
  signOut();
  pendingHash = '';
  location.hash = '#/sign-in';
});
window.addEventListener('hashchange', route);
route();
