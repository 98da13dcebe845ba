// A stand-in for the Rust backend in browser tests: Tauri's own `mockIPC` answers every command
// of `src/lib/api.ts` from an in-memory store, so flows are real round trips through the UI.
// The store lives in sessionStorage, so it survives the reloads that lock and wipe cause.
// Bundled to an IIFE by run.mjs and injected with `page.addInitScript` before the app runs.
import { mockIPC } from '@tauri-apps/api/mocks';
import { emit } from '@tauri-apps/api/event';
import offers from './offers.json';
import type {
  AppError,
  AppState,
  CitizenDetail,
  CitizenInput,
  CitizenSummary,
  Colleague,
  DraftView,
  HandoverInput,
  KeptHome,
  PathwayEdit,
  PathwayView,
  TaskEdit,
  VisitEdit,
  Me,
  Offer,
  Role,
  ConflictChoice,
  ConflictView,
  ErrorCode,
  Phase,
  SaveMark,
  SetAsideView,
  Settings,
  SiteInput,
  SiteLogInput,
  SiteLogView,
  SiteView,
  SyncBar,
  TaskInput,
  TaskStatus,
  TaskView,
  VisitInput,
  VisitView,
} from '../../src/lib/bindings';

export type Seed = { phase: Phase; demo: boolean; pin?: string; role?: Role; openedWith?: string };

/** A citizen's pathway as stored: the item lists and circumstances (the view is computed). */
type Path = Omit<PathwayView, 'kept' | 'consents' | 'wellbeing'> & { consents: PathwayView['consents'][number]['consent'][] };
type Citizen = Omit<CitizenDetail, 'label' | 'visits' | 'tasks' | 'mark' | 'primary_worker_name' | 'site_log' | 'pathway'> & { path: Path };
const emptyPath = (): Path => ({ housing_history: [], eviction_risk: false, rent_arrears: false, resources: null, courses: [], course_reviews: [], referrals: [], network: [], consents: [] });
type Task = { id: string; citizen_id: string; title: string; due: string; status: TaskStatus; assignee: string | null };

/** The team's workers who carry cases, as core's `views::colleagues` lists them (the signed-in
 *  worker left out). */
const COLLEAGUES: Colleague[] = [
  { id: '0190aaaa-0000-7000-8000-00000000b0b0', name: 'Bo Demo', role: 'home_support' },
  { id: '0190aaaa-0000-7000-8000-00000000c1c1', name: 'Cecilie Demo', role: 'outreach' },
];
const workerName = (id: string | null) => (id ? (COLLEAGUES.find((c) => c.id === id)?.name ?? null) : null);
type Visit = Omit<VisitView, 'citizen_label' | 'mark'>;
type LogEntry = Omit<SiteLogView, 'resident_labels' | 'mark'>;

type Db = {
  phase: Phase;
  settings: Settings;
  pin: string;
  attempts: number;
  serverUrl: string | null;
  workerId: string | null;
  me: Me | null;
  citizens: Citizen[];
  visits: Visit[];
  tasks: Task[];
  sites: SiteView[];
  log: LogEntry[];
  conflicts: ConflictView[];
  /** Records saved here and not yet sent (cleared by a sync), as core's outbox. */
  pending: string[];
  setAside: SetAsideView[];
  /** Half-typed forms, as Rust keeps them (sealed there; plain in this fake). */
  drafts: Record<string, DraftView>;
  bar: SyncBar;
  calls: string[];
};

const KEY = 'feltbog-fake-db';
const MAX_ATTEMPTS = 5;
const DAY = 86_400_000;

declare global {
  interface Window {
    __FELTBOG_SEED__?: Seed;
    __fake?: {
      db: () => Db;
      emitSync: (bar: Partial<SyncBar>) => Promise<void>;
      /** A colleague's edit arriving by sync: `edit` changes the store, then the bar says so. */
      pulled: (edit: (db: Db) => void) => Promise<void>;
      /** What Rust's idle timer does: lock, then tell the UI. */
      idleLock: () => Promise<void>;
    };
  }
}

let seq = 0;
const uuid = () =>
  `0190${(Date.now() % 1e8).toString(16).padStart(8, '0')}-${(++seq).toString(16).padStart(4, '0')}-7000-8000-${Math.floor(Math.random() * 1e12).toString(16).padStart(12, '0')}`;
