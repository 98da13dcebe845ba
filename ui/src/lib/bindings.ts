// Generated from the Rust types by `core/src/app/bindings.rs` (ts-rs). Do not edit:
// run `FELTBOG_UPDATE_BINDINGS=1 cargo test -p feltbog-core --features http,ts bindings`.

export type HousingSituation = "street" | "shelter" | "alternative_housing" | "stairwell_community" | "own_rental" | "supported_housing" | "hospital" | "prison" | "hospital_or_prison" | "other";

export type ConsentStatus = "not_asked" | "given" | "declined" | "withdrawn";

export type ConsentMethod = "verbal" | "written" | "digital";

export type GoalStatus = "active" | "achieved" | "paused" | "dropped";

export type VisitKind = "home_visit" | "street_contact" | "contact_centre" | "site" | "phone" | "escort_to_appointment";

export type Theme = "housing" | "economy_and_debt" | "physical_health" | "mental_health" | "substance_use" | "work_and_education" | "network_and_loneliness" | "daily_living" | "crisis" | "other";

export type Referral = "debt_counselling" | "housing_support" | "addiction_treatment" | "doctor" | "psychiatry" | "job_centre" | "volunteer_centre" | "shelter" | "legal_aid" | "case_worker" | "home_care" | "social_nurse" | "housing_association" | "hospital" | "police" | "probation_service" | "other";

export type TaskStatus = "open" | "done" | "cancelled";

export type SiteKind = "alternative_housing" | "stairwell_community" | "shelter" | "other";

export type SiteLogKind = "resident_contact" | "neighbour_dialogue" | "incident" | "repair" | "other";

export type ConflictStatus = "open" | "resolved" | "dismissed";

export type EntityKind = "citizen" | "visit" | "task" | "site" | "site_log_entry" | "conflict";

export type CourseKind = "housing_support" | "housing_first" | "support_contact_person" | "cti" | "icm" | "debt_counselling" | "other";

export type CourseEnding = "goals_reached" | "handed_over" | "citizen_ended" | "moved_away" | "lost_contact" | "died" | "other";

export type ReferralOutcome = "waiting" | "accepted" | "declined_by_citizen" | "done";

export type Relation = "parent" | "child" | "sibling" | "partner" | "other_family" | "friend" | "neighbour" | "professional" | "other";

export type ConsentPurpose = "recording" | "sharing_with_agencies" | "involving_network" | "health_information" | "other";

export type HousingChange = { id: string, 
/**
 * The day the citizen moved (or was found) there.
 */
from: string, situation: HousingSituation, };

export type Course = { id: string, kind: CourseKind, started: string, planned_end: string | null, ended: string | null, 
/**
 * How it ended: set exactly when `ended` is.
 */
ending: CourseEnding | null, 
/**
 * The citizen's goals this course works on (ids of [`super::Goal`]s of the same record).
 */
goals: Array<string>, 
/**
 * What the course is for, in words.
 */
note: string, };

export type CourseReview = { id: string, course_id: string, date: string, text: string, };

export type ReferralCase = { id: string, target: Referral, made: string, 
/**
 * The visit it was made on, if any.
 */
visit_id: string | null, outcome: ReferralOutcome, 
/**
 * When the outcome was learnt.
 */
outcome_date: string | null, 
/**
 * The task that follows it up, when one was asked for.
 */
follow_up: string | null, note: string, };

export type NetworkPerson = { id: string, name: string, relation: Relation, contact: string | null, may_involve: boolean, };

export type PurposeConsent = { id: string, purpose: ConsentPurpose, status: ConsentStatus, date: string, method: ConsentMethod, recorded_by: string, scope: string, };

export type ConflictKind = "open" | "notice";

export type Role = "outreach" | "home_support" | "caretaker" | "supervisor" | "admin";

export type Offer = { 
/**
 * The role has an app at all (an administrator's work is on the server).
 */
app: boolean, 
/**
 * Visits, contacts and tasks are shown: the today and tasks screens.
 */
cases: boolean, 
/**
 * Citizens are shown: the caseload and citizen pages (a caretaker's: their residents).
 */
citizens: boolean, 
/**
 * Create and edit citizens.
 */
edit_citizens: boolean, 
/**
 * Log visits and contacts, add follow-ups, change a task's status.
 */
log_visits: boolean, 
/**
 * Sites and their logs are shown.
 */
sites: boolean, 
/**
 * Add sites.
 */
edit_sites: boolean, 
/**
 * Write site-log entries (at the worker's own sites).
 */
log_sites: boolean, 
/**
 * Resolve or dismiss conflicts in the inbox.
 */
resolve_conflicts: boolean, 
/**
 * Settle open free-text conflicts only (keep one version or write them together): a
 * supervisor's review of their teams.
 */
review_conflicts: boolean, };

