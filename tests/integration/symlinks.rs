//! Symlinks planted at every path the supervisor writes in a task's directory (record, its
//! temporary file, lock, socket, run directory, reserve) and at the next task's directory: none
//! is followed. A file and a directory outside the pool stand for what an attacker would aim at.

use crate::util::*;
use serde_json::json;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

struct Victim {
    dir: PathBuf,
    file: PathBuf,
}

impl Victim {
    fn new(tp: &TestPool) -> Victim {
        let dir = tp.dir.parent().unwrap().join("victim");
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("file");
        std::fs::write(&file, "precious").unwrap();
        Victim { dir, file }
    }

    fn assert_untouched(&self, what: &str) {
        eq!(std::fs::read_to_string(&self.file).unwrap(), "precious");
        let names: Vec<_> = std::fs::read_dir(&self.dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(names == ["file"], "{what}: victim dir now holds {names:?}");
    }
}

fn is_symlink(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink())
}

#[test]
fn symlinks_planted_in_a_task_directory_are_never_followed() {
    let tp = TestPool::new();
    let v = Victim::new(&tp);
    let id = tp.spawn(["--", "echo", "one"]);
    let ids = id.to_string();
    eq!(code(&tp.run(["wait", &ids])), 0);
    let task_dir = tp.pool.task_dir(id);

    // A run directory that is a symlink: the restart is refused, nothing is written there.
    let run2 = tp.pool.run_dir(id, 2);
    symlink(&v.dir, &run2).unwrap();
    let out = tp.run(["restart", &ids]);
    eq!(code(&out), 1);
    assert!(stderr(&out).contains("not a directory"), "{}", stderr(&out));
    v.assert_untouched("run dir");
    std::fs::remove_file(&run2).unwrap();

    // The lock: refused, not followed.
    let lock = task_dir.join("lock");
    std::fs::remove_file(&lock).unwrap();
    symlink(&v.file, &lock).unwrap();
    let out = tp.run(["restart", &ids]);
    eq!(code(&out), 1);
    v.assert_untouched("lock");
    std::fs::remove_file(&lock).unwrap();

    // The record's temporary file, the socket's names and the reserve: the links are replaced,
    // the run works, the targets are untouched.
    for name in ["record.json.tmp", "sock.tmp", "sock", "reserve"] {
        symlink(&v.file, task_dir.join(name)).unwrap();
    }
    tp.ok(["restart", &ids]);
    eq!(code(&tp.run(["wait", &ids])), 0);
    v.assert_untouched("record.json.tmp, sock, reserve");
    eq!(tp.info(id)["run"], json!(2));
    for name in ["record.json.tmp", "sock.tmp", "sock", "reserve"] {
        assert!(
            !is_symlink(&task_dir.join(name)),
            "{name} is still a symlink"
        );
    }

    // The record itself: replaced by rename, which never follows a link.
    let rec = tp.pool.record_path(id);
    let saved = std::fs::read(&rec).unwrap();
    let elsewhere = v.dir.parent().unwrap().join("record-copy.json");
    std::fs::write(&elsewhere, &saved).unwrap();
    std::fs::remove_file(&rec).unwrap();
    symlink(&elsewhere, &rec).unwrap();
    tp.ok(["restart", &ids]);
    eq!(code(&tp.run(["wait", &ids])), 0);
    assert!(!is_symlink(&rec), "the record is still a symlink");
    eq!(std::fs::read(&elsewhere).unwrap(), saved);
    eq!(tp.info(id)["run"], json!(3));
    v.assert_untouched("record");
}

#[test]
fn a_symlink_planted_where_the_next_task_goes_is_skipped() {
    let tp = TestPool::new();
    let v = Victim::new(&tp);
    let first = tp.spawn(["--", "true"]);
    symlink(&v.dir, tp.pool.task_dir(first + 1)).unwrap();
    let id = tp.spawn(["--", "echo", "hi"]);
    assert!(id > first + 1, "task {id} took the planted directory");
    eq!(code(&tp.run(["wait", &id.to_string()])), 0);
    eq!(tp.ok(["output", &id.to_string()]), "hi\n");
    v.assert_untouched("task dir");
    // next-id: a symlink there is refused, not followed.
    let next = tp.dir.join("next-id");
    std::fs::remove_file(&next).unwrap();
    symlink(&v.file, &next).unwrap();
    let out = tp.run(["spawn", "--", "true"]);
    eq!(code(&out), 1);
    v.assert_untouched("next-id");
}
