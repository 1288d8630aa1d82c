//! A real software TPM (swtpm) per test, on free loopback ports in a temporary state
//! directory, because swtpm serves one client at a time.

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// One swtpm process, ended when dropped.
pub struct Swtpm {
    child: Child,
    port: u16,
    _state: tempfile::TempDir,
}

impl Swtpm {
    /// Starts swtpm. Panics with what to do when it is not installed.
    pub fn start() -> Option<Self> {
        assert!(
            Command::new("swtpm").arg("--version").output().is_ok(),
            "swtpm is not installed; run `make setup`"
        );
        let state = tempfile::tempdir().expect("create state dir");
        let port = free_port_pair();
        let child = Command::new("swtpm")
            .args(["socket", "--tpm2", "--flags", "not-need-init,startup-clear"])
            .arg("--server")
            .arg(format!("type=tcp,port={port},bindaddr=127.0.0.1"))
            .arg("--ctrl")
            .arg(format!("type=tcp,port={},bindaddr=127.0.0.1", port + 1))
            .arg("--tpmstate")
            .arg(format!("dir={}", state.path().display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start swtpm");
        let swtpm = Self {
            child,
            port,
            _state: state,
        };
        swtpm.wait_ready();
        Some(swtpm)
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "swtpm did not listen on port {} (state in {})",
                self.port,
                self._state.path().display()
            );
            sleep(Duration::from_millis(50));
        }
    }

    pub fn tcti(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.port)
    }
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Returns a port P such that P and P + 1 were both free.
pub fn free_port_pair() -> u16 {
    for _ in 0..100 {
        let first = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = first.local_addr().expect("address").port();
        if port < u16::MAX && TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
    panic!("no two adjacent free ports on 127.0.0.1");
}
