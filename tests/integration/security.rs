//! Another user can neither open a private pool nor talk to its supervisors. These tests need
//! root (CI runs as root) to act as uid 65534; run as another user they only check what they can.

use crate::util::*;
use serde_json::json;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;

#[test]
fn pool_files_are_private() {
    let tp = TestPool::new();
    let id = tp.spawn(["--", "sleep", "30"]);
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    eq!(mode(&tp.dir), 0o700);
    eq!(mode(&tp.pool.socket_path(id)), 0o600);
    eq!(mode(&tp.pool.record_path(id)) & 0o077, 0);
    eq!(mode(&tp.pool.run_dir(id, 1)) & 0o077, 0);
}

#[test]
fn another_user_is_refused() {
    if !root_or_skip("acting as another user") {
        return;
    }
    let tp = TestPool::new();
    let id = tp.spawn(["--", "sleep", "30"]);
    let sock = tp.pool.socket_path(id);
    let as_nobody = |args: &[&str]| {
        std::process::Command::new(helper())
            .args(args)
            .uid(65534)
            .gid(65534)
            .output()
            .unwrap()
    };
    // The directory keeps them out.
    let out = as_nobody(&["connect", sock.to_str().unwrap()]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("connect failed"),
        "{out:?}"
    );
    // Even with the directory and socket opened up, the supervisor checks the peer's credentials.
    std::fs::set_permissions(&tp.dir, std::fs::Permissions::from_mode(0o711)).unwrap();
    std::fs::set_permissions(tp.dir.join("tasks"), std::fs::Permissions::from_mode(0o711)).unwrap();
    std::fs::set_permissions(tp.pool.task_dir(id), std::fs::Permissions::from_mode(0o711)).unwrap();
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = as_nobody(&["connect", sock.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("permission_denied"),
        "supervisor answered another user: {text}"
    );
    assert!(!text.contains("\"info\""), "supervisor leaked info: {text}");
    // The CLI refuses a pool owned by someone else.
    let out = std::process::Command::new(bin("taskpool"))
        .args(["--pool", tp.dir.to_str().unwrap(), "ls"])
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    eq!(code(&out), 1);
    assert!(stderr(&out).contains("owned by uid 0"), "{}", stderr(&out));
    // The owner still gets through.
    eq!(tp.info(id)["state"], json!("running"));
}

#[test]
fn a_group_shared_pool_serves_members_only() {
    if !root_or_skip("acting as another user") {
        return;
    }
    let tp = TestPool::new();
    // Share the pool with group 65534: set-gid and group-writable.
    std::fs::remove_dir(tp.dir.join("tasks")).unwrap();
    std::os::unix::fs::chown(&tp.dir, None, Some(65534)).unwrap();
    std::fs::set_permissions(&tp.dir, std::fs::Permissions::from_mode(0o2770)).unwrap();
    let mut pool = taskpool::Pool::open(&tp.dir).unwrap();
    eq!(pool.shared_gid(), Some(65534));
    pool.set_supervisor_cmd(vec![bin("taskpool-supervisor").into()]);
    let task = pool
        .spawn(&taskpool::SpawnOptions::exec(["sleep", "30"]))
        .unwrap();
    let sock = pool.socket_path(task.id());
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    eq!(mode(&sock) & 0o070, 0o060);
    eq!(mode(&pool.task_dir(task.id())) & 0o2070, 0o2070);
    let connect_as = |uid: u32, gid: u32| {
        let out = std::process::Command::new(helper())
            .args(["connect", sock.to_str().unwrap()])
            .uid(uid)
            .gid(gid)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // A member (another uid, in the pool's group) is served.
    let member = connect_as(65533, 65534);
    assert!(
        member.contains("\"type\":\"info\""),
        "member refused: {member}"
    );
    // A non-member is not, even though it is another unprivileged user too.
    let outsider = connect_as(65533, 65533);
    assert!(
        !outsider.contains("\"type\":\"info\""),
        "outsider served: {outsider}"
    );
    task.terminate_supervisor(Some(std::time::Duration::from_millis(100)))
        .unwrap();
}
