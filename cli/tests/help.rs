//! The CLI documents every subcommand the docs and scripts rely on. (Its real behaviour is tested
//! end to end in the workspace's `tests/` package; this test also makes `cargo test` build the
//! `taskpool` and `taskpool-supervisor` binaries those tests drive.)

#[test]
fn help_lists_every_subcommand() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_taskpool"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for cmd in [
        "spawn",
        "ls",
        "info",
        "output",
        "kill",
        "pause",
        "resume",
        "send",
        "meta",
        "wait",
        "restart",
        "terminate",
        "rm",
        "clean",
        "run",
        "completions",
    ] {
        assert!(
            help.lines().any(|l| l.trim_start().starts_with(cmd)),
            "--help does not list {cmd}:\n{help}"
        );
    }
}

#[test]
fn supervisor_binary_is_built_beside_the_cli() {
    let cli = std::path::Path::new(env!("CARGO_BIN_EXE_taskpool"));
    let sup = std::path::Path::new(env!("CARGO_BIN_EXE_taskpool-supervisor"));
    assert_eq!(cli.parent(), sup.parent());
    assert!(sup.exists());
}
