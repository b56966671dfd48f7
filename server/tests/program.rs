//! The server program documents the flags `taskpool serve` passes on. (Its behaviour is tested end
//! to end in the workspace's `tests/` package; this test also makes `cargo test` build the
//! `taskpool-serve` binary those tests drive.)

#[test]
fn help_lists_every_flag() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_taskpool-serve"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--listen",
        "--token-file",
        "--read-only",
        "--allow-spawn",
        "--open",
    ] {
        assert!(
            help.contains(flag),
            "--help does not mention {flag}:\n{help}"
        );
    }
}
