// The dashboard's calls to feltbog-server (`/dashboard/api/`). The session cookie is HttpOnly
// and sent by the browser; changes carry the session's CSRF token in a header.

import type { Lang } from './words';

export interface Team {
  id: string;
  name: string;
}

export interface Session {
  name: string;
  csrf: string;
  teams: Team[];
}

/** One cell as the server sends it: text, a number, "<5" (hidden) or null (no mean). */
export type Cell = string | number | null;

/** A labelled table of a report (the server's `reports::export::Table`). */
export interface Table {
  title: string;
  columns: string[];
  rows: Cell[][];
  chart: 'bar' | 'line' | null;
}

export const REPORTS = ['contacts', 'referrals', 'follow_ups', 'housing', 'courses', 'wellbeing', 'conflicts'] as const;
export type ReportName = (typeof REPORTS)[number];

export interface Filter {
  from: string;
  to: string;
  team: string | null;
}

/** A refusal the page can explain: its stable code and, for "wait", the seconds to wait. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    readonly waitSeconds: number | null,
  ) {
    super(code);
  }
}

async function call(path: string, init: RequestInit = {}): Promise<Response> {
  const response = await fetch(path, { credentials: 'same-origin', ...init });
  if (!response.ok) {
    let code = 'other';
    try {
      code = ((await response.json()) as { code?: string }).code ?? 'other';
    } catch {
      // Not JSON: keep "other".
    }
    const wait = response.headers.get('Retry-After');
    throw new ApiError(response.status, code, wait === null ? null : Number(wait));
  }
  return response;
}

function post(path: string, body: unknown, csrf?: string): Promise<Response> {
  const headers: Record<string, string> = { 'Content-Type': 'application/json' };
  if (csrf) headers['X-CSRF-Token'] = csrf;
  return call(path, { method: 'POST', headers, body: JSON.stringify(body) });
}

/** The current session, or null when signed out. */
export async function currentSession(): Promise<Session | null> {
  try {
    return (await (await call('/dashboard/api/session')).json()) as Session;
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return null;
    throw e;
  }
}

export async function signIn(login: string, password: string): Promise<Session> {
  return (await (await post('/dashboard/api/sign-in', { login, password })).json()) as Session;
}

export async function setUp(login: string, code: string, password: string): Promise<void> {
  await post('/dashboard/api/setup', { login, code, password });
}

export async function signOut(csrf: string): Promise<void> {
  await post('/dashboard/api/sign-out', {}, csrf);
}

/** The address of a report in a format (also the download links). */
export function reportUrl(name: ReportName, filter: Filter, format: string, lang: Lang): string {
  const q = new URLSearchParams({ from: filter.from, to: filter.to, format, lang });
  if (filter.team) q.set('team', filter.team);
  return `/dashboard/api/reports/${name}?${q.toString()}`;
}

export async function reportTables(name: ReportName, filter: Filter, lang: Lang): Promise<Table[]> {
  return (await (await call(reportUrl(name, filter, 'tables', lang))).json()) as Table[];
}

/** An open free-text conflict in the supervisor's teams (the server's `review::OpenConflict`). */
export interface OpenConflict {
  id: string;
  what: string;
  current: string;
  other: string;
  current_author: string | null;
  other_author: string | null;
  created_at: string;
  can_merge: boolean;
}

/** A supervisor's decision (the server's `sync::Decision`). */
export type Decision = { keep: 'current' } | { keep: 'other' } | { keep: 'merged'; text: string };

export async function openConflicts(lang: Lang): Promise<OpenConflict[]> {
  return (await (await call(`/dashboard/api/conflicts?lang=${lang}`)).json()) as OpenConflict[];
}

export async function settleConflict(id: string, decision: Decision, csrf: string): Promise<void> {
  await post(`/dashboard/api/conflicts/${encodeURIComponent(id)}`, decision, csrf);
}
