//! Integration tests: every test gets a fresh pool directory and drives the real `taskpool` and
//! `taskpool-supervisor` binaries, or the library against them. No mocks.

#[macro_use]
mod util;
mod wire_doc;

mod browser;
mod bulk;
mod cli_basics;
mod cli_control;
mod faults;
mod faults_disk;
mod faults_files;
mod formats;
mod gate;
mod groups;
mod hostile;
mod jobs;
mod library;
mod limits;
mod output;
mod output_splice;
mod pty;
mod queue;
mod queue_more;
mod ready;
mod security;
mod serve;
mod slurm;
mod spawn_path;
mod symlinks;
mod times;
mod timestamps;
mod transitions;
