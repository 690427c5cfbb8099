//! deploy/Containerfile and deploy/compose.yaml, as far as a machine without a container registry
//! can take them: podman builds the runtime stage as written (its `RUN apt-get install` and
//! `useradd` included) on a Debian root made here with debootstrap, with this build's binary in
//! place of the `build` stage (which needs the published Rust image); the test then checks the
//! image's configuration and runs its binary inside the image's root, as the image's user.
//! `podman run` itself cannot work here (crun may not set rlimits in this sandbox).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::helpers::{free_port, RedisServer};

/// The stand-in for `docker.io/library/debian:bookworm-slim`: the same suite and package names,
/// made once per machine and kept in podman's store.
const BASE_IMAGE: &str = "localhost/cachewithredis-test-base:bookworm";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn run(command: &mut Command) -> Output {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e} (scripts/install-deps --test installs it)"));
    assert!(
        out.status.success(),
        "{command:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn podman(args: &[&str]) -> Output {
    run(Command::new("podman").args(args))
}

/// The base image, bootstrapped from Debian's mirror when podman's store does not have it.
fn base_image() {
    let known = Command::new("podman")
        .args(["image", "exists", BASE_IMAGE])
        .status()
        .expect("podman is installed (scripts/install-deps --test)");
    if known.success() {
        return;
    }
    let root = TempDir::new().expect("dir");
    run(Command::new("debootstrap").args([
        "--variant=minbase",
        "bookworm",
        root.path().to_str().expect("path"),
        "http://deb.debian.org/debian",
    ]));
    let tar = root.path().with_extension("tar");
    run(Command::new("tar").args([
        "-C",
        root.path().to_str().expect("path"),
        "-cf",
        tar.to_str().expect("path"),
        ".",
    ]));
    podman(&["import", tar.to_str().expect("path"), BASE_IMAGE]);
    let _ = std::fs::remove_file(tar);
}

/// A container created from the image (not started: that needs a runtime this sandbox lacks)
/// and its root mounted writable; removed with the image when dropped.
struct Mounted {
    image: String,
    container: String,
    root: PathBuf,
}

impl Mounted {
    fn new(image: &str) -> Mounted {
        let created = podman(&["create", image]);
        let container = String::from_utf8_lossy(&created.stdout).trim().to_owned();
        let mounted = podman(&["mount", &container]);
        Mounted {
            image: image.to_owned(),
            container,
            root: PathBuf::from(String::from_utf8_lossy(&mounted.stdout).trim()),
        }
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        for args in [
            ["umount", &self.container],
            ["rm", &self.container],
            ["rmi", &self.image],
        ] {
            let _ = Command::new("podman").args(args).output();
        }
    }
}

/// The binary of the image, run inside its root as its user with `env`.
fn in_image(root: &Path, env: &[(&str, String)], args: &[&str]) -> Command {
    let mut command = Command::new("chroot");
    command
        .arg("--userspec=cachewithredis:cachewithredis")
        .arg(root)
        .arg("env")
        .arg("-C")
        .arg("/var/lib/cachewithredis");
    for (name, value) in env {
        command.arg(format!("{name}={value}"));
    }
    command.arg("/usr/local/bin/cachewithredis").args(args);
    command
}

