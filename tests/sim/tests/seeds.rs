//! The fixed range of seeds CI runs: 2,000 by default, in eight parts that the test harness runs
//! in parallel. `FELTBOG_SIM_SEEDS=<n>` runs `n` seeds instead (e.g. 100000 before a release).
//! A failure prints the property, what broke, and the one command that replays the seed.

use feltbog_sim::run_range;

const CI_SEEDS: u64 = 2_000;
const PARTS: u64 = 8;

fn seeds() -> u64 {
    match std::env::var("FELTBOG_SIM_SEEDS") {
        Ok(n) => n
            .parse()
            .expect("FELTBOG_SIM_SEEDS must be a number of seeds"),
        Err(_) => CI_SEEDS,
    }
}

fn part(i: u64) {
    let total = seeds();
    let (start, end) = (total * i / PARTS, total * (i + 1) / PARTS);
    match run_range(start..end) {
        Ok(stats) => println!("seeds {start}..{end}: every property holds; {stats:?}"),
        Err(failure) => panic!("{failure}"),
    }
}

macro_rules! parts {
    ($($name:ident = $i:expr;)*) => {$(
        #[test]
        fn $name() {
            part($i);
        }
    )*};
}

parts! {
    seeds_part_1_of_8 = 0;
    seeds_part_2_of_8 = 1;
    seeds_part_3_of_8 = 2;
    seeds_part_4_of_8 = 3;
    seeds_part_5_of_8 = 4;
    seeds_part_6_of_8 = 5;
    seeds_part_7_of_8 = 6;
    seeds_part_8_of_8 = 7;
}
