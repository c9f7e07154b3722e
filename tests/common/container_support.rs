//! Docker helpers for the container smoke tests (tests/container.rs): the
//! Docker check (through `common::require`: fails in CI, skips elsewhere),
//! the image built once per test run (a local debootstrap base, then
//! `./build.sh`), and a container handle that is removed when dropped.
//!
//! Every container is started detached with a name of our own and removed by
//! that name, so the tests never touch containers they did not create.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The base image the tests build the image on; scripts/make-base-image.sh
/// makes it with debootstrap when no image has this tag.
pub fn base_tag() -> String {
    std::env::var("SWARM_TEST_BASE_IMAGE").unwrap_or_else(|_| "swarm-init-base:bookworm".into())
}

/// Repository part of the tags the tests' builds get, so that they never
/// retag the user's `swarm_docker:latest`.
pub const TEST_IMAGE_NAME: &str = "swarm-init-smoke";

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// True when a Docker daemon answers (see `common::require`).
pub fn require_docker() -> bool {
    static CHECK: OnceLock<Result<(), String>> = OnceLock::new();
    let check = CHECK.get_or_init(|| {
        match Command::new("docker")
            .args(["info", "--format", "{{.ServerVersion}}"])
            .stdin(Stdio::null())
            .output()
        {
            Ok(out) if out.status.success() => Ok(()),
            Ok(out) => Err(format!(
                "the Docker daemon does not answer (`docker info`: {})",
                String::from_utf8_lossy(&out.stderr).trim()
            )),
            Err(e) => Err(format!("cannot run docker: {e}")),
        }
    });
    crate::common::require("a Docker daemon", || check.clone())
}

/// The image under test, built once per test process: the base image
/// (reused by tag or made by scripts/make-base-image.sh), then
/// `BASE_IMAGE=<base> IMAGE_NAME=swarm-init-smoke ./build.sh`. Returns the
/// image ID, or None (after failing or skipping) when it cannot be built.
pub fn image() -> Option<String> {
    if !require_docker() {
        return None;
    }
    static IMAGE: OnceLock<Result<String, String>> = OnceLock::new();
    let image = IMAGE.get_or_init(build_image);
    if crate::common::require("the smoke-test image", || image.clone().map(|_| ())) {
        image.clone().ok()
    } else {
        None
    }
}

fn build_image() -> Result<String, String> {
    let root = repo_root();
    let base = base_tag();
    let started = Instant::now();
    let out = Command::new(root.join("scripts/make-base-image.sh"))
        .arg(&base)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run scripts/make-base-image.sh: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "scripts/make-base-image.sh {base} failed ({}); it needs root, debootstrap and \
             Debian's mirror. Its output ends with:\n{}",
            out.status,
            tail(&out.stderr, 30)
        ));
    }
    eprintln!("base image {base} ready after {:?}", started.elapsed());

    let latest = format!("{TEST_IMAGE_NAME}:latest");
    let previous = docker(&["image", "inspect", "-f", "{{.Id}}", &latest]);
    let previous = String::from_utf8_lossy(&previous.stdout).trim().to_string();

    let started = Instant::now();
    let out = Command::new(root.join("build.sh"))
        .env("BASE_IMAGE", &base)
        .env("IMAGE_NAME", TEST_IMAGE_NAME)
        .current_dir(&root)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run ./build.sh: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(format!(
            "./build.sh failed ({}); its output ends with:\n{}",
            out.status,
            tail(&out.stderr, 40)
        ));
    }
    let tags: Vec<&str> = stdout.lines().collect();
    eprintln!("./build.sh made {tags:?} in {:?}", started.elapsed());
    if !tags.contains(&latest.as_str()) {
        return Err(format!("./build.sh printed {tags:?}, not {latest}"));
    }
    let id = docker_ok(&["image", "inspect", "-f", "{{.Id}}", &latest]);
    // One dated tag per run would pile up: keep only :latest for the tests.
    for tag in tags.iter().filter(|t| **t != latest) {
        let _ = docker(&["rmi", tag]);
    }
    // The image the last run built, now untagged, would pile up too; rmi
    // without -f leaves it alone if anything else still uses it.
    let id = id.trim().to_string();
    if !previous.is_empty() && previous != id {
        let _ = docker(&["rmi", &previous]);
    }
    Ok(id)
}

/// The last `n` lines of a command's output.
fn tail(bytes: &[u8], n: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Runs `docker ARGS` and returns its output.
pub fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run docker")
}

/// Runs `docker ARGS`, panics unless it succeeds, returns its stdout.
pub fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    assert!(
        out.status.success(),
        "docker {args:?} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A container started by a test; `docker rm -f` by its name on drop.
pub struct Container {
    pub name: String,
    pub id: String,
}

impl Container {
    /// `docker run -d --name <unique> ARGS` (ARGS end with the image and
    /// its arguments).
    pub fn run(args: &[String]) -> Container {
        let name = unique_name("c");
        let mut full: Vec<&str> = vec!["run", "-d", "--name", &name];
        full.extend(args.iter().map(String::as_str));
        let out = docker(&full);
        // Created but failed to start: still ours to remove.
        let container = Container {
            name: name.clone(),
            id: String::from_utf8_lossy(&out.stdout).trim().to_string(),
        };
        assert!(
            out.status.success(),
            "docker run {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        container
    }

    /// stdout and stderr of the container so far (swarm-init logs to stderr).
    pub fn logs(&self) -> String {
        let out = docker(&["logs", &self.name]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// Waits until the logs contain `needle`; false at the timeout.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.logs().contains(needle) {
                return true;
            }
            if Instant::now() >= deadline || !self.running() {
                return self.logs().contains(needle);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn running(&self) -> bool {
        docker_ok(&["inspect", "-f", "{{.State.Running}}", &self.name]).trim() == "true"
    }

    /// The exit code once the container has stopped, or None while it runs
    /// at the timeout.
    pub fn wait_exit(&self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            let state = docker_ok(&[
                "inspect",
                "-f",
                "{{.State.Status}} {{.State.ExitCode}}",
                &self.name,
            ]);
            let mut parts = state.split_whitespace();
            let status = parts.next().unwrap_or("");
            if status == "exited" || status == "dead" {
                return parts.next().and_then(|c| c.parse().ok());
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Exit code, or a panic with the logs when it is still running.
    pub fn exit_code(&self, timeout: Duration) -> i32 {
        match self.wait_exit(timeout) {
            Some(code) => code,
            None => panic!(
                "container still running after {timeout:?}; logs:\n{}",
                self.logs()
            ),
        }
    }

    /// `docker exec ARGS... ` in this container.
    pub fn exec(&self, options: &[&str], command: &[&str]) -> Output {
        let mut args = vec!["exec"];
        args.extend_from_slice(options);
        args.push(&self.name);
        args.extend_from_slice(command);
        docker(&args)
    }

    /// Host pid of the container's PID 1.
    pub fn host_pid(&self) -> i32 {
        docker_ok(&["inspect", "-f", "{{.State.Pid}}", &self.name])
            .trim()
            .parse()
            .unwrap()
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", "-v", &self.name]);
    }
}

/// A name no other test run uses: pid and a counter.
pub fn unique_name(tag: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    format!(
        "swarm-init-test-{tag}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}
