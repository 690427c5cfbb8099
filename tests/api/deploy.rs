//! The deploy files: the systemd unit verifies without a warning and is hardened.

use std::process::Command;

use tempfile::TempDir;

/// The unit as shipped, with `ExecStart` pointing at this build (verify checks that the
/// binary exists and is executable).
fn unit_for_this_build() -> (TempDir, std::path::PathBuf) {
    let dir = TempDir::new().expect("dir");
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/cachewithredis.service"
    ))
    .expect("deploy/cachewithredis.service");
    assert!(unit.contains("/usr/local/bin/cachewithredis"));
    let path = dir.path().join("cachewithredis.service");
    std::fs::write(
        &path,
        unit.replace(
            "/usr/local/bin/cachewithredis",
            env!("CARGO_BIN_EXE_cachewithredis"),
        ),
    )
    .expect("unit");
    (dir, path)
}

fn systemd_analyze(args: &[&str]) -> std::process::Output {
    Command::new("systemd-analyze")
        .args(args)
        .output()
        .expect("systemd-analyze is installed (scripts/install-deps --test)")
}

#[test]
fn the_systemd_unit_verifies_without_a_warning() {
    let (_dir, unit) = unit_for_this_build();
    let out = systemd_analyze(&["verify", unit.to_str().expect("path")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // An unknown or misspelt setting is only a warning, and ignored: none may be left.
    assert_eq!(stderr.trim(), "", "systemd-analyze verify warned");
}

#[test]
fn the_systemd_unit_is_hardened() {
    let (_dir, unit) = unit_for_this_build();
    let out = systemd_analyze(&["security", "--offline=true", unit.to_str().expect("path")]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let exposure: f64 = text
        .lines()
        .find_map(|l| l.split("Overall exposure level for").nth(1))
        .and_then(|rest| rest.split(':').nth(1))
        .and_then(|score| score.split_whitespace().next())
        .and_then(|score| score.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in: {text}"));
    // systemd's scale: 0 (locked down) to 10 (unprotected); below 2 is rated "OK".
    assert!(exposure < 2.0, "exposure {exposure}: {text}");
    for setting in [
        "DynamicUser=yes",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "EnvironmentFile=",
        "ExecStartPre=",
        "Restart=on-failure",
    ] {
        let shipped = std::fs::read_to_string(&unit).expect("unit");
        assert!(shipped.contains(setting), "{setting}");
    }
}
