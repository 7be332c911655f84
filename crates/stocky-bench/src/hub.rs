//! Starts a fresh hub process for one scenario and reads its resource use from /proc.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use anyhow::{bail, Context, Result};

/// The credential the bench's hubs accept (the WebSocket path carries it).
pub const ADMIN_TOKEN: &str = "stocky-bench";

pub struct HubProcess {
    child: Child,
    pub addr: String,
    _dir: tempfile_dir::TempDir,
}

/// A throwaway data directory (std only, removed on drop).
mod tempfile_dir {
    pub struct TempDir(pub std::path::PathBuf);
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl HubProcess {
    /// Runs `bin hub --port 0` in a new temp dir with `env` extra settings.
    pub fn start(bin: &str, env: &[(&str, String)]) -> Result<Self> {
        Self::run(bin, &["hub"], env)
    }

    /// Runs `bin edge --port 0` on a new temp dir: `activate(dir)` enrols it first.
    pub fn edge(
        bin: &str,
        env: &[(&str, String)],
        activate: impl FnOnce(&std::path::Path) -> Result<()>,
    ) -> Result<Self> {
        let dir = temp_dir()?;
        activate(&dir)?;
        Self::run_in(bin, &["edge"], env, dir)
    }

    /// Stops this process (SIGTERM) and runs `bin <args>` again on its data dir, with
    /// other `env` (a restart with other settings).
    pub fn restart(&mut self, bin: &str, args: &[&str], env: &[(&str, String)]) -> Result<()> {
        self.terminate();
        let (child, addr) = spawn(bin, args, env, &self._dir.0)?;
        (self.child, self.addr) = (child, addr);
        Ok(())
    }

    fn terminate(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }

    fn run(bin: &str, args: &[&str], env: &[(&str, String)]) -> Result<Self> {
        Self::run_in(bin, args, env, temp_dir()?)
    }

    fn run_in(
        bin: &str,
        args: &[&str],
        env: &[(&str, String)],
        dir: std::path::PathBuf,
    ) -> Result<Self> {
        let (child, addr) = spawn(bin, args, env, &dir)?;
        Ok(HubProcess {
            addr,
            child,
            _dir: tempfile_dir::TempDir(dir),
        })
    }

    /// The SQLite file a second instance shares with this one (unless `DATABASE_URL` puts
    /// both on PostgreSQL).
    pub fn db_path(&self) -> String {
        self._dir.0.join("stocky.db").display().to_string()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory in KiB.
    pub fn rss_kib(&self) -> Result<u64> {
        rss_kib(self.pid())
    }

    /// CPU seconds (user + system) used so far.
    pub fn cpu_secs(&self) -> Result<f64> {
        cpu_secs(&format!("/proc/{}/stat", self.pid()))
    }
}

impl Drop for HubProcess {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// `bin <args> --port 0 --data-dir <dir>` with the bench's settings; returns the child and
/// the `host:port` of its banner.
fn spawn(
    bin: &str,
    args: &[&str],
    env: &[(&str, String)],
    dir: &std::path::Path,
) -> Result<(Child, String)> {
    let mut command = Command::new(bin);
    command
        .args(args)
        .args(["--port", "0", "--data-dir"])
        .arg(dir)
        .env("STOCKY_PING_INTERVAL_SECS", "3600")
        .env("STOCKY_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("STOCKY_RATE_LIMIT", "0")
        .env("STOCKY_RATE_LIMIT_IP", "0")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command.spawn().with_context(|| format!("starting {bin}"))?;
    let stdout = child.stdout.take().context("stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let first = lines.next().context("the process printed nothing")??;
    // Keep reading so that the process never writes into a closed pipe.
    std::thread::spawn(move || lines.for_each(drop));
    let Some(url) = first
        .split_whitespace()
        .last()
        .and_then(|u| u.strip_prefix("http://"))
    else {
        bail!("unexpected first line: {first}");
    };
    Ok((child, url.to_owned()))
}

fn temp_dir() -> Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "stocky-bench-{}-{}",
        std::process::id(),
        fastrand_suffix()
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn fastrand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

pub fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmRSS")
}

/// utime + stime of a `/proc/…/stat` file, in seconds (assumes 100 ticks per second).
pub fn cpu_secs(stat_path: &str) -> Result<f64> {
    let stat = std::fs::read_to_string(stat_path)?;
    let after_comm = stat.rsplit_once(')').context("malformed stat")?.1;
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    let utime: f64 = fields.get(11).context("utime")?.parse()?;
    let stime: f64 = fields.get(12).context("stime")?.parse()?;
    Ok((utime + stime) / 100.0)
}

/// This process's CPU seconds.
pub fn own_cpu_secs() -> Result<f64> {
    cpu_secs("/proc/self/stat")
}
