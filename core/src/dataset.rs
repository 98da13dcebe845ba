//! Deterministic datasets of DESIGN §7, for benchmarks and scenario tests.
//!
//! Same seed, same data — ids, names, notes and times included — so figures from two runs
//! compare like for like. Names and notes are synthetic; nothing here is real personal data.

use crate::domain::{
    Citizen, CitizenId, Cpr, HousingSituation, Referral, Task, TaskId, TaskStatus, TeamId, Theme,
    Visit, VisitId, VisitKind, WorkerId,
};
use chrono::{DateTime, Duration, TimeZone, Utc};
use uuid::Uuid;

/// How much of everything to generate.
#[derive(Clone, Copy, Debug)]
pub struct Spec {
    pub teams: usize,
    pub workers: usize,
    pub citizens: usize,
    pub visits: usize,
    pub tasks: usize,
}

/// One team's caseload: 8 workers, 300 citizens, 20,000 visits, 3,000 tasks.
pub const TEAM: Spec = Spec {
    teams: 1,
    workers: 8,
    citizens: 300,
    visits: 20_000,
    tasks: 3_000,
};
/// A municipality: 20 teams, 200 workers, 6,000 citizens, 400,000 visits (tasks pro rata).
pub const MUNICIPALITY: Spec = Spec {
    teams: 20,
    workers: 200,
    citizens: 6_000,
    visits: 400_000,
    tasks: 60_000,
};

/// A generated dataset.
#[derive(Clone, Debug)]
pub struct Dataset {
    pub teams: Vec<TeamId>,
    pub workers: Vec<WorkerId>,
    pub citizens: Vec<Citizen>,
    pub visits: Vec<Visit>,
    pub tasks: Vec<Task>,
}

impl Dataset {
    /// The dataset as one real worker of one team uploads it: every reference to a worker
    /// names `worker` and the team is left to the server (which refuses a reference to a
    /// worker it does not know, and sets a new record's team from its writer's).
    pub fn written_by(&mut self, worker: WorkerId) {
        for c in &mut self.citizens {
            c.team_id = None;
            c.primary_worker = c.primary_worker.map(|_| worker);
            for consent in &mut c.consents {
                consent.recorded_by = worker;
            }
        }
        for v in &mut self.visits {
            v.team_id = None;
            v.author = worker;
        }
        for t in &mut self.tasks {
            t.assignee = t.assignee.map(|_| worker);
        }
    }
}

/// SplitMix64: small, fast, and stable forever (unlike a library RNG whose stream may change).
#[derive(Clone, Debug)]
pub struct SplitMix(pub u64);

impl SplitMix {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
    fn uuid(&mut self) -> Uuid {
        uuid::Builder::from_random_bytes(
            ((u128::from(self.next_u64()) << 64) | u128::from(self.next_u64())).to_be_bytes(),
        )
        .into_uuid()
    }
}

const FIRST: &[&str] = &[
    "Anne", "Bo", "Camilla", "Dorte", "Erik", "Fatima", "Gustav", "Hanne", "Ib", "Jonas", "Karin",
    "Lars", "Mette", "Niels", "Omar", "Pia",
];
const LAST: &[&str] = &[
    "Hansen",
    "Jensen",
    "Nielsen",
    "Pedersen",
    "Andersen",
    "Larsen",
    "Sørensen",
    "Rasmussen",
    "Kaya",
    "Holm",
];
const ALIAS: &[&str] = &[
    "Fisk",
    "Store Per",
    "Lille Ø",
    "Kaptajnen",
    "Rødhætte",
    "Skipper",
    "Musen",
    "Tinkerbell",
];
const NOTE_WORDS: &[&str] = &[
    "talte",
    "om",
    "husleje",
    "og",
    "gæld",
    "lægen",
    "aftale",
    "næste",
    "uge",
    "har",
    "sovet",
    "dårligt",
    "vil",
    "gerne",
    "i",
    "arbejde",
    "netværk",
    "søster",
    "kommune",
    "ansøgning",
    "bolig",
    "tryg",
    "mødte",
    "op",
];
const HOUSING: &[HousingSituation] = &[
    HousingSituation::Street,
    HousingSituation::Shelter,
    HousingSituation::AlternativeHousing,
    HousingSituation::StairwellCommunity,
    HousingSituation::OwnRental,
    HousingSituation::HospitalOrPrison,
    HousingSituation::Other,
];
const KINDS: &[VisitKind] = &VisitKind::ALL;
const THEMES: &[Theme] = &[
    Theme::Housing,
    Theme::EconomyAndDebt,
    Theme::PhysicalHealth,
    Theme::MentalHealth,
    Theme::SubstanceUse,
    Theme::WorkAndEducation,
    Theme::NetworkAndLoneliness,
    Theme::DailyLiving,
    Theme::Crisis,
    Theme::Other,
];
const REFERRALS: &[Referral] = &[
    Referral::DebtCounselling,
    Referral::HousingSupport,
    Referral::AddictionTreatment,
    Referral::Doctor,
    Referral::JobCentre,
    Referral::VolunteerCentre,
];

