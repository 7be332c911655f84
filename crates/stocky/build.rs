//! Records the git commit the binary is built from (`STOCKY_GIT_COMMIT`), for
//! `stocky --version` and `GET /version`: the variable when the build sets it (a container
//! build has no `.git`), else `git rev-parse --short=12 HEAD`, else `unknown`. Only this
//! leaf crate reruns on a new commit, so committing relinks the binary, nothing else.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=STOCKY_GIT_COMMIT");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    for path in [".git/HEAD", ".git/refs/heads", ".git/packed-refs"] {
        let path = root.join(path);
        if path.exists() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
    let commit = std::env::var("STOCKY_GIT_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| {
            let out = Command::new("git")
                .args(["rev-parse", "--short=12", "HEAD"])
                .current_dir(&root)
                .output()
                .ok()?;
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
                .filter(|c| !c.is_empty())
        });
    let commit = commit.unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=STOCKY_GIT_COMMIT={commit}");
}
