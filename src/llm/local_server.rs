//! The embedded default model: dgen starts llama.cpp's `llama-server` as its child on a free
//! 127.0.0.1 port, waits until it is healthy, points the OpenAI-compatible client at it, and
//! stops it when the run ends — normally, on error, on Ctrl-C, on panic (the guard's `Drop`),
//! and on `kill -9` of dgen (the kernel's parent-death signal). The server runs in its own
//! process group, so a terminal's Ctrl-C reaches dgen alone and dgen can finish in-flight items.
//!
//! The port is free when dgen picks it, but another local user could bind it before
//! llama-server does. So each start gives the server a random key of its own (from the OS's
//! randomness, in `LLAMA_API_KEY`: an environment is private to its user, a command line is
//! not), dgen calls it with that key and never with the user's OpenAI key (which the server's
//! environment does not carry either), and a server on the port that answers without the key,
//! or refuses it, is not ours: the start fails, naming the port.
#![allow(unsafe_code)]

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::llm::Secret;

pub const DEFAULT_MODEL: &str = "models/SmolLM2-135M-Instruct.Q4_1.gguf";
pub const DEFAULT_SERVER: &str = "bin/llama-server";

pub struct ServerSettings {
    pub binary: PathBuf,
    pub model: PathBuf,
    /// Context per request slot.
    pub ctx: u32,
    pub threads: usize,
    pub slots: usize,
    pub log: PathBuf,
}

/// How the user set up the server (`--llama_server`, `--ctx`, `--threads`, `--slots`), before
/// the model and the binary's default are known.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// The llama-server binary [default: the one `scripts/setup-local-model.sh` built].
    pub binary: Option<PathBuf>,
    pub ctx: u32,
    /// CPU threads [default: all cores].
    pub threads: Option<usize>,
    pub slots: usize,
}

impl ServerOptions {
    /// The server's settings for `model`, the binary defaulting to the one in `assets`.
    pub fn settings(
        &self,
        assets: &std::path::Path,
        model: &std::path::Path,
        log: PathBuf,
    ) -> ServerSettings {
        ServerSettings {
            binary: self
                .binary
                .clone()
                .unwrap_or_else(|| assets.join(DEFAULT_SERVER)),
            model: model.to_path_buf(),
            ctx: self.ctx,
            threads: self
                .threads
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())),
            slots: self.slots,
            log,
        }
    }
}

/// A running llama-server; stopped when dropped.
pub struct LocalServer {
    child: Child,
    pub base_url: String,
    /// The key this server was started with, and the only one it accepts.
    pub key: Secret,
}

/// The variables a llama-server child must not inherit: the user's keys, which it has no use
/// for, and llama-server's own key settings, which would let in keys other than ours.
const WITHHELD_ENV: &[&str] = &[
    "OPENAI_API_KEY",
    "OPENAI_KEY",
    "LLAMA_API_KEY",
    "LLAMA_ARG_API_KEY",
    "LLAMA_ARG_API_KEY_FILE",
];

/// A fresh key for one server start: 32 bytes of the OS's randomness, as hex.
fn random_key() -> Result<Secret> {
    use rand::TryRngCore;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng
        .try_fill_bytes(&mut bytes)
        .context("cannot draw a key for the local server from the OS's randomness")?;
    Ok(Secret::new(
        bytes.iter().map(|b| format!("{b:02x}")).collect(),
    ))
}

fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

fn tail(path: &Path) -> String {
    let mut text = String::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        let _ = f.read_to_string(&mut text);
    }
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

