//! `strand cluster` as processes: bad flags fail with one line; a 3-node start spawns three
//! `strand broker` children with the right flags and a stored cluster id, reused on restart;
//! SIGTERM to the launcher stops them all and exits 0. This does not assume the brokers form a
//! working cluster, only the launcher's process-level behaviour. `strand cluster status` is run
//! against a single broker.
#![cfg(not(madsim))]

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::{strand_bin, unique_temp_dir, Broker};

/// How long the launcher and its brokers may take to start, and to stop after SIGTERM.
const START_TIMEOUT: Duration = Duration::from_secs(20);
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

#[test]
fn bad_flags_give_one_line_and_fail() {
    let dir = unique_temp_dir("cluster-bad");
    let file = dir.join("a-file");
    std::fs::write(&file, "").unwrap();
    let under_file = file.join("cluster");
    let under_file = under_file.to_str().unwrap();
    for (args, want) in [
        (vec!["--nodes", "0"], "--nodes 0"),
        (vec!["--nodes", "10"], "--nodes 10"),
        (vec!["--base-port", "70000"], "70000"),
        (vec!["--base-port", "65534"], "--controller-base-port"),
        (vec!["--base-port", "65534", "--controller-base-port", "20000"], "above 65535"),
        (vec!["--base-port", "20000", "--controller-base-port", "20002"], "overlap"),
        (vec!["--data-dir", under_file], "cannot create data dir"),
        (vec!["status", "--nodes", "3"], "--nodes"),
    ] {
        let out = Command::new(strand_bin()).arg("cluster").args(&args).stdin(Stdio::null()).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: not one line:\n{stderr}");
        assert!(stderr.starts_with("strand: ") && stderr.contains(want), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?} printed {:?}", String::from_utf8_lossy(&out.stdout));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn status_of_an_unreachable_broker_names_it() {
    let port = common::free_port();
    let out = Command::new(strand_bin()).args(["cluster", "status", "-b", &format!("127.0.0.1:{port}")]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains(&format!("127.0.0.1:{port}")), "{stderr}");
}

#[test]
fn status_of_a_single_broker() {
    let broker = Broker::start("cluster-status");
    let (ok, out, err) = common::strand_cli(&broker, &["cluster", "status"], None);
    assert!(ok, "{out}{err}");
    let cluster_id = out.lines().find_map(|l| l.strip_prefix("cluster id: ")).unwrap_or_else(|| panic!("{out}"));
    assert_eq!(cluster_id.len(), 22, "{out}");
    assert!(out.contains("controller: 1\n"), "{out}");
    let row: Vec<&str> = out.lines().find(|l| l.starts_with("1 ")).unwrap_or_else(|| panic!("{out}")).split_whitespace().collect();
    assert_eq!(row, ["1", &broker.addr(), "-", "live"], "{out}");
    assert!(out.contains("partitions without a leader: none"), "{out}");
}

/// The first of `count` consecutive ports that are all free right now.
fn free_ports(count: u16) -> u16 {
    for _ in 0..100 {
        let base = common::free_port();
        if base.checked_add(count).is_some() && (base..base + count).all(|p| TcpListener::bind(("127.0.0.1", p)).is_ok()) {
            return base;
        }
    }
    panic!("no {count} consecutive free ports");
}

/// (client base port, controller base port): two disjoint runs of 3 free ports.
fn cluster_ports() -> (u16, u16) {
    let base_port = free_ports(3);
    loop {
        let controller_base_port = free_ports(3);
        if controller_base_port.abs_diff(base_port) >= 3 {
            return (base_port, controller_base_port);
        }
    }
}

/// A running `strand cluster`; dropping it SIGKILLs the launcher and any child left over.
struct Launcher {
    child: Option<Child>,
    log: PathBuf,
    data_dir: PathBuf,
}

impl Launcher {
    fn start(data_dir: &Path, base_port: u16, controller_base_port: u16, log: PathBuf) -> Launcher {
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(strand_bin())
            .args(["cluster", "--nodes", "3", "--base-port", &base_port.to_string()])
            .args(["--controller-base-port", &controller_base_port.to_string(), "--data-dir"])
            .arg(data_dir)
            .env("STRAND_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        Launcher { child: Some(child), log, data_dir: data_dir.to_path_buf() }
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Wait until every node's broker says it listens on its port (as relayed by the launcher).
    fn wait_started(&mut self, base_port: u16) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let log = self.log();
            if (1..=3u16).all(|n| log.contains(&format!("[node {n}] strand: broker listening on 127.0.0.1:{}", base_port + n - 1))) {
                return;
            }
            if let Some(s) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("launcher exited with {s} during start:\n{log}");
            }
            assert!(Instant::now() < deadline, "the cluster did not start within {START_TIMEOUT:?}:\n{log}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM the launcher and wait for it to exit.
    fn sigterm(&mut self) -> ExitStatus {
        let mut c = self.child.take().unwrap();
        assert!(Command::new("kill").args(["-TERM", &c.id().to_string()]).status().unwrap().success());
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(s) = c.try_wait().unwrap() {
                return s;
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                panic!("launcher did not exit within {STOP_TIMEOUT:?} of SIGTERM:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Launcher {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for (pid, _) in brokers_under(&self.data_dir) {
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
        }
    }
}

/// (pid, argv) of every live process whose command line names a directory under `data_dir`.
fn brokers_under(data_dir: &Path) -> Vec<(u32, Vec<String>)> {
    let needle = data_dir.to_str().unwrap();
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else { continue };
        // A zombie has an empty command line; it is gone as far as the ports are concerned.
        let argv: Vec<String> = raw.split(|b| *b == 0).filter(|a| !a.is_empty()).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
        if argv.get(1).map(String::as_str) == Some("broker") && argv.iter().any(|a| a.starts_with(needle)) {
            out.push((pid, argv));
        }
    }
    out.sort();
    out
}

/// The parent pid of `pid`, from /proc/PID/stat (the field after the parenthesised name).
fn parent_pid(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?.1.split_whitespace().nth(1)?.parse().ok()
}

fn flag<'a>(argv: &'a [String], name: &str) -> &'a str {
    let i = argv.iter().position(|a| a == name).unwrap_or_else(|| panic!("{name} missing in {argv:?}"));
    &argv[i + 1]
}

/// Check the three children of `launcher` and return the cluster id they were given.
fn check_children(launcher: &Launcher, base_port: u16, controller_base_port: u16) -> String {
    let children: Vec<(u32, Vec<String>)> =
        brokers_under(&launcher.data_dir).into_iter().filter(|(pid, _)| parent_pid(*pid) == Some(launcher.pid())).collect();
    assert_eq!(children.len(), 3, "{children:?}\n{}", launcher.log());
    let quorum: String = (0..3u16).map(|i| format!("{}@127.0.0.1:{}", i + 1, controller_base_port + i)).collect::<Vec<_>>().join(",");
    let mut node_ids: Vec<&str> = Vec::new();
    let mut cluster_ids: Vec<&str> = Vec::new();
    for (_, argv) in &children {
        assert_eq!(argv[0], std::fs::canonicalize(strand_bin()).unwrap().to_str().unwrap(), "{argv:?}");
        let id: u16 = flag(argv, "--node-id").parse().unwrap();
        node_ids.push(flag(argv, "--node-id"));
        assert_eq!(flag(argv, "--listen"), format!("127.0.0.1:{}", base_port + id - 1), "{argv:?}");
        assert_eq!(Path::new(flag(argv, "--data-dir")), launcher.data_dir.join(format!("node-{id}")), "{argv:?}");
        assert_eq!(flag(argv, "--controller-quorum"), quorum, "{argv:?}");
        cluster_ids.push(flag(argv, "--cluster-id"));
    }
    node_ids.sort_unstable();
    assert_eq!(node_ids, ["1", "2", "3"]);
    assert!(cluster_ids.iter().all(|c| *c == cluster_ids[0]), "{cluster_ids:?}");
    let stored = std::fs::read_to_string(launcher.data_dir.join("cluster.id")).unwrap();
    assert_eq!(stored.trim(), cluster_ids[0]);
    assert_eq!(stored.trim().len(), 22, "{stored:?}");
    cluster_ids[0].to_string()
}

/// After the launcher exited, none of its brokers is left (they are its children, so it must
/// have reaped them; no wait is needed).
fn assert_no_brokers_left(launcher: &Launcher) {
    let left = brokers_under(&launcher.data_dir);
    assert!(left.is_empty(), "brokers left after the launcher exited: {left:?}\n{}", launcher.log());
}

#[test]
fn three_nodes_start_and_stop_on_sigterm_and_keep_their_cluster_id() {
    let dir = unique_temp_dir("cluster-run");
    let data_dir = dir.join("cluster-data");
    let (base_port, controller_base_port) = cluster_ports();

    let mut launcher = Launcher::start(&data_dir, base_port, controller_base_port, dir.join("launcher-1.log"));
    launcher.wait_started(base_port);
    let cluster_id = check_children(&launcher, base_port, controller_base_port);
    let log = launcher.log();
    let bootstrap = (0..3u16).map(|i| format!("127.0.0.1:{}", base_port + i)).collect::<Vec<_>>().join(",");
    assert!(log.contains(&format!("bootstrap servers: {bootstrap}")), "{log}");
    assert!(log.contains(&format!("cluster id:        {cluster_id}")), "{log}");

    let status = launcher.sigterm();
    assert!(status.success(), "launcher exited with {status} after SIGTERM:\n{}", launcher.log());
    assert_no_brokers_left(&launcher);
    let log = launcher.log();
    for n in 1..=3 {
        assert!(log.contains(&format!("[node {n}] exited with status 0")), "{log}");
    }

    // The same directory again: the same cluster id.
    let mut launcher = Launcher::start(&data_dir, base_port, controller_base_port, dir.join("launcher-2.log"));
    launcher.wait_started(base_port);
    assert_eq!(check_children(&launcher, base_port, controller_base_port), cluster_id);
    let status = launcher.sigterm();
    assert!(status.success(), "launcher exited with {status} after SIGTERM:\n{}", launcher.log());
    assert_no_brokers_left(&launcher);
    drop(launcher);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_node_that_exits_is_reported_and_the_others_keep_running() {
    let dir = unique_temp_dir("cluster-kill");
    let data_dir = dir.join("cluster-data");
    let (base_port, controller_base_port) = cluster_ports();
    let mut launcher = Launcher::start(&data_dir, base_port, controller_base_port, dir.join("launcher.log"));
    launcher.wait_started(base_port);
    let node2 = brokers_under(&data_dir).into_iter().find(|(_, argv)| flag(argv, "--node-id") == "2").unwrap().0;
    assert!(Command::new("kill").args(["-KILL", &node2.to_string()]).status().unwrap().success());

    let deadline = Instant::now() + START_TIMEOUT;
    while !launcher.log().contains("[node 2] exited on signal 9") {
        assert!(Instant::now() < deadline, "node 2's exit not reported:\n{}", launcher.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(launcher.child.as_mut().unwrap().try_wait().unwrap().is_none(), "launcher exited:\n{}", launcher.log());
    let mut left: Vec<String> = brokers_under(&data_dir).iter().map(|(_, argv)| flag(argv, "--node-id").to_string()).collect();
    left.sort();
    assert_eq!(left, ["1", "3"], "{}", launcher.log());

    let status = launcher.sigterm();
    assert!(status.success(), "launcher exited with {status} after SIGTERM:\n{}", launcher.log());
    assert_no_brokers_left(&launcher);
    drop(launcher);
    let _ = std::fs::remove_dir_all(&dir);
}
