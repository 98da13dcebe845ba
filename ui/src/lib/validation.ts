// Form UX validation: quick feedback before a round trip. Rust validates everything again and
// owns the business rules; these checks only catch what a person can fix in the form (empty
// required fields, numbers out of range, the PIN typed twice). Each problem is keyed by the
// field name Rust uses in `AppError.field`, so both land next to the same input.
import type {
  CitizenInput,
  ConsentMethod,
  ConsentStatus,
  GoalStatus,
  HousingSituation,
  Referral,
  SiteKind,
  SiteLogKind,
  Theme,
  VisitInput,
  VisitKind, VisitEdit, VisitView } from './bindings';

export type Problem = { key: string; params?: Record<string, string | number> };
export type Problems = Record<string, Problem>;

export const PIN_MIN = 6;
export const ANON_COUNT = { min: 1, max: 500 } as const;
export const DURATION = { min: 0, max: 24 * 60 } as const;
export const WELLBEING = { min: 1, max: 10 } as const;
export const BIRTH_YEAR_MIN = 1900;
export const LOCK_MINUTES = [1, 2, 5, 10, 15, 30, 60] as const;
/** As in Rust: a tag is at most 60 characters, a citizen has at most 50 tags. */
export const TAG_MAX_CHARS = 60;
export const TAG_MAX_COUNT = 50;

const required: Problem = { key: 'validation.required' };

export function isBlank(s: string | null | undefined): boolean {
  return !s || s.trim() === '';
}

/** Parses a whole number typed into a text field; `null` for empty, `NaN` for junk. */
export function parseWhole(s: string): number | null {
  const t = s.trim();
  if (t === '') return null;
  return /^-?\d+$/.test(t) ? Number(t) : NaN;
}

function checkRange(
  problems: Problems,
  field: string,
  value: string,
  min: number,
  max: number,
  isRequired: boolean,
) {
  const n = parseWhole(value);
  if (n === null) {
    if (isRequired) problems[field] = required;
  } else if (Number.isNaN(n) || n < min || n > max) {
    problems[field] = { key: 'validation.range', params: { min, max } };
  }
}

/** `YYYY-MM-DD` and a real calendar date. */
export function isIsoDate(s: string): boolean {
  if (!/^\d{4}-\d{2}-\d{2}$/.test(s)) return false;
  const d = new Date(`${s}T00:00:00Z`);
  return !Number.isNaN(d.getTime()) && d.toISOString().startsWith(s);
}

export function hasProblems(p: Problems): boolean {
  return Object.keys(p).length > 0;
}

// ---- first run and lock ----

export type FirstRunForm = { serverUrl: string; code: string; pin: string; pinRepeat: string };

export function validateFirstRun(f: FirstRunForm): Problems {
  const p: Problems = {};
  const url = f.serverUrl.trim();
  if (url === '') p.server_url = required;
  else if (!/^https?:\/\/\S+$/i.test(url)) p.server_url = { key: 'validation.server_url' };
  if (isBlank(f.code)) p.code = required;
  Object.assign(p, validateNewPin(f.pin, f.pinRepeat));
  return p;
}

export function validateNewPin(pin: string, repeat: string): Problems {
  const p: Problems = {};
  if (pin === '') p.pin = required;
  else if ([...pin].length < PIN_MIN) p.pin = { key: 'validation.pin_short', params: { min: PIN_MIN } };
  if (repeat === '') p.pin_repeat = required;
  else if (repeat !== pin) p.pin_repeat = { key: 'validation.pin_mismatch' };
  return p;
}

export function validateUnlock(pin: string): Problems {
  return pin === '' ? { pin: required } : {};
}

// ---- citizen ----

export type GoalForm = { id: string | null; text: string; status: GoalStatus };

export type CitizenForm = {
  id: string | null;
  alias: string;
  fullName: string;
  cpr: string;
  birthYear: string;
  phone: string;
  housing: HousingSituation;
  siteId: string | null;
  hasConsent: boolean;
  consentStatus: ConsentStatus;
  consentDate: string;
  consentScope: string;
  consentMethod: ConsentMethod;
  goals: GoalForm[];
  tags: string[];
  archived: boolean;
};

export function emptyCitizenForm(today: string): CitizenForm {
  return {
    id: null,
    alias: '',
    fullName: '',
    cpr: '',
    birthYear: '',
    phone: '',
    housing: 'street',
    siteId: null,
    hasConsent: false,
    consentStatus: 'given',
    consentDate: today,
    consentScope: '',
    consentMethod: 'verbal',
    goals: [],
    tags: [],
    archived: false,
  };
}

