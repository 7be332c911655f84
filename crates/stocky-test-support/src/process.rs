//! Processes under test: a `stocky hub` child process, and the path of a crate's example
//! binary (built on demand when `cargo test` did not build it already).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::ADMIN;

/// A `stocky hub` process on port 0, stopped (SIGTERM) by [`HubProcess::stop`] and killed
/// on drop.
pub struct HubProcess {
    child: Child,
    /// `http://127.0.0.1:PORT`, read from the banner's first line.
    pub http: String,
}

impl HubProcess {
    /// Starts `bin hub --port 0 --admin-token ADMIN ARGS…` and waits for its banner.
    pub fn start(bin: &Path, args: &[&std::ffi::OsStr]) -> Result<HubProcess> {
        Self::start_at(bin, 0, args)
    }

    /// The same on a given port (a restart where clients know the address).
    pub fn start_at(bin: &Path, port: u16, args: &[&std::ffi::OsStr]) -> Result<HubProcess> {
        let port = port.to_string();
        let mut command = Command::new(bin);
        command
            .args(["hub", "--port", &port, "--admin-token", ADMIN])
            .args(args)
            .env_remove("PORT")
            .env_remove("DB_PATH")
            .env_remove("STOCKY_DATA_DIR")
            .env_remove("DATABASE_URL");
        let (child, http) = spawn_with_banner(&mut command, bin)?;
        Ok(HubProcess { http, child })
    }

    /// The SDK against this hub, as the operator.
    pub fn sdk(&self) -> stocky_client::Client {
        stocky_client::Client::new(&self.http)
            .expect("the banner's URL is valid")
            .with_token(ADMIN)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no chance to finish anything (a crash).
    pub fn kill(mut self) -> Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// SIGTERM, then waits; the exit must be clean.
    pub fn stop(mut self) -> Result<()> {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        let status = self.child.wait()?;
        if !status.success() {
            bail!("hub exited with {status}");
        }
        Ok(())
    }
}

impl Drop for HubProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The binary of example `name` of package `package`, next to the running test's binary
/// (`target/<profile>/examples/`); built with cargo first if it is not there.
pub fn example_binary(package: &str, name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .context("test binaries live in target/<profile>/deps")?;
    let path = profile_dir.join("examples").join(name);
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // Always ask cargo: it is a no-op when the example is fresh, and rebuilds a stale one.
    let status = Command::new(cargo)
        .args(["build", "--quiet", "-p", package, "--example", name])
        .status()
        .context("running cargo build for the example")?;
    if !status.success() || !path.exists() {
        bail!("cannot build example {name} of {package} ({status})");
    }
    Ok(path)
}

/// Spawns `command` (stdout piped, stderr dropped) and reads the URL its banner's first
/// line ends with; the rest of stdout is drained so the process never blocks on it.
fn spawn_with_banner(command: &mut Command, bin: &Path) -> Result<(Child, String)> {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let mut lines = BufReader::new(child.stdout.take().context("stdout is piped")?).lines();
    let first = lines.next().context("the process printed nothing")??;
    std::thread::spawn(move || lines.for_each(drop));
    let Some(http) = first
        .split_whitespace()
        .last()
        .filter(|u| u.starts_with("http"))
    else {
        bail!("unexpected banner {first:?}");
    };
    Ok((child, http.to_owned()))
}

/// A free TCP port on loopback (bound and released).
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A `stocky edge` process on an activated data dir, killed on drop.
pub struct EdgeProcess {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub http: String,
}

impl EdgeProcess {
    /// Starts `bin edge --port 0 --admin-token ADMIN --data-dir DIR` and waits for its banner.
    pub fn start(bin: &Path, data_dir: &Path) -> Result<EdgeProcess> {
        Self::start_with(bin, data_dir, &[])
    }

    /// The same with more arguments (e.g. `--hub URL` to reach the hub another way).
    pub fn start_with(
        bin: &Path,
        data_dir: &Path,
        args: &[&std::ffi::OsStr],
    ) -> Result<EdgeProcess> {
        let mut command = Command::new(bin);
        command
            .args(["edge", "--port", "0", "--admin-token", ADMIN, "--data-dir"])
            .arg(data_dir)
            .args(args)
            .env_remove("PORT")
            .env_remove("REMOTE_API_URL")
            .env_remove("REMOTE_API_KEY");
        let (child, http) = spawn_with_banner(&mut command, bin)?;
        Ok(EdgeProcess { http, child })
    }

    /// The SDK against this edge, as its local operator.
    pub fn sdk(&self) -> stocky_client::Client {
        stocky_client::Client::new(&self.http)
            .expect("the banner's URL is valid")
            .with_token(ADMIN)
    }

    /// SIGKILL (a crash).
    pub fn kill(mut self) -> Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for EdgeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
