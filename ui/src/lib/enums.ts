// The values of the enums in `bindings.ts`, in display order. `satisfies` keeps each list in
// step with the generated type (a new Rust variant makes `npm run check` fail here).
import type {
  ConsentMethod,
  ConsentPurpose,
  CourseEnding,
  CourseKind,
  ReferralOutcome,
  Relation,
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
  'case_worker',
  'home_care',
  'social_nurse',
  'housing_association',
  'hospital',
  'police',
  'probation_service',
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
  'supported_housing',
  'hospital',
  'prison',
  'hospital_or_prison',
  'other',
] as const);

/** The situations a worker picks from (core's `HousingSituation::OFFERED`): the old
 *  "hospital or prison" is only shown where a record still holds it. */
export const HOUSING_OFFERED = HOUSING.filter((h) => h !== 'hospital_or_prison');

export const COURSE_KINDS = all<CourseKind>()([
  'housing_support',
  'housing_first',
  'support_contact_person',
  'cti',
  'icm',
  'debt_counselling',
  'other',
] as const);

export const COURSE_ENDINGS = all<CourseEnding>()([
  'goals_reached',
  'handed_over',
  'citizen_ended',
  'moved_away',
  'lost_contact',
  'died',
  'other',
] as const);

export const REFERRAL_OUTCOMES = all<ReferralOutcome>()(['waiting', 'accepted', 'declined_by_citizen', 'done'] as const);

export const RELATIONS = all<Relation>()([
  'parent',
  'child',
  'sibling',
  'partner',
  'other_family',
  'friend',
  'neighbour',
  'professional',
  'other',
] as const);

export const CONSENT_PURPOSES = all<ConsentPurpose>()([
  'recording',
  'sharing_with_agencies',
  'involving_network',
  'health_information',
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
