// The app's Rust commands, typed. Every call goes through `invoke`; the Rust side (src-tauri,
// over feltbog-core's `app` module) validates everything again. Errors arrive as `AppError`.
import { invoke } from '@tauri-apps/api/core';
import { listen, type UnlistenFn } from '@tauri-apps/api/event';
import type {
  AppError,
  AppState,
  CitizenDetail,
  CitizenInput,
  CitizenSummary,
  Colleague,
  ConflictChoice,
  ConflictView,
  DraftView,
  EnrolmentLink,
  FirstRunInput,
  HandoverInput,
  PathwayEdit,
  Settings,
  SiteInput,
  SiteLogInput,
  SiteLogView,
  SiteView,
  SetAsideView,
  SyncBar,
  TaskEdit,
  TaskInput,
  TaskStatus,
  TaskView,
  Today,
  VisitEdit,
  VisitInput,
} from './bindings';

/** Narrows an unknown rejection to the app's error shape. */
export function isAppError(e: unknown): e is AppError {
  return typeof e === 'object' && e !== null && 'code' in e && 'message' in e;
}

export const api = {
  appState: () => invoke<AppState>('app_state'),
  firstRun: (input: FirstRunInput) => invoke<AppState>('first_run', { input }),
  /** Reads a scanned enrolment QR code (`text`), or with `null` the `feltbog-enrol:` link the
   *  app was opened with. Rust decides what is an enrolment (foreign_code, damaged_code). */
  enrolmentLink: (text: string | null) => invoke<EnrolmentLink | null>('enrolment_link', { text }),
  unlock: (pin: string) => invoke<AppState>('unlock', { pin }),
  lock: () => invoke<void>('lock'),
  /** User activity: postpones the idle lock. */
  touch: () => invoke<void>('touch'),
  today: () => invoke<Today>('today'),
  caseload: (search: string) => invoke<CitizenSummary[]>('caseload', { search }),
  citizen: (id: string) => invoke<CitizenDetail>('citizen', { id }),
  /** Create (`startedFrom` null) or edit: `startedFrom` is the form as it was opened, so
   *  Rust writes only what the worker changed and keeps a colleague's edit synced meanwhile. */
  saveCitizen: (input: CitizenInput, startedFrom: CitizenInput | null) =>
    invoke<string>('save_citizen', { input, started_from: startedFrom }),
  saveVisit: (input: VisitInput) => invoke<string>('save_visit', { input }),
  /** One edit of a citizen's pathway (an item saved or removed, or the circumstances), made on
   *  the citizen as stored now: a colleague's edit of another item is kept. */
  savePathway: (citizenId: string, edit: PathwayEdit) =>
    invoke<void>('save_pathway', { citizen_id: citizenId, edit }),
  /** Corrects a visit (its author only): Rust writes only what differs from `startedFrom`. */
  editVisit: (id: string, edited: VisitEdit, startedFrom: VisitEdit) =>
    invoke<void>('edit_visit', { id, edited, started_from: startedFrom }),
  /** Links an anonymous contact to a citizen (a new visit about them; the contact archived). */
  linkVisit: (id: string, citizenId: string) => invoke<string>('link_visit', { id, citizen_id: citizenId }),
  tasks: (includeClosed: boolean) => invoke<TaskView[]>('tasks', { include_closed: includeClosed }),
  saveTask: (input: TaskInput) => invoke<string>('save_task', { input }),
  setTaskStatus: (id: string, status: TaskStatus) => invoke<void>('set_task_status', { id, status }),
  /** Changes a task: Rust writes only what differs from `startedFrom` (the form as opened). */
  editTask: (id: string, edited: TaskEdit, startedFrom: TaskEdit) =>
    invoke<void>('edit_task', { id, edited, started_from: startedFrom }),
  /** Workers of the team who carry cases (for assigning and handing over). */
  colleagues: () => invoke<Colleague[]>('colleagues'),
  handOver: (input: HandoverInput) => invoke<void>('hand_over', { input }),
  sites: () => invoke<SiteView[]>('sites'),
  saveSite: (input: SiteInput) => invoke<string>('save_site', { input }),
  siteLog: (siteId: string) => invoke<SiteLogView[]>('site_log', { site_id: siteId }),
  saveSiteLog: (input: SiteLogInput) => invoke<string>('save_site_log', { input }),
  conflicts: () => invoke<ConflictView[]>('conflicts'),
  resolveConflict: (id: string, choice: ConflictChoice) =>
    invoke<void>('resolve_conflict', { id, choice }),
  /** Edits the server refused, kept on this tablet until the worker decides. */
  setAside: () => invoke<SetAsideView[]>('set_aside'),
  /** Sends a refused edit again as a new edit of the record as it is now. */
  resendSetAside: (seq: number) => invoke<void>('resend_set_aside', { seq }),
  /** Puts a refused visit's values into a new contact (about `citizenId`, or anonymous). */
  copySetAside: (seq: number, citizenId: string | null) =>
    invoke<string>('copy_set_aside', { seq, citizen_id: citizenId }),
  /** Deletes a refused edit for good (after the worker confirmed). */
  discardSetAside: (seq: number) => invoke<void>('discard_set_aside', { seq }),
  /** Keeps a half-typed form, sealed in the store (under the citizen's key when it names one). */
  saveDraft: (form: string, citizenId: string | null, content: unknown) =>
    invoke<void>('save_draft', { form, citizen_id: citizenId, content }),
  draft: (form: string) => invoke<DraftView | null>('draft', { form }),
  discardDraft: (form: string) => invoke<void>('discard_draft', { form }),
  syncBar: () => invoke<SyncBar>('sync_bar'),
  /** Asks the background sync to run now; progress arrives as `sync` events. */
  syncNow: () => invoke<SyncBar>('sync_now'),
  setSettings: (settings: Settings) => invoke<Settings>('set_settings', { settings }),
  /** Sign out and wipe: deletes the store from this device. `unsyncedShown` is the number of
   *  unsynced changes the confirmation showed; Rust refuses if more are waiting now. */
  wipe: (unsyncedShown: number) => invoke<AppState>('wipe', { unsynced_shown: unsyncedShown }),
};

/** The sync bar as it changes (pushed by the background sync). */
export function onSync(handler: (bar: SyncBar) => void): Promise<UnlistenFn> {
  return listen<SyncBar>('sync', (e) => handler(e.payload));
}

/** The idle lock fired in Rust; the UI reloads to drop everything it showed. */
export function onLocked(handler: () => void): Promise<UnlistenFn> {
  return listen('locked', () => handler());
}
