// The values of the enums in `bindings.ts`, in display order. `satisfies` keeps each list in
// step with the generated type (a new Rust variant makes `npm run check` fail here).
import type {
  ConsentMethod,
  ConsentStatus,
  ErrorCode,
  GoalStatus,
  HousingSituation,
  Referral,
  SiteKind,
  SiteLogKind,
  SyncState,
  TaskStatus,
  Theme,
  VisitKind,
  EntityKind,
  Role,
} from './bindings';

type All<T extends string> = readonly T[] & { length: number };
/** Fails the type check when `list` misses a member of `T`. */
function all<T extends string>() {
  return <L extends readonly T[]>(list: L & ([T] extends [L[number]] ? unknown : never)): All<T> =>
    list;
}

export const THEMES = all<Theme>()([
  'housing',
  'economy_and_debt',
  'physical_health',
  'mental_health',
  'substance_use',
  'work_and_education',
  'network_and_loneliness',
  'daily_living',
  'crisis',
  'other',
] as const);

export const REFERRALS = all<Referral>()([
  'debt_counselling',
  'housing_support',
  'addiction_treatment',
  'doctor',
  'psychiatry',
  'job_centre',
  'volunteer_centre',
  'shelter',
  'legal_aid',
  'other',
] as const);

export const VISIT_KINDS = all<VisitKind>()([
  'home_visit',
  'street_contact',
  'contact_centre',
  'site',
  'phone',
  'escort_to_appointment',
] as const);

export const HOUSING = all<HousingSituation>()([
  'street',
  'shelter',
  'alternative_housing',
  'stairwell_community',
  'own_rental',
  'hospital_or_prison',
  'other',
] as const);

export const CONSENT_STATUSES = all<ConsentStatus>()([
  'not_asked',
  'given',
  'declined',
  'withdrawn',
] as const);

export const CONSENT_METHODS = all<ConsentMethod>()(['verbal', 'written', 'digital'] as const);

export const GOAL_STATUSES = all<GoalStatus>()(['active', 'achieved', 'paused', 'dropped'] as const);

export const TASK_STATUSES = all<TaskStatus>()(['open', 'done', 'cancelled'] as const);

export const SITE_KINDS = all<SiteKind>()([
  'alternative_housing',
  'stairwell_community',
  'shelter',
  'other',
] as const);

export const SITE_LOG_KINDS = all<SiteLogKind>()([
  'resident_contact',
  'neighbour_dialogue',
  'incident',
  'repair',
  'other',
] as const);

export const SYNC_STATES = all<SyncState>()([
  'unknown',
  'online',
  'syncing',
  'offline',
  'revoked',
  'update_required',
  'failed',
] as const);

export const ENTITY_KINDS = all<EntityKind>()([
  'citizen',
  'visit',
  'task',
  'site',
  'site_log_entry',
  'conflict',
] as const);

export const ERROR_CODES = all<ErrorCode>()([
  'locked',
  'not_set_up',
  'already_set_up',
  'wrong_pin',
  'back_off',
  'destroyed',
  'weak_pin',
  'invalid',
  'not_found',
  'not_allowed',
  'bad_server_address',
  'foreign_code',
  'damaged_code',
  'enrolment_refused',
  'offline',
  'revoked',
  'update_required',
  'internal',
] as const);

export const ROLES = all<Role>()(['outreach', 'home_support', 'caretaker', 'supervisor', 'admin'] as const);
