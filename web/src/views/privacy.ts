// Privacy: the project's policy as text (GET api/policy) and a preview box
// (POST api/policy/preview): paste an event as an SDK would send it, see
// what would be stored and what changed why. Nothing is stored; both need
// the admin scope (docs/privacy.md).
import { api } from '../api';
import { clear, field, h } from '../dom';
import { runButton, viewFrame } from '../view';

export interface PrivacyState {
  sample: string;
}

const SAMPLE = JSON.stringify({
  event: 'Signed Up',
  properties: {
    distinct_id: 'user-42', time: 1767225600000, $email: 'ada@example.test', plan: 'pro',
    note: 'call me on +44 20 7946 0958', $current_url: 'https://shop.example.test/welcome?token=abc#top',
    ip: '192.0.2.10',
  },
}, null, 2);

export function privacyDefaults(): PrivacyState {
  return { sample: '' };
}

interface PolicyAnswer {
  project: string;
  version: number;
  text: string;
  default: boolean;
}

interface PreviewAnswer {
  policy_version: number;
  events: { index: number; stored: unknown; changes: { field: string; change: string; by: string }[] }[];
  refused: { index: number; field: string; message: string }[];
}

function previewResult(answer: PreviewAnswer): HTMLElement {
  const out = h('div', { class: 'preview' });
  for (const event of answer.events) {
    out.append(h('h3', {}, `Event ${event.index + 1}: what would be stored`),
      h('pre', { class: 'code', tabindex: 0, 'aria-label': `Event ${event.index + 1} as it would be stored` },
        JSON.stringify(event.stored, null, 2)),
      h('div', { class: 'table-scroll' }, h('table', { class: 'data changes' },
        h('caption', {}, 'What the policy changed, and why'),
        h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Field'), h('th', { scope: 'col' }, 'Change'), h('th', { scope: 'col' }, 'By'))),
        h('tbody', {}, event.changes.map((change) => h('tr', {},
          h('th', { scope: 'row' }, change.field), h('td', {}, change.change), h('td', {}, change.by)))))));
  }
  for (const refused of answer.refused) {
    out.append(h('p', { class: 'status error', role: 'alert' }, `Event ${refused.index + 1} would be refused: ${refused.field}: ${refused.message}`));
  }
  return out;
}

export function renderPrivacy(main: HTMLElement, state: PrivacyState, onRun: (state: PrivacyState) => void): void {
  const frame = viewFrame(main, 'Privacy',
    'The policy that decides what is stored, and a preview: paste an event as your SDK sends it and see what minpanel would keep. The preview stores nothing.');
  const policyBox = h('section', { class: 'policy', 'aria-label': 'Policy in force' });
  frame.results.before(policyBox);
  const sample = h('textarea', { name: 'sample', rows: 12, spellcheck: 'false', class: 'code' });
  sample.value = state.sample || SAMPLE;
  frame.form.append(field('Event to preview (JSON, as /import takes it)', sample,
    'One event, an array or JSON lines. Use made-up values: the preview is not stored or logged.'), runButton('Preview'));
  void (async () => {
    try {
      const policy = await api<PolicyAnswer>('GET', 'api/policy');
      policyBox.append(h('h2', {}, policy.default ? 'Policy: the built-in default' : `Policy version ${policy.version}`),
        policy.default
          ? h('p', {}, 'No policy file: ids are pseudonymised, IP and user agent generalised and discarded, URLs lose query and fragment, properties named for people dropped, and emails, phones, cards, IBANs, IPs, JWTs and API keys redacted wherever they appear.')
          : h('pre', { class: 'code', tabindex: 0, 'aria-label': 'Policy text' }, policy.text));
    } catch (error) {
      policyBox.append(h('p', { class: 'status error' }, `The policy could not be read: ${(error as Error).message}`));
    }
  })();
  frame.form.addEventListener('submit', (submitted) => {
    submitted.preventDefault();
    // The sample may hold made-up personal data: it never goes into the URL.
    onRun({ sample: '' });
    void frame.busy('Previewing…', async (isLatest) => {
      const body = await api<PreviewAnswer>('POST', 'api/policy/preview', {}, sample.value);
      if (!isLatest()) return;
      clear(frame.results);
      frame.results.append(previewResult(body));
    });
  });
}
