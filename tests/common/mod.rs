//! A real `strand broker` process for integration tests: its own port and data directory,
//! kill -9, restart on the same directory, SIGTERM. Only ever signals the PID it spawned.
#![allow(dead_code)]

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub struct Broker {
    pub port: u16,
    pub dir: PathBuf,
    child: Option<Child>,
    starts: u32,
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn strand_bin() -> &'static str {
    env!("CARGO_BIN_EXE_strand")
}

impl Broker {
    pub fn start(name: &str) -> Broker {
        Broker::start_with(name, &[])
    }

    /// Start with extra `key = value` lines in a strand.toml.
    pub fn start_with(name: &str, config_lines: &[&str]) -> Broker {
        let dir = std::env::temp_dir().join(format!("strand-it-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("strand.toml"), config_lines.join("\n")).unwrap();
        let mut b = Broker { port: free_port(), dir, child: None, starts: 0 };
        b.spawn();
        b
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join(format!("broker-{}.log", self.starts))
    }

    fn spawn(&mut self) {
        self.starts += 1;
        let log = std::fs::File::create(self.log_path()).unwrap();
        let child = Command::new(strand_bin())
            .args(["broker", "--listen", &self.addr(), "--data-dir"])
            .arg(self.dir.join("data"))
            .arg("--config")
            .arg(self.dir.join("strand.toml"))
            .env("STRAND_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn strand broker");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if TcpStream::connect(self.addr()).is_ok() {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("broker exited with {status} during start:\n{}", self.log_tail());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("broker did not accept connections within 30 s:\n{}", self.log_tail());
    }

    pub fn log_tail(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(self.log_path()) {
            let _ = f.read_to_string(&mut s);
        }
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// SIGKILL: no chance to sync or clean up.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "restart after kill9 or stop");
        self.spawn();
    }

    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| c.try_wait().unwrap().is_none())
    }

    /// SIGTERM, then wait (bounded) for a clean exit.
    pub fn stop(&mut self) -> ExitStatus {
        let mut c = self.child.take().expect("running");
        let status = Command::new("kill").args(["-TERM", &c.id().to_string()]).status().unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(s) = c.try_wait().unwrap() {
                return s;
            }
            if Instant::now() > deadline {
                c.kill().unwrap();
                panic!("broker did not exit within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill9();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