export type Phase = "first_run" | "locked" | "unlocked";

export type Language = "da" | "en";

export type Settings = { language: Language, 
/**
 * Lock after this long without a touch.
 */
lock_timeout_secs: number, };

export type SyncState = "unknown" | "online" | "syncing" | "offline" | "revoked" | "update_required" | "failed";

export type SyncProgress = { pulled: number, pending: number, more: boolean, };

export type SyncBar = { state: SyncState, 
/**
 * Saved here and not yet on the server.
 */
unsynced: number, 
/**
 * Refused by the server and kept aside (never dropped).
 */
set_aside: number, 
/**
 * Work that exists only on this tablet: unsynced and refused edits together. Signing out
 * loses exactly this much, so the wipe dialog shows it.
 */
only_here: number, last_success_ms: number | null, progress: SyncProgress | null, 
/**
 * Open conflicts waiting in the inbox (0 while locked).
 */
open_conflicts: number, 
/**
 * The worker's access changed (role, team, sites, supervised teams): the tablet is sending
 * what it had pending and fetching its data again (`store::Rescope`). Screens may be
 * incomplete until the next sync finishes it.
 */
rescoping: boolean, 
/**
 * Counts the syncs that changed what screens show (records pulled or erased, edits
 * acknowledged or set aside, a new profile): an open page reloads when it moves.
 */
changes: number, 
/**
 * Moves with every change of `state` or `progress`: a bar read before the latest event
 * (a refresh after a save, answered late) is older and must not overwrite it, or the bar
 * would say "syncing" after the sync ended.
 */
version: number, };

export type AppState = { phase: Phase, settings: Settings, sync: SyncBar, 
/**
 * The signed-in worker (when unlocked).
 */
worker_id: string | null, server_url: string | null, 
/**
 * Who that is, by name, role and team (when unlocked, once the server has said).
 */
me: Me | null, 
/**
 * The screens and actions for that worker's role (`core::access`). Before the server has
 * named the role (a server that predates it), a field worker's, as before roles reached
 * the device.
 */
offer: Offer, };

export type ErrorCode = "locked" | "not_set_up" | "already_set_up" | "wrong_pin" | "back_off" | "destroyed" | "weak_pin" | "invalid" | "not_found" | "not_allowed" | "bad_server_address" | "foreign_code" | "damaged_code" | "enrolment_refused" | "offline" | "revoked" | "update_required" | "internal";

export type AppError = { code: ErrorCode, 
/**
 * English description, for logs and as a fallback; the UI shows its own text per code.
 */
message: string, 
/**
 * The field a validation error is about (e.g. `note`, `anonymous.count`).
 */
field: string | null, retry_after_ms: number | null, attempts_left: number | null, };

export type Me = { name: string, role: Role, team: string, 
/**
 * The other teams this worker reads (a supervisor's supervised teams).
 */
other_teams: Array<string>, 
/**
 * A caretaker's sites.
 */
sites: number, };

export type CitizenSummary = { id: string, 
/**
 * Alias, else full name.
 */
label: string, full_name: string | null, housing: HousingSituation, 
/**
 * The site the citizen lives at, if any (a caretaker's resident picker lists these first).
 */
site_id: string | null, open_tasks: number, next_due: string | null, last_visit_ms: number | null, 
/**
 * Not yet on the server, or refused there.
 */
mark: SaveMark | null, };

export type ConsentView = { status: ConsentStatus, date: string, scope: string, method: ConsentMethod, };

export type GoalView = { id: string, text: string, status: GoalStatus, created: string, };

export type VisitView = { id: string, citizen_id: string | null, 
/**
 * The citizen's label, or `None` for an anonymous contact.
 */
citizen_label: string | null, anonymous_count: number | null, anonymous_description: string | null, kind: VisitKind, started_at_ms: number, duration_minutes: number, place: string | null, themes: Array<Theme>, referrals: Array<Referral>, note: string, wellbeing: number | null, 
/**
 * The support course it was part of, and the citizen's goals it worked on.
 */
course_id: string | null, goals: Array<string>, 
/**
 * Written by the signed-in worker on this or another device.
 */
mine: boolean, 
/**
 * Not yet on the server, or refused there.
 */
mark: SaveMark | null, };

