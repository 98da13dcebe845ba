//! `feltbog-sim`: replays one seed with its trace, or runs a range of seeds.
//!
//!     cargo run -p feltbog-sim -- --seed 1234 --trace
//!     cargo run -p feltbog-sim --release -- --from 0 --count 100000
//!     cargo run -p feltbog-sim -- --from 0 --count 500 --plant cursor-before-apply

use clap::Parser;
use feltbog_sim::{Config, DEFAULT_STEPS, PlantedBug, Stats, bug_name, run};
use std::process::ExitCode;
use std::time::Instant;

#[derive(Parser)]
#[command(about = "Deterministic simulation of Feltbog sync under faults")]
struct Args {
    /// Run this one seed.
    #[arg(long, conflicts_with_all = ["from", "count"])]
    seed: Option<u64>,
    /// First seed of a range.
    #[arg(long, default_value_t = 0)]
    from: u64,
    /// Number of seeds in the range.
    #[arg(long, default_value_t = 2000)]
    count: u64,
    /// Steps per seed before the network heals.
    #[arg(long, default_value_t = DEFAULT_STEPS)]
    steps: u32,
    /// Plant a known bug (cursor-before-apply, conflict-loser-dropped, push-not-idempotent,
    /// wall-clock-stamps, skew-unchecked).
    #[arg(long, value_parser = parse_bug)]
    plant: Option<PlantedBug>,
    /// Print every event of the run.
    #[arg(long)]
    trace: bool,
}

fn parse_bug(name: &str) -> Result<PlantedBug, String> {
    PlantedBug::ALL
        .into_iter()
        .find(|b| bug_name(*b) == name)
        .ok_or_else(|| format!("unknown bug {name:?}"))
}

fn main() -> ExitCode {
    let args = Args::parse();
    let seeds = match args.seed {
        Some(seed) => seed..seed + 1,
        None => args.from..args.from + args.count,
    };
    let started = Instant::now();
    let mut total = Stats::default();
    let count = seeds.end - seeds.start;
    for seed in seeds {
        let config = Config {
            seed,
            steps: args.steps,
            bug: args.plant,
            trace: args.trace,
        };
        match run(&config) {
            Ok(outcome) => {
                for line in &outcome.trace {
                    println!("  {line}");
                }
                if args.trace {
                    println!("seed {seed}: every property holds ({:?})", outcome.stats);
                }
                total.add(&outcome.stats);
            }
            Err(failure) => {
                eprintln!("{failure}");
                return ExitCode::FAILURE;
            }
        }
    }
    println!(
        "{count} seeds passed in {:.1} s: {total:?}",
        started.elapsed().as_secs_f64()
    );
    ExitCode::SUCCESS
}