/** Characters as Rust counts them (code points, not UTF-16 units). */
const charCount = (s: string) => [...s].length;

/** Tags as Rust keeps them: trimmed, blank ones dropped, each once (first spelling wins). */
export function normaliseTags(tags: readonly string[]): string[] {
  const out: string[] = [];
  for (const raw of tags) {
    const t = raw.trim();
    if (t !== '' && !out.includes(t)) out.push(t);
  }
  return out;
}

function checkTags(tags: readonly string[]): Problem | null {
  const list = normaliseTags(tags);
  if (list.some((t) => charCount(t) > TAG_MAX_CHARS)) return { key: 'validation.tag_too_long', params: { max: TAG_MAX_CHARS } };
  if (list.length > TAG_MAX_COUNT) return { key: 'validation.tags_too_many', params: { max: TAG_MAX_COUNT } };
  return null;
}

/** Checks a tag typed into the "add tag" field against the tags already on the form.
 *  `null` means it can be added (a blank or repeated tag is simply not added). */
export function checkNewTag(tags: readonly string[], draft: string): Problem | null {
  const t = draft.trim();
  if (t === '' || tags.includes(t)) return null;
  if (charCount(t) > TAG_MAX_CHARS) return { key: 'validation.tag_too_long', params: { max: TAG_MAX_CHARS } };
  if (normaliseTags(tags).length >= TAG_MAX_COUNT) return { key: 'validation.tags_too_many', params: { max: TAG_MAX_COUNT } };
  return null;
}

export function validateCitizen(f: CitizenForm, currentYear: number): Problems {
  const p: Problems = {};
  if (isBlank(f.alias) && isBlank(f.fullName)) p.alias = { key: 'validation.alias_or_name' };
  if (!isBlank(f.cpr) && !/^\d{6}-?\d{4}$/.test(f.cpr.trim())) p.cpr = { key: 'validation.cpr' };
  checkRange(p, 'birth_year', f.birthYear, BIRTH_YEAR_MIN, currentYear, false);
  if (f.hasConsent) {
    if (isBlank(f.consentDate)) p['consent.date'] = required;
    else if (!isIsoDate(f.consentDate.trim())) p['consent.date'] = { key: 'validation.date' };
  }
  const tags = checkTags(f.tags);
  if (tags) p.tags = tags;
  return p;
}

export function toCitizenInput(f: CitizenForm): CitizenInput {
  return {
    id: f.id,
    alias: f.alias.trim(),
    full_name: f.fullName.trim(),
    cpr: f.cpr.trim(),
    birth_year: parseWhole(f.birthYear),
    phone: f.phone.trim(),
    housing: f.housing,
    site_id: f.siteId,
    consent: f.hasConsent
      ? {
          status: f.consentStatus,
          date: f.consentDate.trim(),
          scope: f.consentScope.trim(),
          method: f.consentMethod,
        }
      : null,
    goals: f.goals
      .filter((g) => !isBlank(g.text))
      .map((g) => ({ id: g.id, text: g.text.trim(), status: g.status })),
    tags: normaliseTags(f.tags),
    archived: f.archived,
  };
}

// ---- visits and quick contacts ----

export type VisitForm = {
  anonymous: boolean;
  citizenId: string | null;
  count: string;
  description: string;
  kind: VisitKind;
  /** `datetime-local` value; empty means now. */
  startedAt: string;
  duration: string;
  place: string;
  themes: Theme[];
  referrals: Referral[];
  note: string;
  wellbeing: string;
  followUp: boolean;
  followUpTitle: string;
  followUpDue: string;
  /** The citizen's support course the visit was part of, and the goals it worked on. */
  courseId: string | null;
  goals: string[];
};

export function emptyVisitForm(kind: VisitKind, citizenId: string | null = null): VisitForm {
  return {
    anonymous: citizenId === null && kind === 'street_contact',
    citizenId,
    count: '1',
    description: '',
    kind,
    startedAt: '',
    duration: kind === 'street_contact' ? '5' : '30',
    place: '',
    themes: [],
    referrals: [],
    note: '',
    wellbeing: '',
    followUp: false,
    followUpTitle: '',
    followUpDue: '',
    courseId: null,
    goals: [],
  };
}