const iso = (ms: number) => {
  const d = new Date(ms);
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}`;
};
const today = () => iso(Date.now());

function err(code: ErrorCode, message: string, extra: Partial<AppError> = {}): AppError {
  return { code, message, field: null, retry_after_ms: null, attempts_left: null, ...extra };
}
const invalid = (field: string, message: string) => err('invalid', message, { field });

function demo(db: Db) {
  const now = Date.now();
  const site1: SiteView = { id: uuid(), kind: 'alternative_housing', name: 'Toftegården (skæve boliger)', address: 'Toftevej 14' };
  const site2: SiteView = { id: uuid(), kind: 'stairwell_community', name: 'Opgangen Nørregade 12', address: 'Nørregade 12' };
  db.sites = [site1, site2];
  const mk = (c: Partial<Citizen> & { alias: string }): Citizen => ({
    id: uuid(),
    full_name: null,
    cpr: null,
    birth_year: null,
    phone: null,
    housing: 'street',
    site_id: null,
    consent: null,
    goals: [],
    tags: [],
    archived: false,
    primary_worker: null,
    path: emptyPath(),
    ...c,
  });
  const ravnen = mk({
    alias: 'Ravnen',
    full_name: 'Torben Eksempel',
    cpr: '010190-1234',
    birth_year: 1990,
    phone: '+45 20 00 00 00',
    housing: 'shelter',
    tags: ['natcafé'],
    consent: { status: 'given', date: iso(now - 40 * DAY), scope: 'Deling med jobcenter og herberg', method: 'verbal' },
    goals: [
      { id: uuid(), text: 'Jeg vil have min egen lejlighed inden jul.', status: 'active', created: iso(now - 30 * DAY) },
      { id: uuid(), text: 'Se min datter hver anden weekend.', status: 'active', created: iso(now - 20 * DAY) },
      { id: uuid(), text: 'Få styr på gælden til SKAT.', status: 'achieved', created: iso(now - 90 * DAY) },
    ],
  });
  const goalFlat = ravnen.goals[0].id;
  const debtCourse = uuid();
  ravnen.path = {
    ...emptyPath(),
    housing_history: [
      { id: uuid(), from: iso(now - 420 * DAY), situation: 'street' },
      { id: uuid(), from: iso(now - 300 * DAY), situation: 'own_rental' },
      { id: uuid(), from: iso(now - 120 * DAY), situation: 'shelter' },
    ],
    eviction_risk: false,
    rent_arrears: true,
    resources: 'God til at fiske og til at hjælpe de andre på herberget.',
    courses: [
      { id: uuid(), kind: 'housing_first', started: iso(now - 60 * DAY), planned_end: iso(now + 300 * DAY), ended: null, ending: null, goals: [goalFlat], note: 'Egen lejlighed med bostøtte.' },
      { id: debtCourse, kind: 'debt_counselling', started: iso(now - 200 * DAY), planned_end: null, ended: iso(now - 100 * DAY), ending: 'goals_reached', goals: [ravnen.goals[2].id], note: 'Aftale med SKAT.' },
    ],
    course_reviews: [{ id: uuid(), course_id: debtCourse, date: iso(now - 110 * DAY), text: 'Afdragsordning på plads.' }],
    referrals: [
      { id: uuid(), target: 'housing_association', made: iso(now - 14 * DAY), visit_id: null, outcome: 'waiting', outcome_date: null, follow_up: null, note: 'Ansøgning om bolig via den sociale boliganvisning.' },
      { id: uuid(), target: 'doctor', made: iso(now - 90 * DAY), visit_id: null, outcome: 'done', outcome_date: iso(now - 80 * DAY), follow_up: null, note: '' },
    ],
    network: [{ id: uuid(), name: 'Datteren Sofie', relation: 'child', contact: '+45 22 00 00 00', may_involve: true }],
    consents: [
      { id: ravnen.id, purpose: 'recording', status: 'given', date: iso(now - 40 * DAY), method: 'verbal', recorded_by: COLLEAGUES[0].id, scope: 'Deling med jobcenter og herberg' },
    ],
  };
  const mette = mk({ alias: 'Lille Mette', housing: 'alternative_housing', site_id: site1.id, birth_year: 1978, goals: [{ id: uuid(), text: 'Komme ud at gå hver dag.', status: 'active', created: iso(now - 10 * DAY) }] });
  const kaj = mk({ alias: 'Kaj fra broen', housing: 'street' });
  const fie = mk({ alias: 'Fie', full_name: 'Fie Testesen', housing: 'stairwell_community', site_id: site2.id });
  db.citizens = [ravnen, mette, kaj, fie];
  db.visits = [
    { id: uuid(), citizen_id: ravnen.id, anonymous_count: null, anonymous_description: null, kind: 'home_visit', started_at_ms: now - 2 * 3600_000, duration_minutes: 45, place: 'Herberget, Vesterbro', themes: ['housing', 'economy_and_debt'], referrals: ['housing_support'], note: 'Talte om boligansøgningen. Ravnen vil gerne have hjælp til at ringe til boligselskabet.', wellbeing: 6, course_id: null, goals: [], mine: true },
    { id: uuid(), citizen_id: null, anonymous_count: 2, anonymous_description: 'To mænd ved stationen', kind: 'street_contact', started_at_ms: now - 5 * 3600_000, duration_minutes: 10, place: 'Hovedbanegården', themes: ['substance_use', 'physical_health'], referrals: [], note: 'Delte kaffe ud, fortalte om varmestuen.', wellbeing: null, course_id: null, goals: [], mine: true },
    { id: uuid(), citizen_id: mette.id, anonymous_count: null, anonymous_description: null, kind: 'site', started_at_ms: now - 26 * 3600_000, duration_minutes: 30, place: null, themes: ['network_and_loneliness'], referrals: ['volunteer_centre'], note: 'Mette savner nogen at gå tur med.', wellbeing: 4, course_id: null, goals: [], mine: false },
    { id: uuid(), citizen_id: ravnen.id, anonymous_count: null, anonymous_description: null, kind: 'phone', started_at_ms: now - 9 * DAY, duration_minutes: 10, place: null, themes: ['housing'], referrals: [], note: 'Ringede om lejligheden.', wellbeing: 4, course_id: null, goals: [], mine: false },
    { id: uuid(), citizen_id: ravnen.id, anonymous_count: null, anonymous_description: null, kind: 'home_visit', started_at_ms: now - 30 * DAY, duration_minutes: 40, place: null, themes: ['economy_and_debt'], referrals: [], note: 'Gennemgik budgettet.', wellbeing: 3, course_id: null, goals: [], mine: true },
  ];
  db.tasks = [
    { id: uuid(), citizen_id: ravnen.id, title: 'Ring til boligselskabet sammen med Ravnen', due: iso(now - 2 * DAY), status: 'open', assignee: null },
    { id: uuid(), citizen_id: mette.id, title: 'Følg op på gåmakker fra frivilligcentret', due: today(), status: 'open', assignee: null },
    { id: uuid(), citizen_id: kaj.id, title: 'Tjek om Kaj har fået lægetid', due: iso(now + 3 * DAY), status: 'open', assignee: null },
  ];
  db.log = [
    { id: uuid(), site_id: site1.id, at_ms: now - 3 * 3600_000, kind: 'repair', note: 'Vandhanen i hus 3 drypper. Meldt til viceværten.', residents: [], mine: true },
    { id: uuid(), site_id: site1.id, at_ms: now - 28 * 3600_000, kind: 'resident_contact', note: 'Kaffe med Mette på bænken.', residents: [mette.id], mine: false },
  ];
  db.conflicts = [
    { id: uuid(), entity: 'visit', record_id: db.visits[0].id, record_label: 'Ravnen', field: 'note', kind: 'open', mine: 'Talte om boligansøgningen. Ravnen vil gerne have hjælp til at ringe.', theirs: 'Talte om boligansøgning og gæld. Aftalt møde på fredag.', mine_details: [], theirs_details: [], mine_removed: false, theirs_removed: false, mine_author: 'Demo Medarbejder', theirs_author: 'Bo Demo', mine_is_current: true, can_merge: true, can_settle: true, status: 'open', created_at_ms: now - 3600_000 },
    { id: uuid(), entity: 'citizen', record_id: mette.id, record_label: 'Lille Mette', field: 'goals', kind: 'open', mine: 'Komme ud at gå hver dag.', theirs: 'Gå en tur hver dag med en fra frivilligcentret.', mine_details: [{ field: 'goal_status', values: ['active'] }, { field: 'date', values: ['2026-11-02'] }], theirs_details: [{ field: 'goal_status', values: ['paused'] }, { field: 'date', values: ['2026-11-02'] }], mine_removed: false, theirs_removed: false, mine_author: 'Demo Medarbejder', theirs_author: 'Bo Demo', mine_is_current: false, can_merge: true, can_settle: true, status: 'open', created_at_ms: now - 2 * 3600_000 },
    { id: uuid(), entity: 'citizen', record_id: kaj.id, record_label: 'Kaj fra broen', field: 'phone', kind: 'notice', mine: '+45 30 00 00 00', theirs: '+45 31 00 00 00', mine_details: [], theirs_details: [], mine_removed: false, theirs_removed: false, mine_author: 'Demo Medarbejder', theirs_author: null, mine_is_current: false, can_merge: false, can_settle: true, status: 'open', created_at_ms: now - 4 * 3600_000 },
  ];
  db.pending = [db.visits[0].id, db.tasks[0].id];
  db.setAside = [
    {
      seq: 41, entity: 'visit', record_id: uuid(), record_label: null, on_device: false, reason: 'out_of_scope', at_ms: now - 90 * 60_000,
      fields: [
        { field: 'kind', values: ['home_visit'] }, { field: 'duration_minutes', values: ['40'] },
        { field: 'started_at', values: [new Date(now - 2 * 3600_000).toISOString()] },
        { field: 'note', values: ['Hjalp med at pakke til flytningen. Aftalt at ringe til kommunen i morgen.'] },
        { field: 'themes', values: ['housing', 'economy_and_debt'] },
      ],
      can_resend: false, can_copy: true,
    },
  ];
  db.bar = { state: 'online', unsynced: 2, set_aside: 1, only_here: 3, last_success_ms: now - 12 * 60_000, progress: null, open_conflicts: 3, rescoping: false, changes: 0, version: 0 };
}

/** The signed-in worker the fake server names. */
const demoMe: Me = { name: 'Anne Demo', role: 'outreach', team: 'Team Nord', other_teams: [], sites: 0 };

// What Rust's `access::Offer::of` answers for each role: written by core's bindings test
// (`FELTBOG_UPDATE_BINDINGS=1 cargo test -p feltbog-core --features http,ts bindings`), which
// fails when it is stale. No copy of the role table here.
const OFFERS: Record<Role, Offer> = offers;

function fresh(seed: Seed): Db {
  const db: Db = {
    phase: seed.phase,
    settings: { language: 'da', lock_timeout_secs: 300 },
    pin: seed.pin ?? '246810',
    attempts: 0,
    serverUrl: seed.phase === 'first_run' ? null : 'https://feltbog.example.dk',
    workerId: seed.phase === 'first_run' ? null : uuid(),
    me: seed.phase === 'first_run' ? null : { ...demoMe, role: seed.role ?? 'outreach' },
    citizens: [],
    visits: [],
    tasks: [],
    sites: [],
    log: [],
    conflicts: [],
    pending: [],
    setAside: [],
    drafts: {},
    bar: { state: 'unknown', unsynced: 0, set_aside: 0, only_here: 0, last_success_ms: null, progress: null, open_conflicts: 0, rescoping: false, changes: 0, version: 0 },
    calls: [],
  };
  if (seed.demo) demo(db);
  return db;
}

function load(): Db {
  const raw = sessionStorage.getItem(KEY);
  if (raw) return JSON.parse(raw) as Db;
  return fresh(window.__FELTBOG_SEED__ ?? { phase: 'first_run', demo: false });
}
const db = load();
const save = () => sessionStorage.setItem(KEY, JSON.stringify(db));
save();

const label = (c: Citizen) => c.alias ?? c.full_name ?? '?';
const citizenLabel = (id: string) => {
  const c = db.citizens.find((x) => x.id === id);
  return c ? label(c) : '?';
};
function bar(): SyncBar {
  db.bar.open_conflicts = db.phase === 'unlocked' ? db.conflicts.filter((c) => c.status === 'open').length : 0;
  // As core's SyncBar: refused edits exist only on this tablet too.
  db.bar.only_here = db.bar.unsynced + db.bar.set_aside;
  return { ...db.bar };
}
function state(): AppState {
  return { phase: db.phase, settings: db.settings, sync: bar(), worker_id: db.phase === 'unlocked' ? db.workerId : null, server_url: db.serverUrl, me: db.phase === 'unlocked' ? db.me : null, offer: OFFERS[db.me?.role ?? 'outreach'] };
}
/** As core's save marks: refused (an edit waits on the set-aside screen), else pending. */
function mark(id: string): SaveMark | null {
  if (db.setAside.some((e) => e.on_device && e.record_id === id)) return 'refused';
  return db.pending.includes(id) ? 'pending' : null;
}
function taskView(t: Task): TaskView {
  return {
    ...t, citizen_label: citizenLabel(t.citizen_id), overdue: t.status === 'open' && t.due < today(), mark: mark(t.id),
    assignee_name: workerName(t.assignee), for_me: t.assignee !== null && t.assignee === db.workerId,
  };
}
function visitView(v: Visit): VisitView {
  return { ...v, citizen_label: v.citizen_id ? citizenLabel(v.citizen_id) : null, mark: mark(v.id) };
}
function changed(n = 1, id?: string) {
  db.bar.unsynced += n;
  if (id) db.pending.push(id);
  save();
}
function unlocked() {
  if (db.phase === 'first_run') throw err('not_set_up', 'no store');
  if (db.phase !== 'unlocked') throw err('locked', 'locked');
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const emitSync = async (b: Partial<SyncBar>) => {
  // As core: every event is a newer bar.
  Object.assign(db.bar, b, { version: db.bar.version + 1 });
  save();
  await emit('sync', bar());
};

/** As core's `pathway::move_ins` and `kept_home`: a home is own rental, supported or
 *  alternative housing; kept means no move to anything else by the measure's day. */
function kept(path: Path): KeptHome[] {
  const home = (s: string) => s === 'own_rental' || s === 'supported_housing' || s === 'alternative_housing';
  const sorted = [...path.housing_history].sort((x, y) => x.from.localeCompare(y.from));
  const out: KeptHome[] = [];
  let housed = false;
  for (const h of sorted) {
    if (home(h.situation) && !housed) {
      const at = (months: number) => {
        const d = new Date(`${h.from}T00:00:00Z`);
        d.setUTCMonth(d.getUTCMonth() + months);
        const due = d.toISOString().slice(0, 10);
        if (due > today()) return null;
        return !sorted.some((x) => x.from > h.from && x.from <= due && !home(x.situation));
      };
      out.push({ moved_in: h.from, months_3: at(3), months_6: at(6), months_12: at(12) });
    }
    housed = home(h.situation);
  }
  return out;
}
function pathwayView(c: Citizen): PathwayView {
  const p = c.path;
  const byDate = <T,>(key: (x: T) => string) => (x: T, y: T) => key(y).localeCompare(key(x));
  const open = (o: string) => o === 'waiting' || o === 'accepted';
  return {
    ...p,
    housing_history: [...p.housing_history].sort(byDate((h) => h.from)),
    kept: kept(p),
    courses: [...p.courses].sort((x, y) => Number(x.ended !== null) - Number(y.ended !== null) || y.started.localeCompare(x.started)),
    course_reviews: [...p.course_reviews].sort(byDate((r) => r.date)),
    referrals: [...p.referrals].sort((x, y) => Number(!open(x.outcome)) - Number(!open(y.outcome)) || y.made.localeCompare(x.made)),
    consents: p.consents.map((k) => ({ consent: k, recorded_by_name: k.recorded_by === db.workerId ? db.me?.name ?? null : workerName(k.recorded_by) })),
    wellbeing: db.visits
      .filter((v) => v.citizen_id === c.id && v.wellbeing !== null)
      .sort((x, y) => x.started_at_ms - y.started_at_ms)
      .map((v) => ({ at_ms: v.started_at_ms, score: v.wellbeing as number })),
  };
}
/** As core's `forms::apply_pathway_edit`: one item saved or removed, or the circumstances. */
function applyPathway(c: Citizen, e: PathwayEdit) {
  const p = c.path;
  const latest = () => [...p.housing_history].sort((x, y) => y.from.localeCompare(x.from) || y.id.localeCompare(x.id))[0];
  const [hadHistory, before] = [p.housing_history.length > 0, latest()];
  const upsert = <T extends { id: string }>(list: T[], item: T) => {
    const i = list.findIndex((x) => x.id === item.id);
    if (i >= 0) list[i] = item;
    else list.push(item);
  };
  if (e.kind === 'circumstances') {
    Object.assign(p, { eviction_risk: e.eviction_risk, rent_arrears: e.rent_arrears, resources: e.resources.trim() || null });
  } else if (e.kind === 'remove') {
    const lists: Record<string, { id: string }[]> = { housing_history: p.housing_history, courses: p.courses, course_reviews: p.course_reviews, referrals: p.referrals, network: p.network, consents: p.consents };
    const list = lists[e.list];
    if (!list || !list.some((x) => x.id === e.id)) throw err('not_found', 'the item is not there');
    list.splice(list.findIndex((x) => x.id === e.id), 1);
  } else {
    const { item, follow_up } = e;
    switch (item.list) {
      case 'housing_history':
        if (item.item.from > today()) throw invalid('housing_history.from', 'a move cannot be dated in the future');
        upsert(p.housing_history, item.item);
        break;
      case 'courses':
        if (item.item.ended && item.item.ended < item.item.started) throw invalid('courses', 'courses ends before it starts');
        if ((item.item.ended === null) !== (item.item.ending === null)) throw invalid('courses.ending', 'a course ending is given exactly when its end date is');
        upsert(p.courses, item.item);
        break;
      case 'course_reviews':
        upsert(p.course_reviews, item.item);
        break;
      case 'referrals':
        if (follow_up) {
          const task = { id: uuid(), citizen_id: c.id, title: follow_up.title, due: follow_up.due, status: 'open' as TaskStatus, assignee: db.workerId };
          db.tasks.push(task);
          item.item.follow_up = task.id;
        }
        upsert(p.referrals, item.item);
        break;
      case 'network':
        if (!item.item.name.trim()) throw invalid('network.name', 'network.name must not be blank');
        upsert(p.network, item.item);
        break;
      case 'consents': {
        if (p.consents.some((k) => k.id === item.item.id && k.purpose !== item.item.purpose)) throw invalid('consents.purpose', 'a recorded consent keeps its purpose');
        const held = p.consents.find((k) => k.id === item.item.id && k.status === item.item.status);
        upsert(p.consents, { ...item.item, recorded_by: held?.recorded_by ?? db.workerId ?? '' });
        break;
      }
    }
  }
  // As in Rust: the situation follows the pathway when the latest entry changed (a first,
  // backdated entry is history).
  const after = latest();
  if (after && after !== before && (hadHistory || after.from >= today())) c.housing = after.situation;
}

type Args = Record<string, unknown>;

async function handle(cmd: string, a: Args): Promise<unknown> {
  db.calls.push(cmd);
  switch (cmd) {
    case 'app_state':
      return state();
    case 'enrolment_link': {
      // A test double of core's `EnrolmentLink::parse` (the Rust rule is tested in core).
      const text = (a.text as string | null) ?? (db.phase === 'first_run' ? (window.__FELTBOG_SEED__?.openedWith ?? null) : null);
      if (text === null) return null;
      const m = /^feltbog-enrol:(.*)#([A-Za-z0-9-]{1,64})$/i.exec(text.trim());
      if (!/^feltbog-enrol:/i.test(text.trim())) throw err('foreign_code', 'not an enrolment');
      if (!m || !/^https?:\/\/\S+$/.test(m[1])) throw err('damaged_code', 'damaged');
      return { server_url: m[1].replace(/\/+$/, ''), code: m[2] };
    }
    case 'first_run': {
      const input = a.input as { server_url: string; code: string; pin: string };
      if (db.phase !== 'first_run') throw err('already_set_up', 'already set up');
      if (!/^https?:\/\//.test(input.server_url)) throw err('bad_server_address', 'bad address');
      if ([...input.pin].length < 6) throw err('weak_pin', 'too short', { field: 'pin' });
      if (input.code.toUpperCase() === 'USED') throw err('enrolment_refused', 'refused');
      await sleep(700); // key calibration + enrolment
      db.pin = input.pin;
      db.serverUrl = input.server_url;
      db.workerId = uuid();
      db.me = demoMe;
      db.phase = 'unlocked';
      db.bar = { ...db.bar, state: 'online', last_success_ms: Date.now() };
      save();
      return state();
    }
    case 'unlock': {
      if (db.phase === 'first_run') throw err('not_set_up', 'no store');
      if (db.attempts >= MAX_ATTEMPTS) throw err('destroyed', 'keys destroyed');
      if (a.pin !== db.pin) {
        db.attempts += 1;
        save();
        if (db.attempts >= MAX_ATTEMPTS) throw err('destroyed', 'keys destroyed');
        if (db.attempts >= 3) throw err('back_off', 'back off', { retry_after_ms: 2000 * db.attempts });
        throw err('wrong_pin', 'wrong passphrase', { attempts_left: MAX_ATTEMPTS - db.attempts });
      }
      db.attempts = 0;
      db.phase = 'unlocked';
      save();
      return state();
    }
    case 'lock':
      if (db.phase === 'unlocked') db.phase = 'locked';
      save();
      return null;
    case 'touch':
      return null;
    case 'today': {
      unlocked();
      const horizon = iso(Date.now() + 7 * DAY);
      return {
        due_tasks: db.tasks.filter((t) => t.status === 'open' && t.due <= horizon).sort((x, y) => x.due.localeCompare(y.due)).map(taskView),
        recent: [...db.visits].sort((x, y) => y.started_at_ms - x.started_at_ms).slice(0, 10).map(visitView),
      };
    }
    case 'caseload': {
      unlocked();
      const q = String(a.search ?? '').trim().toLowerCase();
      return db.citizens
        .filter((c) => !c.archived) // archived citizens leave the caseload
        .filter((c) => !q || [c.alias, c.full_name, c.phone, c.cpr, ...c.tags].some((f) => f?.toLowerCase().includes(q)))
        .map((c): CitizenSummary => {
          const open = db.tasks.filter((t) => t.citizen_id === c.id && t.status === 'open').sort((x, y) => x.due.localeCompare(y.due));
          const last = db.visits.filter((v) => v.citizen_id === c.id).map((v) => v.started_at_ms);
          return { id: c.id, label: label(c), full_name: c.full_name, housing: c.housing, site_id: c.site_id, open_tasks: open.length, next_due: open[0]?.due ?? null, last_visit_ms: last.length ? Math.max(...last) : null, mark: mark(c.id) };
        });
    }
    case 'citizen': {
      unlocked();
      const c = db.citizens.find((x) => x.id === a.id);
      if (!c) throw err('not_found', 'record not found');
      return {
        ...c,
        label: label(c),
        mark: mark(c.id),
        primary_worker_name: workerName(c.primary_worker),
        site_log: db.log
          .filter((e) => e.residents.includes(c.id))
          .sort((x, y) => y.at_ms - x.at_ms)
          .map((e) => ({ ...e, resident_labels: e.residents.map(citizenLabel), mark: mark(e.id) })),
        visits: db.visits.filter((v) => v.citizen_id === c.id).sort((x, y) => y.started_at_ms - x.started_at_ms).map(visitView),
        tasks: db.tasks.filter((t) => t.citizen_id === c.id).map(taskView),
        pathway: pathwayView(c),
      } satisfies CitizenDetail;
    }
    case 'save_pathway': {
      unlocked();
      const c = db.citizens.find((x) => x.id === a.citizen_id);
      if (!c) throw err('not_found', 'citizen not found');
      const tasks = db.tasks.length;
      applyPathway(c, a.edit as PathwayEdit);
      // As in Rust: a referral's follow-up task is a record of its own, sent with it.
      changed(1 + db.tasks.length - tasks, c.id);
      return null;
    }
    case 'save_citizen': {
      unlocked();
      const i = a.input as CitizenInput;
      // As in Rust: an edit says what the form started from (so only changed fields are written).
      if (i.id && !a.started_from) throw err('internal', 'an edit needs started_from');
      if (!i.alias && !i.full_name) throw invalid('alias', 'a citizen needs an alias or a name');
      if (i.cpr && !/^\d{6}-?\d{4}$/.test(i.cpr)) throw invalid('cpr', 'invalid CPR');
      // Tags as in Rust: trimmed, blank ones dropped, at most 60 characters each, at most 50.
      const cleanTags = (tags: string[]) => [...new Set(tags.map((t) => t.trim()).filter((t) => t !== ''))];
      const tags = cleanTags(i.tags);
      if (tags.some((t) => [...t].length > 60)) throw invalid('tags', 'a tag is at most 60 characters');
      if (tags.length > 50) throw invalid('tags', 'at most 50 tags');
      const existing = i.id ? db.citizens.find((x) => x.id === i.id) : undefined;
      // An edit applies the additions and removals since `started_from`, as a set (a colleague's
      // tag that synced meanwhile is kept).
      let nextTags = tags;
      if (existing) {
        const before = cleanTags((a.started_from as CitizenInput).tags);
        const added = tags.filter((t) => !before.includes(t));
        const removed = before.filter((t) => !tags.includes(t));
        nextTags = [...existing.tags.filter((t) => !removed.includes(t)), ...added.filter((t) => !existing.tags.includes(t))];
      }
      const c: Citizen = {
        id: existing?.id ?? uuid(),
        alias: i.alias || null,
        full_name: i.full_name || null,
        cpr: i.cpr ? `${i.cpr.replace('-', '').slice(0, 6)}-${i.cpr.replace('-', '').slice(6)}` : null,
        birth_year: i.birth_year,
        phone: i.phone || null,
        housing: i.housing,
        site_id: i.site_id,
        consent: i.consent,
        path: existing?.path ?? emptyPath(),
        goals: i.goals.map((g) => ({ id: g.id ?? uuid(), text: g.text, status: g.status, created: existing?.goals.find((o) => o.id === g.id)?.created ?? today() })),
        tags: nextTags,
        archived: i.archived,
        primary_worker: existing?.primary_worker ?? db.workerId,
      };
      db.citizens = existing ? db.citizens.map((x) => (x.id === c.id ? c : x)) : [...db.citizens, c];
      changed(1, c.id);
      return c.id;
    }
    case 'save_visit': {
      unlocked();
      const i = a.input as VisitInput;
      if (i.citizen_id === null && i.anonymous_count === null) throw invalid('citizen_id', 'a visit needs a citizen or an anonymous contact');
      if (i.anonymous_count !== null && (i.anonymous_count < 1 || i.anonymous_count > 500)) throw invalid('anonymous.count', 'anonymous.count must be between 1 and 500');
      if (i.follow_up && !i.citizen_id) throw invalid('follow_up', 'a follow-up needs a known citizen');
      db.visits.push({
        id: uuid(),
        citizen_id: i.citizen_id,
        anonymous_count: i.citizen_id ? null : i.anonymous_count,
        anonymous_description: i.citizen_id ? null : i.anonymous_description || null,
        kind: i.kind,
        started_at_ms: i.started_at_ms ?? Date.now(),
        duration_minutes: i.duration_minutes,
        place: i.place || null,
        themes: [...new Set(i.themes)],
        referrals: [...new Set(i.referrals)],
        note: i.note,
        wellbeing: i.wellbeing,
        course_id: i.course_id,
        goals: i.goals,
        mine: true,
      });
      if (i.follow_up && i.citizen_id) db.tasks.push({ id: uuid(), citizen_id: i.citizen_id, title: i.follow_up.title, due: i.follow_up.due, status: 'open', assignee: db.workerId });
      // As core's `forms::follow_visit_referrals`: each referral chip is followed on the citizen.
      const about = db.citizens.find((c) => c.id === i.citizen_id);
      const made = db.visits[db.visits.length - 1];
      if (about && made.referrals.length) {
        for (const target of made.referrals) {
          about.path.referrals.push({ id: uuid(), target, made: iso(made.started_at_ms), visit_id: made.id, outcome: 'waiting', outcome_date: null, follow_up: null, note: '' });
        }
      }
      // As in Rust: the visit, its task and the citizen are each a record to send.
      changed(1 + (i.follow_up && i.citizen_id ? 1 : 0) + (about && made.referrals.length ? 1 : 0), made.id);
      return db.visits[db.visits.length - 1].id;
    }
    case 'tasks': {
      unlocked();
      const all = a.include_closed === true;
      return db.tasks.filter((t) => all || t.status === 'open').sort((x, y) => x.due.localeCompare(y.due)).map(taskView);
    }
    case 'save_task': {
      unlocked();
      const i = a.input as TaskInput;
      if (!i.title.trim()) throw invalid('title', 'title is required');
      const t: Task = { id: uuid(), citizen_id: i.citizen_id, title: i.title, due: i.due, status: 'open', assignee: db.workerId };
      db.tasks.push(t);
      changed(1, t.id);
      return t.id;
    }
    case 'set_task_status': {
      unlocked();
      const t = db.tasks.find((x) => x.id === a.id);
      if (!t) throw err('not_found', 'record not found');
      t.status = a.status as TaskStatus;
      changed(1, t.id);
      return null;
    }
    case 'edit_visit': {
      unlocked();
      const v = db.visits.find((x) => x.id === a.id);
      if (!v) throw err('not_found', 'visit not found');
      if (!v.mine) throw err('not_allowed', 'only the author corrects a visit');
      const [e, from] = [a.edited as VisitEdit, a.started_from as VisitEdit];
      // As in Rust: only what changed since the form opened; sets as additions and removals.
      if (e.note !== from.note) v.note = e.note;
      if (e.kind !== from.kind) v.kind = e.kind;
      if (e.duration_minutes !== from.duration_minutes) v.duration_minutes = e.duration_minutes;
      if (e.place !== from.place) v.place = e.place || null;
      if (e.wellbeing !== from.wellbeing) v.wellbeing = e.wellbeing;
      if (e.started_at_ms !== from.started_at_ms) v.started_at_ms = e.started_at_ms;
      v.themes = [...new Set([...v.themes.filter((t) => !from.themes.includes(t) || e.themes.includes(t)), ...e.themes])];
      v.referrals = [...new Set([...v.referrals.filter((r) => !from.referrals.includes(r) || e.referrals.includes(r)), ...e.referrals])];
      changed(1, v.id);
      return null;
    }
    case 'link_visit': {
      unlocked();
      const v = db.visits.find((x) => x.id === a.id);
      if (!v || v.citizen_id) throw err('not_found', 'anonymous visit not found');
      const linked: Visit = { ...v, id: uuid(), citizen_id: a.citizen_id as string, anonymous_count: null, anonymous_description: null };
      db.visits = [...db.visits.filter((x) => x !== v), linked];
      changed(2, linked.id);
      return linked.id;
    }
    case 'edit_task': {
      unlocked();
      const t = db.tasks.find((x) => x.id === a.id);
      if (!t) throw err('not_found', 'task not found');
      const [edited, from] = [a.edited as TaskEdit, a.started_from as TaskEdit];
      if (!edited.title.trim()) throw invalid('title', 'title is required');
      // As in Rust: only what changed since the form opened.
      if (edited.title !== from.title) t.title = edited.title.trim();
      if (edited.due !== from.due) t.due = edited.due;
      if (edited.assignee !== from.assignee) t.assignee = edited.assignee;
      changed(1, t.id);
      return null;
    }
    case 'colleagues':
      unlocked();
      return COLLEAGUES;
    case 'hand_over': {
      unlocked();
      const i = a.input as HandoverInput;
      if (!COLLEAGUES.some((c) => c.id === i.to)) throw invalid('to', 'hand over to a worker of the team');
      const c = db.citizens.find((x) => x.id === i.citizen_id);
      if (!c) throw err('not_found', 'citizen not found');
      c.primary_worker = i.to;
      const t: Task = { id: uuid(), citizen_id: c.id, title: i.note ? `${i.task_title}: ${i.note}` : i.task_title, due: today(), status: 'open', assignee: i.to };
      db.tasks.push(t);
      changed(2, t.id);
      return null;
    }
    case 'sites':
      unlocked();
      return db.sites;
    case 'save_site': {
      unlocked();
      const i = a.input as SiteInput;
      const s: SiteView = { id: uuid(), ...i };
      db.sites.push(s);
      changed();
      return s.id;
    }
    case 'site_log':
      unlocked();
      return db.log
        .filter((e) => e.site_id === a.site_id)
        .sort((x, y) => y.at_ms - x.at_ms)
        .map((e): SiteLogView => {
          // As in Rust: only residents on this device, ids and labels in the same order.
          const here = e.residents.filter((id) => db.citizens.some((c) => c.id === id));
          return { ...e, residents: here, resident_labels: here.map(citizenLabel), mark: mark(e.id) };
        });
    case 'save_site_log': {
      unlocked();
      const i = a.input as SiteLogInput;
      if (!i.note.trim()) throw invalid('note', 'note is required');
      const e: LogEntry = { id: uuid(), site_id: i.site_id, at_ms: Date.now(), kind: i.kind, note: i.note, residents: i.residents, mine: true };
      db.log.push(e);
      changed(1, e.id);
      return e.id;
    }
    case 'conflicts': {
      unlocked();
      // As core's `Offer::can_settle`.
      const offer = OFFERS[db.me?.role ?? 'outreach'];
      return db.conflicts
        .filter((c) => c.status === 'open')
        .map((c) => ({ ...c, can_settle: offer.resolve_conflicts || (offer.review_conflicts && c.kind === 'open') }));
    }
    case 'resolve_conflict': {
      unlocked();
      const c = db.conflicts.find((x) => x.id === a.id);
      if (!c) throw err('not_found', 'record not found');
      const choice = a.choice as ConflictChoice;
      c.status = choice.choice === 'dismiss' ? 'dismissed' : 'resolved';
      changed();
      return null;
    }
    case 'set_aside':
      unlocked();
      return db.setAside;
    case 'resend_set_aside':
    case 'copy_set_aside':
    case 'discard_set_aside': {
      unlocked();
      const e = db.setAside.find((x) => x.seq === a.seq);
      if (!e) throw err('not_found', 'that refused edit is no longer on this device');
      if (cmd === 'resend_set_aside' && !e.can_resend) throw err('not_allowed', 'not allowed');
      if (cmd === 'copy_set_aside' && !e.can_copy) throw err('not_allowed', 'not allowed');
      db.setAside = db.setAside.filter((x) => x !== e);
      db.bar.set_aside = db.setAside.length;
      let made: string | null = null;
      if (cmd === 'copy_set_aside') {
        const text = (f: string) => e.fields.find((x) => x.field === f)?.values.join(', ') ?? '';
        const citizen = (a.citizen_id as string | null) ?? null;
        made = uuid();
        db.visits.push({
          id: made, citizen_id: citizen, anonymous_count: citizen ? null : 1, anonymous_description: null,
          kind: 'home_visit', started_at_ms: e.at_ms, duration_minutes: Number(text('duration_minutes')) || 0,
          place: null, themes: [], referrals: [], note: text('note'), wellbeing: null, course_id: null, goals: [], mine: true,
        });
      }
      if (cmd === 'discard_set_aside') save();
      else changed(1, made ?? e.record_id);
      return made;
    }
    case 'save_draft':
      unlocked();
      db.drafts[a.form as string] = { content: a.content, at_ms: Date.now() };
      save();
      return null;
    case 'draft':
      unlocked();
      return db.drafts[a.form as string] ?? null;
    case 'discard_draft':
      unlocked();
      delete db.drafts[a.form as string];
      save();
      return null;
    case 'sync_bar':
      return bar();
    case 'sync_now': {
      unlocked();
      db.bar.state = 'syncing';
      db.bar.progress = { pulled: 0, pending: 40, more: true };
      db.bar.version += 1;
      save();
      void (async () => {
        for (const pulled of [10, 25, 40]) {
          await sleep(150);
          await emitSync({ progress: { pulled, pending: 40 - pulled, more: pulled < 40 } });
        }
        db.pending = [];
        await emitSync({ state: 'online', unsynced: 0, progress: null, last_success_ms: Date.now(), changes: db.bar.changes + 1 });
      })();
      return bar();
    }
    case 'set_settings': {
      const s = a.settings as Settings;
      if (s.lock_timeout_secs < 60 || s.lock_timeout_secs > 3600) throw invalid('lock_timeout_secs', 'lock timeout must be between 1 and 60 minutes');
      db.settings = s;
      save();
      return s;
    }
    case 'wipe':
      if (typeof a.unsynced_shown !== 'number') throw err('internal', 'wipe needs unsynced_shown');
      Object.assign(db, fresh({ phase: 'first_run', demo: false }));
      save();
      return state();
    default:
      throw err('internal', `fake backend: unknown command ${cmd}`);
  }
}

mockIPC((cmd, args) => handle(cmd, (args ?? {}) as Args), { shouldMockEvents: true });
window.__fake = {
  db: () => db,
  emitSync,
  pulled: async (edit) => {
    edit(db);
    await emitSync({ changes: db.bar.changes + 1 });
  },
  idleLock: async () => {
    db.phase = 'locked';
    save();
    await emit('locked', null);
  },
};
