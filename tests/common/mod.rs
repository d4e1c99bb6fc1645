//! A real `strand broker` process for integration tests: its own port and data directory,
//! kill -9, restart on the same directory and port, SIGTERM. Only ever signals the PID it
//! spawned. Every wait is bounded.
#![allow(dead_code)]

use std::io::Read;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// How long a broker may take to accept TCP connections after spawn.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a broker may take to exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

pub struct Broker {
    pub port: u16,
    /// Test directory: `strand.toml`, `broker-N.log` (one per start) and `data/`.
    pub dir: PathBuf,
    child: Option<Child>,
    starts: u32,
}

/// A port nobody listens on right now (bind :0, read it, drop the listener).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn strand_bin() -> &'static str {
    env!("CARGO_BIN_EXE_strand")
}

/// A directory under the system temp dir that no other test (in this or another process) uses.
pub fn unique_temp_dir(name: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    let dir = std::env::temp_dir().join(format!(
        "strand-it-{name}-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

enum Started {
    Ok,
    /// The process exited before accepting connections; the log says why.
    Exited(ExitStatus),
}

impl Broker {
    pub fn start(name: &str) -> Broker {
        Broker::start_with(name, &[])
    }

    /// Start with extra `key = value` lines in the broker's `--config` file.
    pub fn start_with(name: &str, config_lines: &[&str]) -> Broker {
        let dir = unique_temp_dir(name);
        std::fs::write(dir.join("strand.toml"), config_lines.join("\n")).unwrap();
        let mut b = Broker { port: free_port(), dir, child: None, starts: 0 };
        // Between dropping the probe listener and the broker's bind another process may take
        // the port; on the first start only, try a few fresh ports before giving up.
        for attempt in 0..5 {
            match b.spawn() {
                Started::Ok => return b,
                Started::Exited(status) => {
                    let log = b.log_tail();
                    if attempt < 4 && log.to_lowercase().contains("in use") {
                        b.port = free_port();
                        continue;
                    }
                    panic!("broker exited with {status} during start:\n{log}");
                }
            }
        }
        unreachable!()
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join(format!("broker-{}.log", self.starts))
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn spawn(&mut self) -> Started {
        self.starts += 1;
        let log = std::fs::File::create(self.log_path()).unwrap();
        let child = Command::new(strand_bin())
            .args(["broker", "--listen", &self.addr(), "--data-dir"])
            .arg(self.data_dir())
            .arg("--config")
            .arg(self.dir.join("strand.toml"))
            .env("STRAND_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn strand broker");
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                return Started::Exited(status);
            }
            // Ready means *our* broker says it listens on our address. A TCP probe is not
            // enough: if another test took the port, the probe would reach that test's socket
            // (this once made a test talk to another test's listener and get reset).
            let ready = format!("broker listening on {}", self.addr());
            if std::fs::read_to_string(self.log_path()).is_ok_and(|log| log.contains(&ready)) {
                return Started::Ok;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill9();
        panic!("broker did not accept connections on {} within {START_TIMEOUT:?}:\n{}", self.addr(), self.log_tail());
    }

    /// The last 40 lines of the current start's log.
    pub fn log_tail(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(self.log_path()) {
            let _ = f.read_to_string(&mut s);
        }
        let lines: Vec<&str> = s.lines().collect();
        format!("--- {} (last 40 lines)\n{}", self.log_path().display(), lines[lines.len().saturating_sub(40)..].join("\n"))
    }

    /// SIGKILL (`Child::kill`): no chance to sync or clean up.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            c.wait().unwrap();
        }
    }

    /// Start again on the same data directory and port, after `kill9` or `stop`.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "restart after kill9 or stop");
        if let Started::Exited(status) = self.spawn() {
            panic!("broker exited with {status} during restart:\n{}", self.log_tail());
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| c.try_wait().unwrap().is_none())
    }

    /// SIGTERM (via `kill -TERM PID`), wait at most STOP_TIMEOUT, and assert a clean exit (0).
    pub fn stop(&mut self) -> ExitStatus {
        let mut c = self.child.take().expect("stop: broker not running");
        let status = Command::new("kill").args(["-TERM", &c.id().to_string()]).status().unwrap();
        assert!(status.success(), "kill -TERM {} failed", c.id());
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(s) = c.try_wait().unwrap() {
                assert!(s.success(), "broker exited with {s} after SIGTERM, expected 0:\n{}", self.log_tail());
                return s;
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                panic!("broker did not exit within {STOP_TIMEOUT:?} of SIGTERM:\n{}", self.log_tail());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!("broker files kept for debugging: {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// True if the peer closed the connection (EOF or reset) within 10 s.
pub fn closed_by_broker(s: &mut std::net::TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => return false,
            Err(_) => return true,
        }
    }
}

/// Run `strand ARGS -b BROKER` with `stdin`; (success, stdout, stderr).
pub fn strand_cli(broker: &Broker, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    use std::io::Write;
    let mut cmd = Command::new(strand_bin());
    cmd.args(args).args(["-b", &broker.addr()]).stdout(Stdio::piped()).stderr(Stdio::piped()).stdin(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}