fn epoch() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, 1, 8, 0, 0).unwrap()
}

fn note(rng: &mut SplitMix, words: usize) -> String {
    let mut s = String::with_capacity(words * 7);
    for i in 0..words {
        if i > 0 {
            s.push(' ');
        }
        s.push_str(rng.pick::<&str>(NOTE_WORDS));
    }
    s
}

/// Generates a dataset from `spec` and `seed`.
pub fn generate(spec: Spec, seed: u64) -> Dataset {
    let mut rng = SplitMix(seed);
    let teams: Vec<TeamId> = (0..spec.teams).map(|_| TeamId(rng.uuid())).collect();
    let workers: Vec<WorkerId> = (0..spec.workers).map(|_| WorkerId(rng.uuid())).collect();
    let citizens: Vec<Citizen> = (0..spec.citizens)
        .map(|i| {
            let mut c = Citizen::with_alias(rng.pick::<&str>(ALIAS));
            c.id = CitizenId(rng.uuid());
            c.created_at = epoch() + Duration::minutes(i as i64);
            if rng.below(3) > 0 {
                c.full_name = Some(format!("{} {}", *rng.pick(FIRST), *rng.pick(LAST)).into());
                let year = 1950 + rng.below(55) as i32;
                let cpr = format!(
                    "{:02}{:02}{:02}-{}{:03}",
                    1 + rng.below(28),
                    1 + rng.below(12),
                    year % 100,
                    if year < 2000 { 1 } else { 4 },
                    rng.below(1000)
                );
                c.cpr = Cpr::parse(&cpr).ok();
                c.birth_year = Some(year);
            }
            c.housing = *rng.pick(HOUSING);
            c.team_id = Some(teams[i % teams.len()]);
            c.primary_worker = Some(workers[i % workers.len()]);
            c
        })
        .collect();
    let visits: Vec<Visit> = (0..spec.visits)
        .map(|i| {
            let citizen = &citizens[rng.below(citizens.len() as u64) as usize];
            let mut v = Visit::with_citizen(citizen.id, *rng.pick(&workers), *rng.pick(KINDS));
            v.id = VisitId(rng.uuid());
            v.team_id = citizen.team_id;
            v.started_at = epoch() + Duration::minutes(30 * i as i64 / (spec.teams as i64).max(1));
            v.duration_minutes = 10 + rng.below(80) as u16;
            for _ in 0..1 + rng.below(3) {
                v.themes.insert(*rng.pick(THEMES));
            }
            if rng.below(4) == 0 {
                v.referrals.insert(*rng.pick(REFERRALS));
            }
            let words = 10 + rng.below(50) as usize;
            v.note = note(&mut rng, words).into();
            v.wellbeing = (rng.below(3) == 0).then(|| 1 + rng.below(10) as u8);
            v
        })
        .collect();
    let tasks: Vec<Task> = (0..spec.tasks)
        .map(|i| {
            let citizen = &citizens[rng.below(citizens.len() as u64) as usize];
            let created_at = epoch() + Duration::hours(i as i64);
            Task {
                id: TaskId(rng.uuid()),
                citizen_id: citizen.id,
                title: note(&mut rng, 4).into(),
                created_at,
                due: (created_at + Duration::days(rng.below(30) as i64)).date_naive(),
                assignee: citizen.primary_worker,
                status: if rng.below(3) == 0 {
                    TaskStatus::Done
                } else {
                    TaskStatus::Open
                },
                archived: false,
            }
        })
        .collect();
    Dataset {
        teams,
        workers,
        citizens,
        visits,
        tasks,
    }
}

/// The machine a figure was measured on (CPU, cores, memory, OS), for benchmark output.
pub fn machine_description() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|k| k.parse::<u64>().ok())
        })
        .map(|kb| kb / 1024 / 1024)
        .unwrap_or(0);
    format!(
        "{cpu}, {cores} cores, {mem} GiB RAM, {} {}",
        std::env::consts::OS,
        std::env::consts::ARCH
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Validate;

    #[test]
    fn same_seed_same_data_and_all_valid() {
        let small = Spec {
            teams: 2,
            workers: 4,
            citizens: 30,
            visits: 200,
            tasks: 40,
        };
        let a = generate(small, 7);
        let b = generate(small, 7);
        assert_eq!(a.visits, b.visits);
        assert_eq!(a.citizens, b.citizens);
        assert_ne!(generate(small, 8).visits, a.visits);
        assert!(a.citizens.iter().all(|c| c.validate().is_ok()));
        assert!(a.visits.iter().all(|v| v.validate().is_ok()));
        assert!(a.tasks.iter().all(|t| t.validate().is_ok()));
    }
}