impl LocalServer {
    pub fn start(s: &ServerSettings) -> Result<LocalServer> {
        if !s.model.is_file() {
            bail!(
                "model {} does not exist; run scripts/setup-local-model.sh or pass --local_model PATH.gguf",
                s.model.display()
            );
        }
        if !s.binary.is_file() {
            bail!(
                "llama-server {} does not exist; run scripts/setup-local-model.sh, or pass --llama_server PATH (or set DGEN_LLAMA_SERVER)",
                s.binary.display()
            );
        }
        let port = free_port()?;
        let key = random_key()?;
        let log = std::fs::File::create(&s.log)
            .with_context(|| format!("cannot write the server log {}", s.log.display()))?;
        let mut command = Command::new(&s.binary);
        for name in WITHHELD_ENV {
            command.env_remove(name);
        }
        command
            .arg("-m")
            .arg(&s.model)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["-c", &(s.ctx as usize * s.slots).to_string()])
            .args(["-np", &s.slots.to_string()])
            .args(["-t", &s.threads.to_string()])
            .env("LLAMA_API_KEY", key.expose())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0);
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            command.pre_exec(move || {
                // Die with dgen, even on kill -9; and if dgen already died, do not start.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0
                    || libc::getppid() != parent
                {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {}", s.binary.display()))?;
        let mut server = LocalServer {
            child,
            base_url: format!("http://127.0.0.1:{port}/v1"),
            key,
        };
        server.wait_healthy(port, &s.log)?;
        server.check_ours(port, &s.log)?;
        tracing::info!(
            "llama-server (pid {}) ready on 127.0.0.1:{port} ({}; log {})",
            server.child.id(),
            s.model.display(),
            s.log.display()
        );
        Ok(server)
    }

    fn wait_healthy(&mut self, port: u16, log: &Path) -> Result<()> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "llama-server exited before it was ready ({status}); its log ({}) ends with:\n{}",
                    log.display(),
                    tail(log)
                );
            }
            if get(port, "/health", None) == Some(200) {
                return Ok(());
            }
            if started.elapsed() > Duration::from_secs(180) {
                bail!(
                    "llama-server did not become healthy within 180 s; see {}",
                    log.display()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Fails unless the server on `port` is the child started with our key: it must refuse a
    /// call without the key and take one with it. Another program that took the port between
    /// dgen's pick and llama-server's bind answers otherwise (and dgen's key is all it saw).
    fn check_ours(&mut self, port: u16, log: &Path) -> Result<()> {
        let without = get(port, PROBE, None);
        let with = get(port, PROBE, Some(&self.key));
        let exited = self.child.try_wait()?;
        // Answering as llama-server does is not enough: a program holding the port could too
        // (it saw our key). The listening socket must be the child's own.
        let owner = listener_is_child(self.child.id(), port);
        let why = match (without, with) {
            (Some(401 | 403), Some(200)) if exited.is_none() && owner != Some(false) => {
                return Ok(())
            }
            _ if exited.is_none() && owner == Some(false) => {
                "listens from another process than the llama-server dgen started".to_string()
            }
            (Some(code @ 200..=299), _) => {
                format!("answered GET {PROBE} without the key dgen gave its llama-server ({code})")
            }
            (_, Some(code @ (401 | 403))) => {
                format!("refused the key dgen gave its llama-server ({code})")
            }
            _ if exited.is_some() => format!(
                "answers, but the llama-server dgen started has exited; its log ({}) ends with:\n{}",
                log.display(),
                tail(log)
            ),
            (without, with) => format!(
                "answered GET {PROBE} with {} without the key and {} with it, not as llama-server does (401, then 200)",
                status_text(without),
                status_text(with)
            ),
        };
        bail!(
            "the server on 127.0.0.1:{port} is not the llama-server dgen started: it {why}. Another program may have taken the port after dgen picked it; dgen sent it no API key of yours. Run the command again (dgen picks another port); a llama-server too old to read LLAMA_API_KEY fails this check too"
        )
    }
}

/// Whether the socket listening on 127.0.0.1:`port` belongs to process `pid`: the listening
/// sockets' inodes on that port from `/proc/net/tcp`, against the `socket:[inode]` links of
/// `/proc/PID/fd`. `None` when that cannot be told (no listener seen, `/proc` unreadable).
fn listener_is_child(pid: u32, port: u16) -> Option<bool> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let port = format!(":{port:04X}");
    let inodes: Vec<String> = table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            // local_address, state 0A = LISTEN, inode.
            (f.len() > 9 && f[1].ends_with(&port) && f[3] == "0A").then(|| f[9].to_string())
        })
        .collect();
    if inodes.is_empty() {
        return None;
    }
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    let owned = fds.flatten().any(|fd| {
        std::fs::read_link(fd.path()).is_ok_and(|target| {
            let target = target.to_string_lossy();
            inodes.iter().any(|i| target == format!("socket:[{i}]"))
        })
    });
    Some(owned)
}

/// A call llama-server answers only with its key (`/health` and, in newer versions, `/models`
/// need none).
const PROBE: &str = "/props";

fn status_text(code: Option<u16>) -> String {
    code.map_or_else(|| "no answer".into(), |c| c.to_string())
}

/// GET `path` on 127.0.0.1:`port` over a plain TCP connection (the async client lives in the
/// runtime), with `key` as the bearer; the status code, or `None` without an answer.
fn get(port: u16, path: &str, key: Option<&Secret>) -> Option<u16> {
    use std::io::Write;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let auth = key.map_or_else(String::new, |k| {
        format!("Authorization: Bearer {}\r\n", k.expose())
    });
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{auth}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).ok()?;
    // "HTTP/1.1 200"
    let head = std::str::from_utf8(&head).ok()?;
    head.strip_prefix("HTTP/1.")?.get(2..5)?.parse().ok()
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: signalling our own child.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
