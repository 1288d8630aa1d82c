//! `serve` as a real process: configuration, systemd notification, HTTP on
//! loopback, and a clean stop on SIGTERM. Every address used is loopback.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use appliance_agent::platform::{self, PlatformState, FORMAT_VERSION};
use serde_json::Value;

use support::{detect_fixture, fixture};

/// Time a server gets to start or stop on a loaded two-core CI machine.
const PROCESS_TIMEOUT: Duration = Duration::from_secs(30);

/// A child process that is killed if the test ends before it exits.
struct Server {
    child: Child,
    log_lines: Receiver<String>,
    log: Vec<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            // Only this test's own child is killed, by its handle.
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Server {
    fn start(command: &mut Command) -> Server {
        let mut child = command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .env("RUST_LOG", "info")
            .env_remove("JOURNAL_STREAM")
            .spawn()
            .expect("start appliance-agent serve");
        let stderr = child.stderr.take().expect("piped stderr");
        let (sender, log_lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Server {
            child,
            log_lines,
            log: Vec::new(),
        }
    }

    /// Reads log lines until one contains `needle`, and returns that line.
    fn wait_for_log(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + PROCESS_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.log_lines.recv_timeout(left) {
                Ok(line) => {
                    self.log.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no log line with {needle:?}; log so far:\n{}",
                    self.log.join("\n")
                ),
            }
        }
    }

    /// Reads the addresses from the `listening` lines, one per listener.
    fn wait_for_addresses(&mut self, count: usize) -> Vec<SocketAddr> {
        (0..count)
            .map(|_| {
                let line = self.wait_for_log("listening address=");
                let field = line.split("address=").nth(1).expect("address field");
                field
                    .split_whitespace()
                    .next()
                    .expect("address value")
                    .parse()
                    .expect("socket address")
            })
            .collect()
    }

    fn terminate(&mut self) -> ExitStatus {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits pid_t");
        // SAFETY: kill() only sends a signal. The pid is this test's own
        // child, which has not been reaped yet, so the pid still names it.
        let result = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(result, 0, "kill failed");

        let deadline = Instant::now() + PROCESS_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for child") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "serve did not stop after SIGTERM"
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn remaining_log(&mut self) -> String {
        while let Ok(line) = self.log_lines.recv_timeout(Duration::from_secs(5)) {
            self.log.push(line);
        }
        self.log.join("\n")
    }
}

/// Writes `appliance.yaml` into `dir` with `body` and a token store in
/// `dir`, so no test touches the machine's own store.
fn write_config(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("appliance.yaml");
    let store = dir.join("auth/tokens.json");
    std::fs::write(
        &path,
        format!("{body}auth:\n  token_store: {}\n", store.display()),
    )
    .expect("write config");
    path
}

/// Builds `serve` with its console in a file beside the configuration.
fn serve_command(config: &Path, state_dir: &Path) -> Command {
    let console = config.with_file_name("console");
    let mut command = Command::new(env!("CARGO_BIN_EXE_appliance-agent"));
    command
        .arg("serve")
        .arg("--config")
        .arg(config)
        .arg("--state-dir")
        .arg(state_dir)
        .arg("--console")
        .arg(console)
        // The test machine's own agents are not the tests' to disable.
        .arg("--host-channel-check-seconds")
        .arg("0")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("CREDENTIALS_DIRECTORY");
    command
}

/// Sends one HTTP/1.1 GET and returns the status code and the JSON body.
fn http_get(address: SocketAddr, path: &str) -> (u16, Value) {
    http_get_with(address, path, &format!("Host: {address}\r\n"))
}

/// Sends one HTTP/1.1 GET with the given header lines, each ending in CRLF.
fn http_get_with(address: SocketAddr, path: &str, headers: &str) -> (u16, Value) {
    let mut stream = TcpStream::connect_timeout(&address, PROCESS_TIMEOUT).expect("connect");
    stream
        .set_read_timeout(Some(PROCESS_TIMEOUT))
        .expect("set timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\n{headers}Connection: close\r\n\r\n"
    )
    .expect("send request");

    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read response");
    let (head, body) = response.split_once("\r\n\r\n").expect("HTTP head and body");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("status code");
    (status, serde_json::from_str(body).expect("JSON body"))
}

fn receive_notifications(socket: &UnixDatagram) -> String {
    let mut buffer = [0_u8; 4096];
    let length = socket.recv(&mut buffer).expect("notification datagram");
    String::from_utf8_lossy(&buffer[..length]).into_owned()
}

/// Receives datagrams until one has the line `line`, and returns them all.
fn receive_until_line(socket: &UnixDatagram, line: &str) -> Vec<String> {
    let mut received = Vec::new();
    loop {
        let datagram = receive_notifications(socket);
        let found = datagram.lines().any(|each| each == line);
        received.push(datagram);
        if found {
            return received;
        }
    }
}

/// Returns the `--engine` option that replays d01's four-token reply.
fn scripted_engine() -> String {
    let script = fixture("cases/d01-stream-chunk-shape/backend/hello.json");
    format!("--engine=scripted:{}", script.display())
}

#[test]
fn serve_answers_on_loopback() {
    let scratch = tempfile::tempdir().expect("create temp dir");
    let config = write_config(
        scratch.path(),
        "listen: [\"127.0.0.1:0\"]\nvm:\n  gpu_passthrough: true\n",
    );

    let state_dir = scratch.path().join("state");
    let state = PlatformState {
        format_version: FORMAT_VERSION,
        detected_at: 0,
        detection: detect_fixture(&fixture("vm/kvm-gpu-passthrough")),
    };
    platform::write(&state_dir, &state).expect("write platform state");

    let credentials = scratch.path().join("credentials");
    std::fs::create_dir(&credentials).expect("create credentials dir");
    std::fs::write(credentials.join("appliance.listen"), "127.0.0.2:0\n")
        .expect("write credential");

    let notify_path = scratch.path().join("notify.sock");
    let notify_socket = UnixDatagram::bind(&notify_path).expect("bind notify socket");
    notify_socket
        .set_read_timeout(Some(PROCESS_TIMEOUT))
        .expect("set timeout");

    let mut command = serve_command(&config, &state_dir);
    command
        .arg(scripted_engine())
        .env("NOTIFY_SOCKET", &notify_path)
        .env("CREDENTIALS_DIRECTORY", &credentials);
    let mut server = Server::start(&mut command);

    server.wait_for_log("platform state from early boot loaded");
    let addresses = server.wait_for_addresses(2);
    assert_eq!(addresses[0].ip().to_string(), "127.0.0.1");
    assert_eq!(addresses[1].ip().to_string(), "127.0.0.2");
    let notifications = receive_until_line(&notify_socket, "READY=1");
    let ready = notifications.last().expect("READY=1 datagram");
    assert!(
        ready
            .lines()
            .any(|line| line.starts_with("STATUS=Serving model hello; API on 127.0.0.1:")),
        "{ready}"
    );

    for address in &addresses {
        let (status, body) = http_get(*address, "/api/vm/status");
        assert_eq!(status, 200, "{address}");
        assert_eq!(body["is_vm"], true);
        assert_eq!(body["hypervisor"], "kvm");
        assert_eq!(body["gpu_passthrough"], true);
        assert_eq!(body["vm_gpu_enabled"], true);
        assert_eq!(body["security_notice"]["level"], "warning");
    }
    let (status, body) = http_get(addresses[0], "/api/health");
    assert_eq!(status, 200);
    assert_eq!(body["status"], "ok");
    assert_eq!(body["model"], "hello");
    let (status, body) = http_get(addresses[0], "/missing");
    assert_eq!(status, 404);
    assert_eq!(body["error"]["status"], 404);

    let exit = server.terminate();
    let log = server.remaining_log();
    assert!(exit.success(), "exit {exit:?}\n{log}");
    assert!(log.contains("stop requested signal=\"SIGTERM\""), "{log}");
    assert!(log.contains("API server stopped"), "{log}");
    let stopping = receive_until_line(&notify_socket, "STOPPING=1");
    assert!(!stopping.is_empty());
}

#[test]
fn serve_not_ready_without_model() {
    let scratch = tempfile::tempdir().expect("create temp dir");
    let models = scratch.path().join("models");
    std::fs::create_dir(&models).expect("create models dir");
    let config = scratch.path().join("appliance.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: [\"127.0.0.1:0\"]\nmodels:\n  dir: {}\n",
            models.display()
        ),
    )
    .expect("write config");
    let notify_path = scratch.path().join("notify.sock");
    let notify_socket = UnixDatagram::bind(&notify_path).expect("bind notify socket");
    notify_socket
        .set_read_timeout(Some(PROCESS_TIMEOUT))
        .expect("set timeout");

    let mut command = serve_command(&config, &scratch.path().join("state"));
    command.env("NOTIFY_SOCKET", &notify_path);
    let mut server = Server::start(&mut command);
    let address = server.wait_for_addresses(1)[0];

    // Without llama.cpp in this build, or without a model with it, the
    // service reports why and never sends READY=1.
    let mut statuses = Vec::new();
    while !statuses
        .iter()
        .any(|status: &String| status.contains("STATUS=No model: "))
    {
        let datagram = receive_notifications(&notify_socket);
        assert!(
            !datagram.lines().any(|line| line == "READY=1"),
            "{datagram}"
        );
        statuses.push(datagram);
    }
    let (status, body) = http_get(address, "/api/health");
    assert_eq!(status, 503);
    assert_eq!(body["status"], "unavailable");
    assert!(body["detail"].is_string(), "{body}");
    let (status, body) = http_get(address, "/api/vm/status");
    assert_eq!(status, 200, "{body}");

    let exit = server.terminate();
    assert!(exit.success(), "exit {exit:?}\n{}", server.remaining_log());
}

#[test]
fn disconnected_client_cancels_generation() {
    let scratch = tempfile::tempdir().expect("create temp dir");
    let config = write_config(
        scratch.path(),
        "listen: [\"127.0.0.1:0\"]\ninference:\n  queue_size: 0\n",
    );
    let created = Command::new(env!("CARGO_BIN_EXE_appliance-agent"))
        .args([
            "token",
            "create",
            "--name",
            "tests",
            "--scope",
            "inference",
            "--config",
        ])
        .arg(&config)
        .output()
        .expect("run token create");
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let api_key = String::from_utf8(created.stdout).expect("utf-8");
    let api_key = api_key.trim();
    let script = fixture("cases/d04-request-limits-and-message-validation/backend/endless.json");

    let mut command = serve_command(&config, &scratch.path().join("state"));
    command.arg(format!("--engine=scripted:{}", script.display()));
    let mut server = Server::start(&mut command);
    let address = server.wait_for_addresses(1)[0];
    server.wait_for_log("model ready");

    // Without max_tokens the job would run for the whole 4096-token
    // context, several seconds.
    for stream in [false, true] {
        let body = format!(
            r#"{{"model":"m","stream":{stream},"messages":[{{"role":"user","content":"Go."}}]}}"#
        );
        let mut client = TcpStream::connect_timeout(&address, PROCESS_TIMEOUT).expect("connect");
        write!(
            client,
            "POST /v1/chat/completions HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n\
             Authorization: Bearer {api_key}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .expect("send request");
        thread::sleep(Duration::from_millis(300));
        drop(client);

        let line = server.wait_for_log("generation");
        assert!(
            line.contains("generation cancelled: the client disconnected"),
            "stream {stream}: {line}"
        );
        // The job frees its queue place just after it logs the cancellation; the next
        // request must not race it, because the queue holds one job.
        thread::sleep(Duration::from_millis(300));
    }

    let exit = server.terminate();
    assert!(exit.success(), "exit {exit:?}\n{}", server.remaining_log());
}

#[test]
fn serve_detects_without_state() {
    let scratch = tempfile::tempdir().expect("create temp dir");
    let config = write_config(scratch.path(), "listen: [\"127.0.0.1:0\"]\n");

    let mut server = Server::start(&mut serve_command(&config, &scratch.path().join("state")));

    server.wait_for_log("running detection now");
    let address = server.wait_for_addresses(1)[0];
    let (status, body) = http_get(address, "/api/vm/status");
    assert_eq!(status, 200);
    assert!(body["hypervisor"].is_string());

    let exit = server.terminate();
    assert!(exit.success(), "exit {exit:?}\n{}", server.remaining_log());
}

#[test]
fn serve_rejects_invalid_config() {
    let scratch = tempfile::tempdir().expect("create temp dir");
    let config = scratch.path().join("appliance.yaml");
    std::fs::write(&config, "vm:\n  gpu_passthrough: sometimes\n").expect("write config");

    let output = serve_command(&config, scratch.path())
        .output()
        .expect("run appliance-agent serve");

    assert!(!output.status.success());
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(message.contains(&config.display().to_string()), "{message}");
    assert!(message.contains("vm.gpu_passthrough"), "{message}");
    assert!(message.contains("true or false"), "{message}");
}

#[test]
fn serve_reports_port_in_use() {
    let scratch = tempfile::tempdir().expect("create temp dir");
    let occupied = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a port");
    let address = occupied.local_addr().expect("local address");
    let config = write_config(scratch.path(), &format!("listen: [\"{address}\"]\n"));

    let output = serve_command(&config, scratch.path())
        .output()
        .expect("run appliance-agent serve");

    assert!(!output.status.success());
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(
        message.contains(&format!("failed to listen on {address}")),
        "{message}"
    );
}

#[test]
fn first_start_shows_admin_token_once() {
    let scratch = tempfile::tempdir().expect("create temp dir");
    let config = write_config(scratch.path(), "listen: [\"127.0.0.1:0\"]\n");
    let state_dir = scratch.path().join("state");
    let console = scratch.path().join("console");

    let mut server = Server::start(&mut serve_command(&config, &state_dir));
    let address = server.wait_for_addresses(1)[0];
    server.wait_for_log("initial admin token created");

    let shown = std::fs::read_to_string(&console).expect("read console");
    let token = shown
        .split_whitespace()
        .find(|word| word.starts_with("appliance_"))
        .expect("token on the console")
        .to_owned();
    let store =
        std::fs::read_to_string(scratch.path().join("auth/tokens.json")).expect("read token store");
    assert!(!store.contains(&token), "the store must keep only the hash");

    let (status, body) = http_get(address, "/api/auth/csrf");
    assert_eq!(status, 401, "{body}");
    let (status, body) = http_get_with(
        address,
        "/api/auth/csrf",
        &format!("Host: localhost\r\nAuthorization: Bearer {token}\r\n"),
    );
    assert_eq!(status, 200, "{body}");
    assert!(body["csrf_token"].is_string(), "{body}");
    let (status, body) = http_get_with(address, "/api/health", "Host: evil.example\r\n");
    assert_eq!(status, 403, "{body}");

    let exit = server.terminate();
    let log = server.remaining_log();
    assert!(exit.success(), "exit {exit:?}\n{log}");
    assert!(!log.contains(&token), "the token reached the log:\n{log}");

    let mut second = Server::start(&mut serve_command(&config, &state_dir));
    second.wait_for_addresses(1);
    let loaded = second.wait_for_log("token store loaded");
    assert!(loaded.contains("tokens=1"), "{loaded}");
    let exit = second.terminate();
    assert!(exit.success(), "exit {exit:?}\n{}", second.remaining_log());
    assert_eq!(
        std::fs::read_to_string(&console).expect("read console"),
        shown,
        "a second start must not show another token"
    );
}
