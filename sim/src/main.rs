//! strand-sim: `sweep --seeds A..B`, `replay SEED [--trace]`, `determinism --seeds A..B`,
//! `planted --seeds A..B`, `regressions`, `ci`. Build and run it through `sim/run`, which sets
//! `RUSTFLAGS="--cfg madsim"` and its own target dir.

#[cfg(not(madsim))]
fn main() {
    eprintln!("strand-sim: built without --cfg madsim; run it through sim/run");
    std::process::exit(2);
}

#[cfg(madsim)]
fn main() {
    std::process::exit(match sim::main(std::env::args().skip(1).collect()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("strand-sim: {e}");
            2
        }
    });
}

#[cfg(madsim)]
mod sim {
    use std::hash::{Hash, Hasher};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use strand_sim::check;
    use strand_sim::scenario::{self, Options, Recorder};

    const USAGE: &str = "usage: strand-sim sweep --seeds A..B [--faults F,..] | replay SEED [--build ID] [--faults F,..] [--trace] | determinism --seeds A..B | planted --seeds A..B | regressions | ci";

    /// `--faults` of this invocation, passed to child processes through the environment.
    const FAULTS_ENV: &str = "STRAND_SIM_FAULTS";

    fn faults_from_env() -> Option<Vec<String>> {
        std::env::var(FAULTS_ENV).ok().map(|v| scenario::parse_faults(&v).expect("validated by the parent"))
    }
    /// A run that needs more simulated time than this is a liveness failure.
    const SIM_TIME_LIMIT: Duration = Duration::from_secs(900);

    pub struct RunResult {
        pub seed: u64,
        pub violations: Vec<(String, String)>,
        pub trace: Vec<String>,
        pub trace_hash: u64,
        pub sim_secs: f64,
    }

    fn parse_seeds(s: &str) -> Result<std::ops::Range<u64>, String> {
        let (a, b) = s.split_once("..").ok_or_else(|| format!("seed range '{s}' must look like A..B"))?;
        let a: u64 = a.parse().map_err(|_| format!("seed range '{s}': '{a}' is not a number"))?;
        let b: u64 = b.parse().map_err(|_| format!("seed range '{s}': '{b}' is not a number"))?;
        if a >= b {
            return Err(format!("seed range '{s}' is empty"));
        }
        Ok(a..b)
    }

    fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
        args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).map(String::as_str)
    }

    fn seeds_arg(args: &[String]) -> Result<std::ops::Range<u64>, String> {
        parse_seeds(flag(args, "--seeds").ok_or_else(|| format!("missing --seeds A..B\n{USAGE}"))?)
    }

    /// Run one seed to completion on a fresh thread, so thread-local state left by an earlier
    /// run (lazily seeded hash keys draw from the simulation's RNG) cannot change this one.
    pub fn run_seed(seed: u64) -> RunResult {
        std::thread::Builder::new()
            .name(format!("seed-{seed}"))
            .spawn(move || run_seed_here(seed))
            .expect("spawn the seed's thread")
            .join()
            .unwrap_or_else(|_| RunResult { seed, violations: vec![("no-panic".into(), "the harness itself panicked".into())], trace: Vec::new(), trace_hash: 0, sim_secs: 0.0 })
    }

    /// Run one seed to completion, catching panics (a panic is a failure of that seed).
    fn run_seed_here(seed: u64) -> RunResult {
        let rec = Arc::new(Mutex::new(Recorder::default()));
        let mut runtime = madsim::runtime::Runtime::with_seed_and_config(seed, madsim::Config::default());
        runtime.set_time_limit(SIM_TIME_LIMIT);
        let rec2 = rec.clone();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            runtime.block_on(async move {
                let mut opts = Options::from_seed();
                if let Some(allowed) = faults_from_env() {
                    opts.limit_faults(&allowed);
                }
                let start = tokio::time::Instant::now();
                scenario::run(opts, rec2).await;
                start.elapsed().as_secs_f64()
            })
        }));
        let mut r = rec.lock().unwrap_or_else(|e| e.into_inner());
        r.history.producer_state_lost = strand::log::producers::REBUILDS_ABANDONED.load(std::sync::atomic::Ordering::Relaxed) > 0;
        let mut violations = Vec::new();
        let sim_secs = match outcome {
            Ok(secs) => {
                for (name, found) in check::all(&r.history) {
                    for v in found {
                        violations.push((name.to_string(), v));
                    }
                }
                secs
            }
            Err(panic) => {
                let msg = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "panic".into());
                let kind = if msg.contains("time limit") { "liveness" } else { "no-panic" };
                violations.push((kind.to_string(), msg));
                0.0
            }
        };
        let trace = std::mem::take(&mut r.trace);
        let mut h = std::collections::hash_map::DefaultHasher::new();
        trace.hash(&mut h);
        RunResult { seed, violations, trace, trace_hash: h.finish(), sim_secs }
    }

    /// Run one seed in a child process (`strand-sim child SEED [BUG]`), so no state of an
    /// earlier run in this process can change it: what a sweep saw is what `replay` reproduces.
    fn run_seed_isolated(seed: u64, bug: Option<&str>) -> RunResult {
        let exe = std::env::current_exe().expect("own executable");
        let mut cmd = std::process::Command::new(exe);
        cmd.arg("child").arg(seed.to_string());
        if let Some(bug) = bug {
            cmd.arg(bug);
        }
        let out = cmd.stderr(std::process::Stdio::null()).output().expect("run a child seed");
        let text = String::from_utf8_lossy(&out.stdout);
        let mut r = RunResult { seed, violations: Vec::new(), trace: Vec::new(), trace_hash: 0, sim_secs: 0.0 };
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("hash ") {
                r.trace_hash = u64::from_str_radix(rest.trim(), 16).unwrap_or(0);
            } else if let Some(rest) = line.strip_prefix("sim_secs ") {
                r.sim_secs = rest.trim().parse().unwrap_or(0.0);
            } else if let Some(rest) = line.strip_prefix("violation ") {
                let (name, v) = rest.split_once(' ').unwrap_or((rest, ""));
                r.violations.push((name.to_string(), v.to_string()));
            } else if let Some(rest) = line.strip_prefix("event ") {
                r.trace.push(rest.to_string());
            }
        }
        if !out.status.success() && r.violations.is_empty() {
            r.violations.push(("no-panic".into(), format!("child process for seed {seed} exited with {}", out.status)));
        }
        r
    }

    /// This simulator build's identity: a checksum of its own executable. A seed reproduces
    /// only on the build that found it.
    pub fn build_id() -> String {
        let exe = std::env::current_exe().and_then(std::fs::read).unwrap_or_default();
        format!("{:08x}", crc32c::crc32c(&exe))
    }

    fn report_failure(r: &RunResult) {
        println!("FAILED seed {}", r.seed);
        for (name, v) in r.violations.iter().take(10) {
            println!("  invariant {name}: {v}");
        }
        println!("  last events:");
        for e in r.trace.iter().rev().take(30).collect::<Vec<_>>().into_iter().rev() {
            println!("    {e}");
        }
        let faults = std::env::var(FAULTS_ENV).map(|f| format!(" --faults {f}")).unwrap_or_default();
        println!("  replay: sim/run replay {} --build {}{faults} --trace", r.seed, build_id());
    }

    fn sweep(seeds: std::ops::Range<u64>, quiet: bool) -> (u64, Vec<u64>) {
        let wall = std::time::Instant::now();
        let (mut sim_total, mut failed, mut runs) = (0.0, Vec::new(), 0u64);
        for seed in seeds.clone() {
            let r = run_seed_isolated(seed, None);
            runs += 1;
            sim_total += r.sim_secs;
            if !r.violations.is_empty() {
                if !quiet {
                    report_failure(&r);
                }
                failed.push(seed);
            }
            if !quiet && (runs % 10 == 0 || seed + 1 == seeds.end) {
                let w = wall.elapsed().as_secs_f64();
                println!("{runs} seeds, {} failed, {:.0} simulated s in {:.1} wall s = {:.0} sim-s per wall-s", failed.len(), sim_total, w, sim_total / w.max(1e-9));
            }
        }
        (runs, failed)
    }

    /// The seeds of `regressions.toml`, each with the `--faults` it was found under, if any.
    fn regression_seeds() -> Result<Vec<(u64, Option<String>)>, String> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/regressions.toml");
        let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
        let mut seeds: Vec<(u64, Option<String>)> = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            fn value<'a>(v: &'a str, path: &str, line: usize) -> Result<&'a str, String> {
                v.trim_start().strip_prefix('=').map(str::trim).ok_or_else(|| format!("{path}:{line}: expected 'key = value'"))
            }
            if let Some(v) = line.strip_prefix("seed") {
                let v = value(v, path, i + 1)?;
                seeds.push((v.parse().map_err(|_| format!("{path}:{}: '{v}' is not a seed", i + 1))?, None));
            } else if let Some(v) = line.strip_prefix("faults") {
                let list = value(v, path, i + 1)?.trim_matches('"').to_string();
                scenario::parse_faults(&list).map_err(|e| format!("{path}:{}: {e}", i + 1))?;
                let last = seeds.last_mut().ok_or_else(|| format!("{path}:{}: 'faults' before any 'seed'", i + 1))?;
                last.1 = Some(list);
            }
        }
        Ok(seeds)
    }

    fn determinism(seeds: std::ops::Range<u64>) -> bool {
        let mut ok = true;
        for seed in seeds {
            let (a, b) = (run_seed_isolated(seed, None), run_seed_isolated(seed, None));
            let same = a.trace_hash == b.trace_hash && a.trace == b.trace;
            // The children print the hash of the whole trace (its events only on a violation).
            println!("seed {seed}: trace hash {:016x} / {:016x} ({:.1} / {:.1} simulated s) {}", a.trace_hash, b.trace_hash, a.sim_secs, b.sim_secs, if same { "same" } else { "DIFFERENT" });
            if !same {
                if let Some((i, (x, y))) = a.trace.iter().zip(b.trace.iter()).enumerate().find(|(_, (x, y))| x != y) {
                    println!("  first difference at event {i}:\n    {x}\n    {y}");
                }
            }
            ok &= same;
        }
        ok
    }

    fn planted(seeds: std::ops::Range<u64>) -> Result<bool, String> {
        let mut all_caught = true;
        // The Raft core is not on the simulated broker's path yet (the broker runs one node);
        // its planted bugs are proven against the Raft harness in proptests/ (ci/run.sh). When
        // the cluster runs under the simulator, they join this list.
        for bug in strand::runtime::planted::PLANTED_BUGS.iter().filter(|b| !strand::runtime::planted::is_cluster_bug(b)) {
            let (mut first, mut caught) = (None, 0u64);
            for seed in seeds.clone() {
                let r = run_seed_isolated(seed, Some(bug));
                if !r.violations.is_empty() {
                    caught += 1;
                    first.get_or_insert((seed, r.violations[0].0.clone()));
                }
            }
            let n = seeds.end - seeds.start;
            match first {
                Some((seed, invariant)) => println!("planted {bug}: caught by {caught}/{n} seeds ({:.0} %), first at seed {seed} ({} seeds in), by {invariant}", 100.0 * caught as f64 / n as f64, seed - seeds.start + 1),
                None => {
                    println!("planted {bug}: NOT caught in {n} seeds");
                    all_caught = false;
                }
            }
        }
        strand::runtime::planted::set_planted(&[])?;
        Ok(all_caught)
    }

    pub fn main(args: Vec<String>) -> Result<i32, String> {
        let command = args.first().map(String::as_str).ok_or_else(|| USAGE.to_string())?;
        strand::runtime::planted::set_planted(&[])?;
        if let Some(list) = flag(&args, "--faults") {
            if !matches!(command, "sweep" | "replay") {
                return Err(format!("--faults applies to sweep and replay only\n{USAGE}"));
            }
            scenario::parse_faults(list)?;
            // Children (one per seed) and this process read it from here.
            std::env::set_var(FAULTS_ENV, list);
        }
        match command {
            "sweep" => {
                let (_, failed) = sweep(seeds_arg(&args)?, false);
                Ok(i32::from(!failed.is_empty()))
            }
            "replay" => {
                let seed: u64 = args.get(1).ok_or_else(|| format!("replay needs a seed\n{USAGE}"))?.parse().map_err(|_| format!("'{}' is not a seed", args[1]))?;
                if let Some(wanted) = flag(&args, "--build") {
                    let here = build_id();
                    if wanted != here {
                        return Err(format!("seed {seed} was found by simulator build {wanted}, but this is build {here}: the code changed, so the seed may not reproduce (check out the commit that found it, or sweep again)"));
                    }
                }
                let r = run_seed(seed);
                if args.iter().any(|a| a == "--trace") {
                    for e in &r.trace {
                        println!("{e}");
                    }
                }
                println!("seed {seed}: {} events, trace hash {:016x}, {:.1} simulated s, {}", r.trace.len(), r.trace_hash, r.sim_secs, if r.violations.is_empty() { "ok" } else { "FAILED" });
                if !r.violations.is_empty() {
                    report_failure(&r);
                    return Ok(1);
                }
                Ok(0)
            }
            "child" => {
                // One seed, machine-readable, for run_seed_isolated.
                let seed: u64 = args.get(1).ok_or("child needs a seed")?.parse().map_err(|_| "bad seed")?;
                if let Some(bug) = args.get(2) {
                    strand::runtime::planted::set_planted(&[bug.as_str()])?;
                }
                std::panic::set_hook(Box::new(|_| {}));
                let r = run_seed(seed);
                println!("hash {:016x}", r.trace_hash);
                println!("sim_secs {}", r.sim_secs);
                for (name, v) in &r.violations {
                    println!("violation {name} {}", v.replace('\n', " "));
                }
                if !r.violations.is_empty() {
                    for e in r.trace.iter().rev().take(30).collect::<Vec<_>>().into_iter().rev() {
                        println!("event {e}");
                    }
                }
                Ok(0)
            }
            "determinism" => Ok(i32::from(!determinism(seeds_arg(&args)?))),
            "planted" => Ok(i32::from(!planted(seeds_arg(&args)?)?)),
            "regressions" => {
                let seeds = regression_seeds()?;
                let mut failed = 0;
                for (s, faults) in &seeds {
                    // The child reads the fault list from the environment, as under --faults.
                    match faults {
                        Some(f) => std::env::set_var(FAULTS_ENV, f),
                        None => std::env::remove_var(FAULTS_ENV),
                    }
                    let r = run_seed_isolated(*s, None);
                    if !r.violations.is_empty() {
                        report_failure(&r);
                        failed += 1;
                    }
                }
                std::env::remove_var(FAULTS_ENV);
                println!("regressions: {} seeds, {failed} failed", seeds.len());
                Ok(i32::from(failed > 0))
            }
            "ci" => {
                let seeds = std::env::var("STRAND_SIM_CI_SEEDS").unwrap_or_else(|_| "0..2000".into());
                let (_, failed) = sweep(parse_seeds(&seeds)?, false);
                let regressions = main(vec!["regressions".into()])?;
                let deterministic = determinism(0..3);
                let planted_seeds = std::env::var("STRAND_SIM_PLANTED_SEEDS").unwrap_or_else(|_| "0..500".into());
                let all_caught = planted(parse_seeds(&planted_seeds)?)?;
                Ok(i32::from(!failed.is_empty() || regressions != 0 || !deterministic || !all_caught))
            }
            other => Err(format!("unknown command '{other}'\n{USAGE}")),
        }
    }
}
