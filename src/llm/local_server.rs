//! The embedded default model: dgen starts llama.cpp's `llama-server` as its child on a free
//! 127.0.0.1 port, waits until it is healthy, points the OpenAI-compatible client at it, and
//! stops it when the run ends — normally, on error, on Ctrl-C, on panic (the guard's `Drop`),
//! and on `kill -9` of dgen (the kernel's parent-death signal). The server runs in its own
//! process group, so a terminal's Ctrl-C reaches dgen alone and dgen can finish in-flight items.
#![allow(unsafe_code)]

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

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
        let log = std::fs::File::create(&s.log)
            .with_context(|| format!("cannot write the server log {}", s.log.display()))?;
        let mut command = Command::new(&s.binary);
        command
            .arg("-m")
            .arg(&s.model)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["-c", &(s.ctx as usize * s.slots).to_string()])
            .args(["-np", &s.slots.to_string()])
            .args(["-t", &s.threads.to_string()])
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
        };
        server.wait_healthy(port, &s.log)?;
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
        let url = format!("http://127.0.0.1:{port}/health");
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "llama-server exited before it was ready ({status}); its log ({}) ends with:\n{}",
                    log.display(),
                    tail(log)
                );
            }
            if health(&url) {
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
}

/// GET /health over a plain TCP connection (the async client lives in the runtime).
fn health(url: &str) -> bool {
    use std::io::Write;
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let Some((addr, path)) = rest.split_once('/') else {
        return false;
    };
    let Ok(mut stream) = std::net::TcpStream::connect(addr) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET /{path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.starts_with("HTTP/1.1 200") || response.starts_with("HTTP/1.0 200")
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
