// The project's known event names and property keys (GET api/names), as
// two <datalist>s that the query forms' name fields offer while typing.
// Loaded once per project; a key that may not list them keeps free text.
import { api } from './api';
import { clear, h } from './dom';

export const EVENT_NAMES_LIST = 'minpanel-event-names';
export const PROPERTY_KEYS_LIST = 'minpanel-property-keys';

interface Names {
  events: { name: string; count: number }[];
  properties: { key: string; count: number }[];
}

let loadedFor: string | null = null;

function datalist(id: string): HTMLDataListElement {
  const existing = document.getElementById(id);
  if (existing instanceof HTMLDataListElement) return existing;
  const created = h('datalist', { id });
  document.body.append(created);
  return created;
}

export async function loadNames(projectId: string): Promise<void> {
  if (loadedFor === projectId) return;
  loadedFor = projectId;
  const events = datalist(EVENT_NAMES_LIST);
  const properties = datalist(PROPERTY_KEYS_LIST);
  clear(events);
  clear(properties);
  try {
    const names = await api<Names>('GET', 'api/names');
    events.append(...names.events.map((item) => h('option', { value: item.name }, `${item.count} events`)));
    properties.append(...names.properties.map((item) => h('option', { value: item.key }, `on ${item.count} events`)));
  } catch {
    loadedFor = null;  // a key without the scope: the fields stay free text
  }
}
