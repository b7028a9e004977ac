// The dashboard's only door to minpanel: the public HTTP API, same origin,
// the key as the Basic user (as every API client sends it). The key lives
// in sessionStorage — gone when the tab closes, never in a URL.

const KEY_STORAGE = 'minpanel.key';
const PROJECT_STORAGE = 'minpanel.project';
const PROJECT_ID_STORAGE = 'minpanel.project_id';
const PROJECTS_STORAGE = 'minpanel.projects';

// A project as GET api/projects lists it (docs/formats/dashboard-api.md).
export interface ProjectInfo {
  id: number;
  name: string;
  time_zone: string;
}

export class ApiError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

export function storedKey(): string | null {
  return sessionStorage.getItem(KEY_STORAGE);
}

export function storedProject(): string | null {
  return sessionStorage.getItem(PROJECT_STORAGE);
}

export function signOut(): void {
  sessionStorage.removeItem(KEY_STORAGE);
  sessionStorage.removeItem(PROJECT_STORAGE);
  sessionStorage.removeItem(PROJECT_ID_STORAGE);
  sessionStorage.removeItem(PROJECTS_STORAGE);
}

// The projects the signed-in key reaches (empty when it may not list them).
export function storedProjects(): ProjectInfo[] {
  try {
    const list = JSON.parse(sessionStorage.getItem(PROJECTS_STORAGE) ?? '[]') as ProjectInfo[];
    return Array.isArray(list) ? list : [];
  } catch {
    return [];
  }
}

export function storedProjectId(): string {
  return sessionStorage.getItem(PROJECT_ID_STORAGE) ?? '';
}

// Switches the project every later call names (the project picker).
export function chooseProject(project: ProjectInfo): void {
  sessionStorage.setItem(PROJECT_ID_STORAGE, String(project.id));
  sessionStorage.setItem(PROJECT_STORAGE, project.name);
}

// The project a server-wide key works on (sent as ?project_id=, as every
// API client names it; docs/security.md); empty for a project's own key.
function withProject(path: string, projectId: string): string {
  return projectId ? `${path}?project_id=${encodeURIComponent(projectId)}` : path;
}

function authorization(key: string): string {
  // btoa takes Latin-1 only; a key is ASCII, but encode it safely anyway.
  const bytes = new TextEncoder().encode(`${key}:`);
  let binary = '';
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return `Basic ${btoa(binary)}`;
}

// The API's own message ({"error": "..."}), or the status text.
async function errorOf(response: Response): Promise<ApiError> {
  let message = `${response.status} ${response.statusText}`;
  try {
    const text = await response.text();
    try {
      const body = JSON.parse(text) as { error?: string };
      if (body && typeof body.error === 'string') message = body.error;
    } catch {
      if (text.trim()) message = text.trim().slice(0, 500);
    }
  } catch {
    // The body could not be read: the status says enough.
  }
  return new ApiError(response.status, message);
}

async function call(method: string, path: string, key: string, body?: unknown): Promise<unknown> {
  let response: Response;
  try {
    response = await fetch(path, {
      method,
      headers: {
        Authorization: authorization(key),
        ...(body === undefined ? {} : { 'Content-Type': 'application/json' }),
      },
      // A string is sent as it is (a pasted event for the policy preview).
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
      credentials: 'omit',
      cache: 'no-store',
    });
  } catch (error) {
    throw new ApiError(0, `could not reach minpanel (${(error as Error).message})`);
  }
  if (!response.ok) throw await errorOf(response);
  return response.json();
}

// POST api/query (docs/queries.md); the path is relative so that the
// dashboard also works behind a path prefix.
export function query<T>(body: unknown): Promise<T> {
  const key = storedKey();
  if (!key) return Promise.reject(new ApiError(401, 'not signed in'));
  const projectId = sessionStorage.getItem(PROJECT_ID_STORAGE) ?? '';
  return call('POST', withProject('api/query', projectId), key, body) as Promise<T>;
}

// Any other API call of the signed-in key, on its project: GET with query
// parameters, or a JSON body.
export function api<T>(method: string, path: string, params: Record<string, string> = {}, body?: unknown): Promise<T> {
  const key = storedKey();
  if (!key) return Promise.reject(new ApiError(401, 'not signed in'));
  const search = new URLSearchParams(params);
  const projectId = storedProjectId();
  if (projectId) search.set('project_id', projectId);
  const text = search.toString();
  return call(method, text ? `${path}?${text}` : path, key, body) as Promise<T>;
}

// Checks a key: first GET api/projects (the projects it reaches; a key
// without the query scope may not list them, which is no refusal), then a
// one-hour question to the query API, so any key the API accepts works —
// the project secret, or an access key with a query scope
// (docs/security.md). A server-wide key names its project with the project
// id field or, when it reaches several and none is named, picks one in the
// project picker: signIn then answers `choose`. A 401 refuses the key; a
// 403 on the query (a key limited to some events, which may not ask about
// any event) still signs in: each view shows the API's answer to its own
// query. The project's name comes from the list, else GET api/policy (admin
// scope), else the project id, or "project".
export async function signIn(key: string, projectId: string): Promise<{ project: string; choose: boolean }> {
  let projects: ProjectInfo[] = [];
  try {
    projects = (await call('GET', withProject('api/projects', projectId), key)) as ProjectInfo[];
  } catch (error) {
    if (!(error instanceof ApiError) || error.status !== 403) throw error;
  }
  sessionStorage.setItem(PROJECTS_STORAGE, JSON.stringify(projects));
  if (!projectId && projects.length === 1) projectId = String(projects[0].id);
  if (!projectId && projects.length > 1) {
    sessionStorage.setItem(KEY_STORAGE, key);
    sessionStorage.removeItem(PROJECT_ID_STORAGE);
    sessionStorage.removeItem(PROJECT_STORAGE);
    return { project: '', choose: true };
  }
  try {
    await call('POST', withProject('api/query', projectId), key, {
      kind: 'segmentation', from: '-1h', to: 'now', unit: 'hour', events: [{ any_event: true }],
    });
  } catch (error) {
    if (!(error instanceof ApiError) || error.status !== 403) throw error;
  }
  let project = projects.find((item) => String(item.id) === projectId)?.name ?? (projectId || 'project');
  if (!projects.length) {
    try {
      const policy = (await call('GET', withProject('api/policy', projectId), key)) as { project?: string };
      if (typeof policy.project === 'string') project = policy.project;
    } catch {
      // A key without the admin scope still signs in.
    }
  }
  sessionStorage.setItem(KEY_STORAGE, key);
  sessionStorage.setItem(PROJECT_STORAGE, project);
  sessionStorage.setItem(PROJECT_ID_STORAGE, projectId);
  return { project, choose: false };
}
