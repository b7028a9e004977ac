// What every view shares: the form, the status line (loading and errors
// with the API's own message) and the result area.
import { ApiError } from './api';
import { clear, h } from './dom';

export interface ViewFrame {
  form: HTMLFormElement;
  status: HTMLElement;
  results: HTMLElement;
  // Runs `task` with a loading state; an error is shown with what went wrong.
  // Answers can come back out of order (a query submitted while the last one
  // runs): task gets isLatest, and shows its answer only while it is still
  // the newest task of this view.
  busy: (label: string, task: (isLatest: () => boolean) => Promise<void>) => Promise<void>;
}

// Numbers a box's requests: turns() gives a function that starts a request
// and returns whether that request is still the newest when it answers.
export function turns(): () => () => boolean {
  let newest = 0;
  return () => {
    newest += 1;
    const mine = newest;
    return () => mine === newest;
  };
}

export function viewFrame(main: HTMLElement, title: string, description: string): ViewFrame {
  clear(main);
  const form = h('form', { class: 'query', novalidate: true, 'aria-label': `${title} query` });
  const status = h('div', { class: 'status', role: 'status', 'aria-live': 'polite' });
  const results = h('section', { class: 'results', 'aria-label': `${title} results` });
  main.append(h('h1', {}, title), h('p', { class: 'lead' }, description), form, status, results);
  document.title = `${title} · minpanel`;
  const turn = turns();
  const busy = async (label: string, task: (isLatest: () => boolean) => Promise<void>) => {
    const isLatest = turn();
    clear(status);
    status.className = 'status loading';
    status.append(h('span', { class: 'spinner', 'aria-hidden': 'true' }), label);
    results.setAttribute('aria-busy', 'true');
    try {
      await task(isLatest);
      if (!isLatest()) return;
      clear(status);
      status.className = 'status';
    } catch (error) {
      if (!isLatest()) return;
      clear(status);
      status.className = 'status error';
      status.setAttribute('role', 'alert');
      const message = error instanceof ApiError
        ? error.status === 0
          ? error.message
          : `The server answered ${error.status}: ${error.message}`
        : `Something went wrong: ${(error as Error).message}`;
      status.append(h('strong', {}, 'Query failed. '), message);
      if (error instanceof ApiError && error.status === 401) {
        status.append(' ', h('a', { href: '#/sign-in' }, 'Sign in again'));
      }
    } finally {
      if (isLatest()) results.removeAttribute('aria-busy');
    }
  };
  return { form, status, results, busy };
}

export function runButton(label = 'Run'): HTMLButtonElement {
  return h('button', { type: 'submit', class: 'primary' }, label);
}