/** The quick contact: who (anonymous count or a known citizen); the rest is optional. */
export function validateQuickContact(f: VisitForm): Problems {
  const p: Problems = {};
  if (f.anonymous) checkRange(p, 'anonymous.count', f.count, ANON_COUNT.min, ANON_COUNT.max, true);
  else if (!f.citizenId) p.citizen_id = { key: 'validation.pick_citizen' };
  return p;
}

/** The full visit form. `nowMs` is passed in so tests are deterministic. */
export function validateVisit(f: VisitForm, nowMs: number): Problems {
  const p = validateQuickContact(f);
  checkRange(p, 'duration_minutes', f.duration, DURATION.min, DURATION.max, true);
  checkRange(p, 'wellbeing', f.wellbeing, WELLBEING.min, WELLBEING.max, false);
  if (!isBlank(f.startedAt)) {
    const t = new Date(f.startedAt).getTime();
    if (Number.isNaN(t)) p.started_at = { key: 'validation.date' };
    else if (t > nowMs + 5 * 60_000) p.started_at = { key: 'validation.future' };
  }
  if (f.followUp) {
    if (f.anonymous) p.follow_up = { key: 'validation.follow_up_needs_citizen' };
    if (isBlank(f.followUpTitle)) p['follow_up.title'] = required;
    if (isBlank(f.followUpDue)) p['follow_up.due'] = required;
    else if (!isIsoDate(f.followUpDue.trim())) p['follow_up.due'] = { key: 'validation.date' };
  }
  return p;
}

/** The visit form filled from a saved visit, for correcting it. */
export function visitFormOf(v: VisitView, startedAt: string): VisitForm {
  return {
    ...emptyVisitForm(v.kind, v.citizen_id),
    anonymous: v.citizen_id === null,
    count: String(v.anonymous_count ?? 1),
    description: v.anonymous_description ?? '',
    startedAt,
    duration: String(v.duration_minutes),
    place: v.place ?? '',
    themes: [...v.themes],
    referrals: [...v.referrals],
    note: v.note,
    wellbeing: v.wellbeing === null ? '' : String(v.wellbeing),
  };
}

/** A correction's fields, as Rust compares them with the form as it opened. */
export function toVisitEdit(f: VisitForm): VisitEdit {
  const input = toVisitInput(f);
  return {
    kind: input.kind,
    started_at_ms: input.started_at_ms ?? 0,
    duration_minutes: input.duration_minutes,
    place: input.place,
    themes: input.themes,
    referrals: input.referrals,
    note: input.note,
    wellbeing: input.wellbeing,
    anonymous_count: f.anonymous ? parseWhole(f.count) : null,
    anonymous_description: f.anonymous ? f.description.trim() : '',
  };
}

export function toVisitInput(f: VisitForm): VisitInput {
  const started = isBlank(f.startedAt) ? null : new Date(f.startedAt).getTime();
  return {
    citizen_id: f.anonymous ? null : f.citizenId,
    anonymous_count: f.anonymous ? parseWhole(f.count) : null,
    anonymous_description: f.anonymous ? f.description.trim() : '',
    kind: f.kind,
    started_at_ms: started,
    duration_minutes: parseWhole(f.duration) ?? 0,
    place: f.place.trim(),
    themes: [...f.themes],
    referrals: [...f.referrals],
    note: f.note.trim(),
    wellbeing: parseWhole(f.wellbeing),
    follow_up:
      f.followUp && !f.anonymous
        ? { title: f.followUpTitle.trim(), due: f.followUpDue.trim() }
        : null,
    course_id: f.anonymous ? null : f.courseId,
    goals: f.anonymous ? [] : [...f.goals],
  };
}

// ---- tasks, sites, site log, conflicts ----

export function validateTask(f: { title: string; due: string }): Problems {
  const p: Problems = {};
  if (isBlank(f.title)) p.title = required;
  if (isBlank(f.due)) p.due = required;
  else if (!isIsoDate(f.due.trim())) p.due = { key: 'validation.date' };
  return p;
}

export function validateSite(f: { kind: SiteKind; name: string; address: string }): Problems {
  return isBlank(f.name) ? { name: required } : {};
}

export function validateSiteLog(f: { kind: SiteLogKind; note: string }): Problems {
  return isBlank(f.note) ? { note: required } : {};
}

export function validateMerged(text: string): Problems {
  return isBlank(text) ? { text: required } : {};
}

/** Minutes for the lock-timeout select, from seconds (snapped to the nearest choice). */
export function lockMinutes(secs: number): number {
  const m = secs / 60;
  return LOCK_MINUTES.reduce((best, x) => (Math.abs(x - m) < Math.abs(best - m) ? x : best));
}
