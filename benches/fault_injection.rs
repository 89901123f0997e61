//! The fault-injection tier's long profile (tests/support/src/fault.rs): for each ensemble size,
//! a real local ZooKeeper ensemble under a nemesis (SIGKILL of the leader or a follower,
//! SIGTERM, SIGSTOP, the leader or a follower partitioned from its peers, two overlapping on 5
//! servers, one quorum loss) while 5 clients write,
//! compare-and-set and read 3 registers; then the linearizability check of the history, and
//! per kind of fault the count, the operations during them by outcome, and the longest time
//! without an acknowledged write. Run it with:
//!
//! ```sh
//! bash tests/cluster/setup.sh && cargo bench --bench fault_injection
//! ```
//!
//! `ZOOHERD_FAULT_SECONDS` (default 300; 1800 for the long profile) sets how long faults are
//! injected per ensemble, `ZOOHERD_BENCH_SIZES=3,5` (the default) the ensemble sizes, and
//! `ZOOHERD_FAULT_SEED` replays a seed. A violation ends the run with the checker's message,
//! which names the history file.

use zooherd_test_support as support;

use support::fault::{self, Profile};
use support::linearizability::verify;

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this binary without it.
    if !std::env::args().any(|a| a == "--bench") {
        println!("fault_injection: a benchmark; run `cargo bench --bench fault_injection`");
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    for servers in support::env_list("ZOOHERD_BENCH_SIZES", &[3, 5]) {
        let run = runtime.block_on(fault::run(Profile::new(servers, 300)));
        println!();
        print!("{}", run.table());
        match verify(&run.history, &run.name) {
            Ok(report) => {
                let checked: usize = report.keys.iter().map(|k| k.checked).sum();
                let unknown: usize = report.keys.iter().map(|k| k.unknown).sum();
                println!(
                    "check: linearizable, {checked} operations in the write check ({unknown} \
                     unknown), {:.2} s; reads: no anomaly",
                    report.writes_elapsed.as_secs_f64() + report.reads_elapsed.as_secs_f64()
                );
            }
            Err(failed) => panic!(
                "{servers} servers, seed {} ({}={} replays the faults): {failed}",
                run.profile.seed,
                fault::SEED_VAR,
                run.profile.seed
            ),
        }
        println!();
    }
}