#[test]
fn the_container_image_builds_runs_as_its_own_user_and_passes_its_health_check() {
    base_image();
    // The `build` stage's product, at the path the runtime stage copies it from.
    let built = TempDir::new().expect("dir");
    std::fs::create_dir_all(built.path().join("out")).expect("dir");
    std::fs::copy(
        env!("CARGO_BIN_EXE_cachewithredis"),
        built.path().join("out/cachewithredis"),
    )
    .expect("binary");
    let image = format!("localhost/cachewithredis-test:{}", std::process::id());
    podman(&[
        "build",
        "--isolation=chroot",
        "--format=docker",
        "--file",
        "deploy/Containerfile",
        "--build-context",
        &format!("build={}", built.path().display()),
        "--build-arg",
        &format!("RUNTIME_IMAGE={BASE_IMAGE}"),
        "--tag",
        &image,
        repo().to_str().expect("path"),
    ]);
    let mounted = Mounted::new(&image);

    let inspected: serde_json::Value =
        serde_json::from_slice(&podman(&["image", "inspect", &image]).stdout).expect("JSON");
    let config = &inspected[0]["Config"];
    assert_eq!(config["User"], "cachewithredis:cachewithredis");
    assert_eq!(
        inspected[0]["Healthcheck"]["Test"],
        serde_json::json!(["CMD", "/usr/local/bin/cachewithredis", "healthcheck"])
    );
    assert_eq!(
        config["Entrypoint"],
        serde_json::json!(["/usr/local/bin/cachewithredis"])
    );
    assert!(config["ExposedPorts"].get("8000/tcp").is_some(), "{config}");
    assert!(
        config["Env"]
            .as_array()
            .expect("Env")
            .iter()
            .any(|v| v == "BIND_ADDR=0.0.0.0:8000"),
        "{config}"
    );
    let passwd = std::fs::read_to_string(mounted.root.join("etc/passwd")).expect("passwd");
    let user = passwd
        .lines()
        .find(|l| l.starts_with("cachewithredis:"))
        .expect("the image has its user");
    assert!(user.contains(":10001:10001:"), "{user}");
    // Nothing but the runtime: no compiler, no curl, no apt lists left behind.
    for absent in ["usr/bin/cc", "usr/bin/curl", "usr/bin/cargo"] {
        assert!(!mounted.root.join(absent).exists(), "{absent} in the image");
    }
    let lists = std::fs::read_dir(mounted.root.join("var/lib/apt/lists")).map_or(0, |d| {
        d.filter_map(Result::ok)
            .filter(|e| e.path().is_file())
            .count()
    });
    assert_eq!(lists, 0, "apt's lists were left in the image");

    let version = run(&mut in_image(&mounted.root, &[], &["--version"]));
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("cachewithredis "));

    // Served from inside the image's root, as its user, from its home (where SQLite's file
    // goes): the linked libraries are there, and the health check passes.
    let redis = RedisServer::start().expect("redis-server");
    let port = free_port().expect("port");
    let env = [
        ("BIND_ADDR", format!("127.0.0.1:{port}")),
        ("REDIS_URL", redis.url()),
        ("CACHE_KEY_PREFIX", "container".to_owned()),
    ];
    let mut serving = in_image(&mounted.root, &env, &["serve"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("chroot runs");
    let deadline = Instant::now() + Duration::from_secs(30);
    let healthy = loop {
        let check = in_image(&mounted.root, &env, &["healthcheck"])
            .output()
            .expect("chroot runs");
        if check.status.success() || Instant::now() > deadline {
            break check;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let _ = Command::new("kill")
        .args(["-TERM", &serving.id().to_string()])
        .status();
    let stopped = serving.wait().expect("wait");
    assert!(
        healthy.status.success(),
        "{}",
        String::from_utf8_lossy(&healthy.stderr)
    );
    assert!(stopped.success(), "SIGTERM stops it cleanly: {stopped}");
    assert!(
        mounted
            .root
            .join("var/lib/cachewithredis/cachewithredis.sqlite3")
            .exists(),
        "the database went into the user's home"
    );
}

/// deploy/compose.yaml as compose reads it (anchors and merge keys resolved), as JSON.
fn compose_file() -> serde_json::Value {
    let out = run(Command::new("/usr/bin/python3")
        .arg("-c")
        .arg("import json, sys, yaml; json.dump(yaml.safe_load(open(sys.argv[1])), sys.stdout)")
        .arg(repo().join("deploy/compose.yaml")));
    serde_json::from_slice(&out.stdout).expect("JSON")
}

#[test]
fn the_compose_file_runs_two_instances_of_the_image_on_its_postgres_and_redis() {
    let compose = compose_file();
    let services = &compose["services"];
    for app in ["app1", "app2", "migrate"] {
        let service = &services[app];
        assert_eq!(
            service["build"]["dockerfile"], "deploy/Containerfile",
            "{app}"
        );
        assert_eq!(service["build"]["context"], "..", "{app}: the repository");
        let env = service["environment"].as_object().expect("environment");
        let database = env["DATABASE_URL"].as_str().expect("DATABASE_URL");
        assert!(database.contains("@postgres:5432/"), "{app}: {database}");
        let redis = env["REDIS_URL"].as_str().expect("REDIS_URL");
        assert!(redis.starts_with("redis://redis:6379/"), "{app}: {redis}");
        // What the binary makes of this environment: a configuration it accepts (a bad value
        // exits 2 before the health check tries to connect, and fails with 1).
        let mut check = Command::new(env!("CARGO_BIN_EXE_cachewithredis"));
        check.arg("healthcheck").env_clear();
        for (name, value) in env {
            check.env(name, value.as_str().expect("a string value"));
        }
        let checked = check
            .env(
                "BIND_ADDR",
                format!("127.0.0.1:{}", free_port().expect("port")),
            )
            .output()
            .expect("runs");
        assert_eq!(
            checked.status.code(),
            Some(1),
            "{app}: {}",
            String::from_utf8_lossy(&checked.stderr)
        );
    }
    for app in ["app1", "app2"] {
        assert_eq!(
            services[app]["depends_on"]["migrate"]["condition"],
            "service_completed_successfully"
        );
        assert_eq!(
            services[app]["environment"]["SECRET_KEY"],
            services["app1"]["environment"]["SECRET_KEY"],
            "one key, or a session signed on one instance is refused by the other"
        );
    }
    assert_eq!(
        services["migrate"]["command"],
        serde_json::json!(["migrate"])
    );
    assert_eq!(
        services["migrate"]["depends_on"]["postgres"]["condition"],
        "service_healthy"
    );
    for backend in ["postgres", "redis"] {
        assert!(
            services[backend]["healthcheck"]["test"].is_array(),
            "{backend}"
        );
    }
}