export type TaskView = { id: string, citizen_id: string, citizen_label: string, title: string, due: string, status: TaskStatus, 
/**
 * Open and due before today.
 */
overdue: boolean, 
/**
 * Who holds the task, by id and name (from the team directory).
 */
assignee: string | null, assignee_name: string | null, 
/**
 * Assigned to the signed-in worker.
 */
for_me: boolean, 
/**
 * Not yet on the server, or refused there.
 */
mark: SaveMark | null, };

export type CitizenDetail = { id: string, label: string, alias: string | null, full_name: string | null, 
/**
 * Formatted `DDMMYY-XXXX`.
 */
cpr: string | null, birth_year: number | null, phone: string | null, housing: HousingSituation, site_id: string | null, 
/**
 * The consent to recording (the one the citizen form edits); every purpose is in
 * `pathway.consents`.
 */
consent: ConsentView | null, goals: Array<GoalView>, tags: Array<string>, archived: boolean, 
/**
 * What is followed over time: housing, courses, referrals, network, consents.
 */
pathway: PathwayView, 
/**
 * Site-log entries that name the citizen (a resident), newest first.
 */
site_log: Array<SiteLogView>, 
/**
 * The worker who holds the case, by id and name.
 */
primary_worker: string | null, primary_worker_name: string | null, visits: Array<VisitView>, tasks: Array<TaskView>, 
/**
 * Not yet on the server, or refused there.
 */
mark: SaveMark | null, };

export type PathwayView = { 
/**
 * Every housing change, newest first.
 */
housing_history: Array<HousingChange>, 
/**
 * Each move into a home with whether it was kept at 3, 6 and 12 months (`null`: not yet).
 */
kept: Array<KeptHome>, eviction_risk: boolean, rent_arrears: boolean, resources: string | null, 
/**
 * Courses, running ones first, newest first.
 */
courses: Array<Course>, 
/**
 * Reviews, newest first.
 */
course_reviews: Array<CourseReview>, 
/**
 * Referrals, open ones first, newest first.
 */
referrals: Array<ReferralCase>, network: Array<NetworkPerson>, consents: Array<ConsentItemView>, 
/**
 * Wellbeing scores of the visits shown, oldest first: the trend chart's points.
 */
wellbeing: Array<WellbeingPoint>, };

export type KeptHome = { moved_in: string, months_3: boolean | null, months_6: boolean | null, months_12: boolean | null, };

export type ConsentItemView = { consent: PurposeConsent, recorded_by_name: string | null, };

export type WellbeingPoint = { at_ms: number, score: number, };

export type Today = { due_tasks: Array<TaskView>, recent: Array<VisitView>, };

export type SiteView = { id: string, kind: SiteKind, name: string, address: string, };

export type SiteLogView = { id: string, site_id: string, at_ms: number, kind: SiteLogKind, note: string, 
/**
 * The residents the entry mentions that are on this device, as ids and labels (same order).
 */
residents: Array<string>, resident_labels: Array<string>, mine: boolean, 
/**
 * Not yet on the server, or refused there.
 */
mark: SaveMark | null, };

export type ConflictView = { id: string, entity: EntityKind, record_id: string, 
/**
 * The citizen (or "anonymous contact", as `None`) the record is about.
 */
record_label: string | null, 
/**
 * The field, as the screen names it: one goal's conflict is about `goals`.
 */
field: string, kind: ConflictKind, 
/**
 * This device's version (or the losing one, if neither came from here), as text: for a
 * structured field (a goal, a consent) its words, the rest in `mine_details`.
 */
mine: string, theirs: string, 
/**
 * The other parts of a structured version (a goal's status, a consent's date), each as
 * its translation group and raw value for the screen to put in words.
 */
mine_details: Array<FieldText>, theirs_details: Array<FieldText>, 
/**
 * The version removes the item (a goal deleted on one tablet, edited on the other).
 */
mine_removed: boolean, theirs_removed: boolean, 
/**
 * Who wrote each version, from the worker directory (`None`: not known on this device).
 */
mine_author: string | null, theirs_author: string | null, 
/**
 * Whether "mine" is the value the record holds now.
 */
mine_is_current: boolean, 
/**
 * The versions can be written together as one text (free text, or the words of a goal
 * or consent; not a whole goal list from before goals merged one by one).
 */
can_merge: boolean, 
/**
 * The worker may settle it from this tablet ([`crate::access::Offer::can_settle`]).
 */
can_settle: boolean, status: ConflictStatus, created_at_ms: number, };

export type SaveMark = "pending" | "refused";

export type RefusedBecause = "out_of_scope" | "invalid" | "other";

export type FieldText = { field: string, values: Array<string>, };

export type SetAsideView = { 
/**
 * The edit's number on this device (how the screen names it back).
 */
seq: number, entity: EntityKind, record_id: string, 
/**
 * The citizen the record is about (or the site), when this device still holds them.
 */
record_label: string | null, 
/**
 * The record is still on this device (a citizen who left the team's scope is not).
 */
on_device: boolean, reason: RefusedBecause, at_ms: number, 
/**
 * The values the edit wrote (server-owned and internal fields left out).
 */
fields: Array<FieldText>, 
/**
 * It can be sent again as a new edit of the record (on this device, and the worker's
 * role writes it).
 */
can_resend: boolean, 
/**
 * Its values can go into a new contact about another citizen or none (a whole visit, and
 * the worker logs visits).
 */
can_copy: boolean, };

export type Colleague = { id: string, name: string, role: Role, };

export type DraftView = { 
/**
 * The form's fields, as the screen kept them.
 */
content: unknown, at_ms: number, };

export type EnrolmentLink = { server_url: string, code: string, };

export type FirstRunInput = { server_url: string, code: string, pin: string, };

export type ConsentInput = { status: ConsentStatus, date: string, scope: string, method: ConsentMethod, };

export type GoalInput = { id: string | null, text: string, status: GoalStatus, };

export type CitizenInput = { id: string | null, alias: string, full_name: string, cpr: string, birth_year: number | null, phone: string, housing: HousingSituation, site_id: string | null, consent: ConsentInput | null, goals: Array<GoalInput>, 
/**
 * Short labels the team uses to find people ("natcafé", "metadon"); blank ones are dropped.
 */
tags: Array<string>, 
/**
 * Archived citizens leave the caseload (the case is closed) but keep their history.
 */
archived: boolean, };

export type FollowUpInput = { title: string, due: string, };

export type VisitInput = { citizen_id: string | null, 
/**
 * How many people were met, for an anonymous contact.
 */
anonymous_count: number | null, anonymous_description: string, kind: VisitKind, 
/**
 * When it started; `None` means now.
 */
started_at_ms: number | null, duration_minutes: number, place: string, themes: Array<Theme>, referrals: Array<Referral>, note: string, wellbeing: number | null, follow_up: FollowUpInput | null, 
/**
 * The support course the visit was part of, and the citizen's goals it worked on.
 */
course_id: string | null, goals: Array<string>, };

export type TaskInput = { citizen_id: string, title: string, due: string, };

export type TaskEdit = { title: string, due: string, assignee: string | null, };

export type VisitEdit = { kind: VisitKind, started_at_ms: number, duration_minutes: number, place: string, themes: Array<Theme>, referrals: Array<Referral>, note: string, wellbeing: number | null, 
/**
 * An anonymous contact's count and description (ignored for a visit about a citizen).
 */
anonymous_count: number | null, anonymous_description: string, };

export type HandoverInput = { citizen_id: string, to: string, 
/**
 * For the new worker: where things stand, what to do first. Optional.
 */
note: string, 
/**
 * The title of the task that brings the hand-over to the new worker's today screen, in
 * the worker's language (the screen words it: "Overdraget fra Anne").
 */
task_title: string, };

export type SiteInput = { kind: SiteKind, name: string, address: string, };

export type SiteLogInput = { site_id: string, kind: SiteLogKind, note: string, residents: Array<string>, };

export type ConflictChoice = { "choice": "keep_mine" } | { "choice": "keep_theirs" } | { "choice": "merged", text: string, } | { "choice": "dismiss" };

export type PathwayItem = { "list": "housing_history", "item": HousingChange } | { "list": "courses", "item": Course } | { "list": "course_reviews", "item": CourseReview } | { "list": "referrals", "item": ReferralCase } | { "list": "network", "item": NetworkPerson } | { "list": "consents", "item": PurposeConsent };

export type PathwayEdit = { "kind": "save", item: PathwayItem, 
/**
 * A follow-up task to make with a referral ("when asked for").
 */
follow_up: FollowUpInput | null, } | { "kind": "remove", 
/**
 * The list's field name (`courses`, `referrals`, …).
 */
list: string, id: string, } | { "kind": "circumstances", eviction_risk: boolean, rent_arrears: boolean, resources: string, };
