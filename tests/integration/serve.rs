//! `taskpool serve`: the real server on port 0 (or a unix socket) against a test pool, spoken to
//! with a real HTTP client (`ureq`), or with raw HTTP where a client must misbehave.

use crate::util::*;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running `taskpool serve`: stopped with SIGTERM (and checked to exit 0) by [`Server::stop`],
/// killed on drop otherwise.
pub struct Server {
    child: Option<Child>,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The line it printed.
    pub url: String,
    pub token: String,
    stderr: Arc<Mutex<String>>,
    agent: ureq::Agent,
}

/// An answer: status, headers, body.
pub struct Resp {
    pub status: u16,
    pub headers: ureq::http::HeaderMap,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The error code of a JSON error answer.
    pub fn code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no error code in {}", self.json()))
            .to_owned()
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_idle_connections(0)
            .build(),
    )
}

/// `taskpool serve --listen ADDR ARGS…` against `tp`, without reading its first line.
pub fn serve_cmd(tp: &TestPool, listen: &str, args: &[&str]) -> Command {
    let mut c = tp.cmd();
    c.args(["serve", "--listen", listen])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

impl Server {
    /// Start on `127.0.0.1:0` with `args`, and read the URL line.
    pub fn start(tp: &TestPool, args: &[&str]) -> Server {
        Self::start_at(tp, "127.0.0.1:0", args)
    }

    pub fn start_at(tp: &TestPool, listen: &str, args: &[&str]) -> Server {
        let mut child = serve_cmd(tp, listen, args)
            .spawn()
            .expect("start taskpool serve");
        let stderr = Arc::new(Mutex::new(String::new()));
        {
            let mut r = BufReader::new(child.stderr.take().unwrap());
            let log = stderr.clone();
            std::thread::spawn(move || {
                let mut line = String::new();
                while r.read_line(&mut line).is_ok_and(|n| n > 0) {
                    log.lock().unwrap().push_str(&line);
                    line.clear();
                }
            });
        }
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line.trim().to_owned();
        assert!(
            !url.is_empty(),
            "taskpool serve printed no URL; stderr: {}",
            stderr.lock().unwrap()
        );
        let (before, token) = url.split_once("?token=").expect("URL with ?token=");
        let base = before.trim_end_matches('/').to_owned();
        Server {
            child: Some(child),
            base,
            url: url.clone(),
            token: token.to_owned(),
            stderr,
            agent: agent(),
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    pub fn log(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    fn auth(&self) -> String {
        format!("Bearer {}", self.token)
    }

    /// GET with the token (bearer).
    pub fn get(&self, path: &str) -> Resp {
        self.get_with(path, &[("authorization", &self.auth())])
    }

    /// GET with exactly these headers.
    pub fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Resp {
        let mut r = self.agent.get(format!("{}{path}", self.base));
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        into_resp(r.call().expect("GET"))
    }

    /// POST `body` with the token (bearer).
    pub fn post(&self, path: &str, body: &str) -> Resp {
        self.post_with(path, &[("authorization", &self.auth())], body.as_bytes())
    }

    pub fn post_with(&self, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
        let mut r = self.agent.post(format!("{}{path}", self.base));
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        into_resp(r.send(body).expect("POST"))
    }

    /// Open an SSE stream at `path` with the token and `headers`.
    pub fn sse(&self, path: &str, headers: &[(&str, &str)]) -> Sse {
        let mut r = self
            .agent
            .get(format!("{}{path}", self.base))
            .header("authorization", self.auth())
            .header("accept", "text/event-stream");
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        let resp = r.call().expect("GET (SSE)");
        let status = resp.status().as_u16();
        Sse {
            status,
            reader: BufReader::new(Box::new(resp.into_body().into_reader())),
        }
    }

    /// SIGTERM; the server must exit 0 within 5 s.
    pub fn stop(mut self) -> ExitStatus {
        let mut child = self.child.take().unwrap();
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::SIGTERM).unwrap();
        assert!(
            wait_gone(child.id() as i32, Duration::from_secs(5)),
            "taskpool serve did not exit on SIGTERM"
        );
        let st = child.wait().unwrap();
        assert!(
            st.success(),
            "taskpool serve exited with {st}; stderr: {}",
            self.log()
        );
        st
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn into_resp(r: ureq::http::Response<ureq::Body>) -> Resp {
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let body = r
        .into_body()
        .with_config()
        .limit(1 << 30)
        .read_to_vec()
        .expect("read body");
    Resp {
        status,
        headers,
        body,
    }
}

/// One Server-Sent Event.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Event {
    pub event: String,
    pub id: Option<String>,
    pub data: String,
}

impl Event {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).expect("event data is JSON")
    }
}

/// A client's end of an SSE stream.
pub struct Sse {
    pub status: u16,
    reader: BufReader<Box<dyn Read + Send>>,
}

impl Sse {
    /// The next event (keep-alive comments skipped); `None` at the end of the stream.
    pub fn next(&mut self) -> Option<Event> {
        let mut ev = Event::default();
        let mut any = false;
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line).ok()? == 0 {
                return None;
            }
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if any {
                    return Some(ev);
                }
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (k, v) = line.split_once(':').unwrap_or((line, ""));
            let v = v.strip_prefix(' ').unwrap_or(v);
            any = true;
            match k {
                "event" => ev.event = v.to_owned(),
                "id" => ev.id = Some(v.to_owned()),
                "data" => {
                    if !ev.data.is_empty() {
                        ev.data.push('\n');
                    }
                    ev.data.push_str(v)
                }
                _ => {}
            }
        }
    }

    /// The next event named `name`, skipping others.
    pub fn next_named(&mut self, name: &str) -> Event {
        loop {
            let ev = self
                .next()
                .unwrap_or_else(|| panic!("stream ended before {name}"));
            if ev.event == name {
                return ev;
            }
        }
    }
}

/// Bytes of an output event.
pub fn output_bytes(ev: &Event) -> Vec<u8> {
    let d = ev.json();
    if let Some(t) = d["text"].as_str() {
        return t.as_bytes().to_vec();
    }
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(d["base64"].as_str().expect("text or base64"))
        .unwrap()
}

fn pattern(from: u64, n: u64) -> Vec<u8> {
    (from..from + n).map(|i| b'a' + (i % 26) as u8).collect()
}

/// A task that waits on stdin: `cat` with nothing coming.
fn idle(tp: &TestPool) -> u64 {
    tp.spawn(["--name", "idle", "--", "cat"])
}

fn ls_json(tp: &TestPool) -> Value {
    serde_json::from_str(&tp.ok(["ls", "--json"])).unwrap()
}

#[test]
fn serve_prints_the_url_and_answers_every_read_route() {
    let tp = TestPool::new();
    let a = tp.spawn(["--name", "alpha", "--meta", "owner=ci", "--", "true"]);
    let b = tp.spawn(["--name", "beta", "--group", "g", "--", "true"]);
    tp.wait_ok(&a.to_string());
    tp.wait_ok(&b.to_string());
    let s = Server::start(&tp, &[]);
    assert!(
        s.url.starts_with("http://127.0.0.1:") && s.url.contains("/?token="),
        "URL line: {}",
        s.url
    );
    eq!(s.token.len(), 32);

    let r = s.get("/api/tasks");
    eq!(r.status, 200);
    eq!(r.header("content-type"), "application/json");
    eq!(r.json(), ls_json(&tp));

    let w = urlencode(r#"{"meta": {"owner": "ci"}}"#);
    let r = s.get(&format!("/api/tasks?where={w}"));
    eq!(r.status, 200);
    let ids: Vec<u64> = r
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_u64().unwrap())
        .collect();
    eq!(ids, vec![a]);
    let r = s.get("/api/tasks?state=exited");
    eq!(r.json().as_array().unwrap().len(), 2);
    let r = s.get("/api/tasks?state=running");
    eq!(r.json(), json!([]));
    let r = s.get(&format!(
        "/api/tasks?where={}&state=running",
        urlencode(r#"{"state":"exited"}"#)
    ));
    eq!(r.json(), json!([]));

    let r = s.get(&format!("/api/tasks/{a}"));
    eq!(r.status, 200);
    eq!(r.json(), tp.info(a));

    let r = s.get(&format!("/api/tasks/{a}/report"));
    eq!(r.status, 200);
    eq!(r.json()["exit_code"], json!(0));
    eq!(r.json()["name"], json!("alpha"));

    let r = s.get("/api/groups");
    eq!(r.status, 200);
    let groups: Value = serde_json::from_str(&tp.ok(["group", "ls", "--json"])).unwrap();
    eq!(r.json(), groups);

    let r = s.get("/api/openapi.json");
    eq!(r.status, 200);
    let doc = r.json();
    for p in [
        "/api/tasks",
        "/api/tasks/{id}",
        "/api/tasks/{id}/output",
        "/api/tasks/{id}/report",
        "/api/tasks/{id}/follow",
        "/api/events",
        "/api/tasks/{id}/kill",
        "/api/tasks/{id}/terminate",
        "/api/tasks/{id}/pause",
        "/api/tasks/{id}/resume",
        "/api/tasks/{id}/restart",
        "/api/tasks/{id}/send",
        "/api/tasks/{id}/meta",
        "/api/groups",
        "/api/server",
        "/api/openapi.json",
    ] {
        assert!(doc["paths"].get(p).is_some(), "openapi.json lacks {p}");
    }

    let r = s.get("/api/server");
    eq!(r.json()["read_only"], json!(false));
    eq!(r.json()["allow_spawn"], json!(false));

    let r = s.get("/");
    eq!(r.status, 200);
    assert!(r.header("content-type").starts_with("text/html"));
    assert!(r
        .header("content-security-policy")
        .contains("script-src 'self'"));
    // The page's first load, all of it, is at most 100 KiB.
    let mut first_load = r.body.len();
    for asset in ["/app.js", "/app.css"] {
        let a = s.get(asset);
        eq!(a.status, 200);
        first_load += a.body.len();
    }
    assert!(
        first_load <= 100 * 1024,
        "the page weighs {first_load} bytes"
    );

    // One log line per request, without the query (which may hold the token).
    let log = s.log();
    assert!(log.contains("GET /api/tasks 200"), "log: {log}");
    assert!(!log.contains(&s.token), "the token reached the log: {log}");
    s.stop();
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn serve_bad_requests_get_their_status() {
    let tp = TestPool::new();
    let id = tp.spawn_writer(&[], 1000, 100);
    tp.wait_ok(&id);
    let live = idle(&tp);
    let s = Server::start(&tp, &[]);

    // 400: bad patterns and parameters.
    for (path, code) in [
        (
            format!("/api/tasks?where={}", urlencode("{not json")),
            "bad_request",
        ),
        (
            format!("/api/tasks?where={}", urlencode("[1]")),
            "bad_request",
        ),
        ("/api/tasks?state=sleeping".into(), "bad_request"),
        (format!("/api/tasks/{id}/output?stream=both"), "bad_request"),
        (format!("/api/tasks/{id}/output?offset=-1"), "bad_request"),
    ] {
        let r = s.get(&path);
        eq!(r.status, 400);
        eq!(r.header("content-type"), "application/json");
        assert!(r.json()["error"]["message"].is_string());
        let _ = code;
    }
    let r = s.post(&format!("/api/tasks/{live}/meta"), "{\"a\": ");
    eq!(r.status, 400);
    let r = s.post(&format!("/api/tasks/{live}/meta"), "[1, 2]");
    eq!(r.status, 400);
    let r = s.post(
        &format!("/api/tasks/{live}/kill"),
        r#"{"signal": "NOSUCH"}"#,
    );
    eq!(r.status, 400);
    let r = s.post(&format!("/api/tasks/{live}/kill"), r#"{"signal": [1]}"#);
    eq!(r.status, 400);

    // 404: unknown tasks, paths that are no ids, unknown routes and actions.
    for path in [
        "/api/tasks/999".to_owned(),
        "/api/tasks/999/output".into(),
        "/api/tasks/999/follow".into(),
        "/api/tasks/..%2F..%2Fetc%2Fpasswd".into(),
        "/api/tasks/../../etc/passwd".into(),
        "/api/tasks/-1".into(),
        "/api/tasks/1e3".into(),
        "/api/nothing".into(),
        format!("/api/tasks/{id}/output?run=7"),
    ] {
        let r = s.get(&path);
        eq!(r.status, 404);
        eq!(r.code(), "not_found");
    }
    eq!(s.post("/api/tasks/999/kill", "").status, 404);
    eq!(
        s.post(&format!("/api/tasks/{live}/explode"), "").status,
        404
    );

    // 409: the wrong state.
    let r = s.post(&format!("/api/tasks/{id}/kill"), "");
    eq!(r.status, 409);
    eq!(r.code(), "wrong_state");
    eq!(s.post(&format!("/api/tasks/{id}/pause"), "").status, 409);
    eq!(
        s.post(&format!("/api/tasks/{live}/restart"), "").status,
        409
    );
    let r = s.get(&format!("/api/tasks/{live}/report"));
    eq!(r.status, 409);
    eq!(r.code(), "no_report");

    // 413: a body over 1 MiB, by its length and when sent without one (chunked).
    let big = vec![b' '; 1024 * 1024 + 1];
    let auth = format!("Bearer {}", s.token);
    let sized = raw_http(
        &s,
        &format!(
            "POST /api/tasks/{live}/send HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            big.len()
        ),
        |w| w.write_all(&big),
    );
    assert!(
        sized.starts_with("HTTP/1.1 413"),
        "2 MiB with a length: {sized}"
    );
    assert!(sized.contains("too_large"), "{sized}");
    let chunked = raw_http(
        &s,
        &format!(
            "POST /api/tasks/{live}/send HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        ),
        |w| {
            for _ in 0..20 {
                write!(w, "{:x}\r\n", 65536)?;
                w.write_all(&[b'x'; 65536])?;
                w.write_all(b"\r\n")?;
            }
            w.write_all(b"0\r\n\r\n")
        },
    );
    assert!(
        chunked.starts_with("HTTP/1.1 413"),
        "chunked 2 MiB: {chunked}"
    );
    // Nothing of it reached the task.
    let r = s.get(&format!("/api/tasks/{live}/output"));
    eq!(r.body.len(), 0);

    // 416: an offset past the end.
    let r = s.get(&format!("/api/tasks/{id}/output?offset=1001"));
    eq!(r.status, 416);
    eq!(r.code(), "offset_past_end");
    let r = s.get(&format!(
        "/api/tasks/{id}/output?offset=18446744073709551615"
    ));
    eq!(r.status, 416);
    let r = s.get_with(
        &format!("/api/tasks/{id}/follow"),
        &[("authorization", &auth), ("last-event-id", "5000")],
    );
    eq!(r.status, 416);
    let r = s.get_with(
        &format!("/api/tasks/{id}/follow"),
        &[("authorization", &auth), ("last-event-id", "1:5000")],
    );
    eq!(r.status, 416);
    let r = s.get_with(
        &format!("/api/tasks/{id}/follow"),
        &[("authorization", &auth), ("last-event-id", "banana")],
    );
    eq!(r.status, 400);
    s.stop();
}

/// Send `head` then what `body` writes on a fresh TCP connection; the whole answer as text.
fn raw_http(
    s: &Server,
    head: &str,
    body: impl FnOnce(&mut std::net::TcpStream) -> std::io::Result<()>,
) -> String {
    let addr = s.base.strip_prefix("http://").unwrap();
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    c.write_all(head.as_bytes()).unwrap();
    // The server may answer (and close) before the body is all sent.
    let _ = body(&mut c);
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn serve_needs_the_token_by_bearer_or_by_the_cookie_it_sets() {
    let tp = TestPool::new();
    let s = Server::start(&tp, &[]);
    for path in ["/api/tasks", "/", "/app.js", "/api/events", "/api/nothing"] {
        let r = s.get_with(path, &[]);
        eq!(r.status, 401);
        eq!(r.code(), "unauthorized");
    }
    eq!(
        s.get_with("/api/tasks", &[("authorization", "Bearer nope")])
            .status,
        401
    );
    let wrong = format!("Bearer {}x", s.token);
    eq!(
        s.get_with("/api/tasks", &[("authorization", &wrong)])
            .status,
        401
    );
    eq!(s.get_with("/api/tasks?token=nope", &[]).status, 401);

    // The page opened once with ?token= sets the cookie...
    let r = s.get_with(&format!("/?token={}", s.token), &[]);
    eq!(r.status, 200);
    let cookie = r.header("set-cookie").to_owned();
    assert!(
        cookie.starts_with(&format!("taskpool_token={};", s.token))
            && cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Strict"),
        "set-cookie: {cookie}"
    );
    // ...which is enough from then on.
    let pair = cookie.split(';').next().unwrap();
    let r = s.get_with("/api/tasks", &[("cookie", pair)]);
    eq!(r.status, 200);
    let r = s.get_with("/api/tasks", &[("cookie", &format!("other=1; {pair}"))]);
    eq!(r.status, 200);
    eq!(
        s.get_with("/api/tasks", &[("cookie", "taskpool_token=nope")])
            .status,
        401
    );
    // A bearer request sets no cookie.
    assert!(s.get("/api/tasks").headers.get("set-cookie").is_none());
    s.stop();
}

#[test]
fn serve_refuses_changes_from_another_site() {
    let tp = TestPool::new();
    let id = idle(&tp);
    let s = Server::start(&tp, &[]);
    let auth = format!("Bearer {}", s.token);
    let path = format!("/api/tasks/{id}/meta");
    let body = br#"{"k": "v"}"#;
    for h in [
        ("origin", "http://evil.example"),
        ("origin", "null"),
        ("origin", "http://127.0.0.1:1"),
        ("sec-fetch-site", "cross-site"),
    ] {
        let r = s.post_with(&path, &[("authorization", &auth), h], body);
        eq!(r.status, 403);
        eq!(r.code(), "forbidden");
    }
    eq!(tp.info(id)["meta"], json!({}));
    // The server's own origin, and same-origin fetches, are fine.
    let own = s.base.clone();
    let r = s.post_with(&path, &[("authorization", &auth), ("origin", &own)], body);
    eq!(r.status, 200);
    let r = s.post_with(
        &path,
        &[("authorization", &auth), ("sec-fetch-site", "same-origin")],
        br#"{"n": 2}"#,
    );
    eq!(r.status, 200);
    eq!(tp.info(id)["meta"], json!({"k": "v", "n": 2}));
    // GET has no side effect: it is not refused for its Origin.
    eq!(
        s.get_with(
            "/api/tasks",
            &[("authorization", &auth), ("origin", "http://evil.example")]
        )
        .status,
        200
    );
    s.stop();
}

#[test]
fn serve_control_routes_drive_a_live_task() {
    let tp = TestPool::new();
    let id = tp.spawn(["--name", "pump", "--", helper().to_str().unwrap(), "pump"]);
    let s = Server::start(&tp, &[]);
    let p = |a: &str| format!("/api/tasks/{id}/{a}");

    let r = s.post(&p("send"), "out 5\n");
    eq!(r.status, 200);
    let mut f = s.sse(&p("follow"), &[]);
    eq!(output_bytes(&f.next_named("output")), b"abcde".to_vec());

    let r = s.post(&p("pause"), "");
    eq!(r.status, 200);
    eq!(r.json()["state"], json!("paused"));
    eq!(f.next_named("state").json(), json!({"state": "paused"}));
    let r = s.post(&p("resume"), "");
    eq!(r.json()["state"], json!("running"));
    eq!(f.next_named("state").json(), json!({"state": "running"}));

    let r = s.post(&p("meta"), r#"{"progress": 40, "owner": "ci"}"#);
    eq!(r.status, 200);
    eq!(r.json()["meta"], json!({"progress": 40, "owner": "ci"}));
    let r = s.post(&p("meta"), r#"{"owner": null}"#);
    eq!(r.json()["meta"], json!({"progress": 40}));

    let r = s.post(&p("kill"), r#"{"signal": "INT"}"#);
    eq!(r.status, 200);
    let end = f.next_named("end").json();
    eq!(end["state"], json!("exited"));
    eq!(end["signal"], json!("SIGINT"));
    assert!(f.next().is_none(), "the follow stream goes on after end");

    let r = s.post(&p("restart"), "");
    eq!(r.status, 200);
    eq!(r.json()["run"], json!(2));
    let r = s.post(&p("terminate"), "");
    eq!(r.status, 200);
    eq!(r.json()["state"], json!("exited"));
    eq!(tp.info(id)["state"], json!("exited"));
    s.stop();
}

#[test]
fn serve_output_gives_bytes_and_offsets() {
    let tp = TestPool::new();
    let id = tp.spawn(["--", helper().to_str().unwrap(), "interleave", "50"]);
    tp.wait_ok(&id.to_string());
    let s = Server::start(&tp, &[]);
    let out = |q: &str| s.get(&format!("/api/tasks/{id}/output{q}"));
    for stream in ["stdout", "stderr", "combined"] {
        let r = out(&format!("?stream={stream}"));
        eq!(r.status, 200);
        eq!(r.header("content-type"), "application/octet-stream");
        let cli = tp
            .cmd()
            .args(["output", &id.to_string()])
            .args(match stream {
                "stdout" => vec!["--stdout"],
                "stderr" => vec!["--stderr"],
                _ => vec![],
            })
            .output()
            .unwrap();
        eq!(
            String::from_utf8_lossy(&r.body),
            String::from_utf8_lossy(&cli.stdout)
        );
        eq!(r.header("x-taskpool-offset"), "0");
        eq!(r.header("x-taskpool-end"), r.body.len().to_string());
    }
    let whole = out("?stream=stdout").body;
    let r = out("?stream=stdout&offset=10&len=7");
    eq!(r.body, whole[10..17].to_vec());
    eq!(r.header("x-taskpool-offset"), "10");
    eq!(r.header("x-taskpool-end"), whole.len().to_string());
    let r = out(&format!("?stream=stdout&offset={}", whole.len()));
    eq!(r.status, 200);
    eq!(r.body.len(), 0);
    s.stop();
}

/// A task that prints markup and sets it as its name and meta gets it back as JSON strings; its
/// output is served as bytes, never as a page.
#[test]
fn serve_markup_from_a_task_comes_back_as_text() {
    let tp = TestPool::new();
    let evil = r#"<script>alert(1)</script><img src=x onerror="alert(2)">"#;
    let id = tp.spawn([
        "--name",
        evil,
        "--meta",
        &format!("note={evil}"),
        "-c",
        &format!("printf '%s\\n' '{evil}'"),
    ]);
    tp.wait_ok(&id.to_string());
    let s = Server::start(&tp, &[]);
    let info = s.get(&format!("/api/tasks/{id}")).json();
    eq!(info["name"], json!(evil));
    eq!(info["meta"]["note"], json!(evil));
    let r = s.get(&format!("/api/tasks/{id}/output"));
    eq!(r.body, format!("{evil}\n").into_bytes());
    eq!(r.header("content-type"), "application/octet-stream");
    eq!(r.header("x-content-type-options"), "nosniff");
    let mut f = s.sse(&format!("/api/tasks/{id}/follow"), &[]);
    let ev = f.next_named("output");
    eq!(ev.json(), json!({"text": format!("{evil}\n")}));
    s.stop();
}

/// Follow a task that is still writing, drop the connection, let it write more, reconnect with
/// `Last-Event-ID`: every byte arrives once, in order.
#[test]
fn serve_follow_resumes_with_last_event_id_losing_and_repeating_nothing() {
    let tp = TestPool::new();
    let id = tp.spawn(["--", helper().to_str().unwrap(), "pump"]);
    let s = Server::start(&tp, &[]);
    let send = |line: &str| eq!(s.post(&format!("/api/tasks/{id}/send"), line).status, 200);
    for stream in ["combined", "stdout"] {
        let path = format!("/api/tasks/{id}/follow?stream={stream}");
        let mut got: Vec<u8> = Vec::new();
        let mut last = String::new();
        // The pattern so far on each stream, and what each phase adds.
        let mut err_n = 0u64;
        let mut out_n;
        let mut expected: Vec<u8> = Vec::new();
        let already = s
            .get(&format!("/api/tasks/{id}/output?stream={stream}"))
            .body;
        expected.extend_from_slice(&already);
        if stream == "stdout" {
            out_n = already.len() as u64;
        } else {
            out_n = s
                .get(&format!("/api/tasks/{id}/output?stream=stdout"))
                .body
                .len() as u64;
            err_n = s
                .get(&format!("/api/tasks/{id}/output?stream=stderr"))
                .body
                .len() as u64;
        }
        let mut write = |expected: &mut Vec<u8>, which: &str, n: u64| {
            send(&format!("{which} {n}\n"));
            let (at, counter) = if which == "out" {
                (out_n, &mut out_n)
            } else {
                (err_n, &mut err_n)
            };
            if which == "out" || stream == "combined" {
                expected.extend(pattern(at, n));
            }
            *counter += n;
        };
        for round in 0..3 {
            let headers: Vec<(&str, &str)> = if round == 0 {
                vec![]
            } else {
                vec![("last-event-id", last.as_str())]
            };
            let mut f = s.sse(&path, &headers);
            eq!(f.status, 200);
            // Write while connected, and read until all of it came.
            for i in 0..20 {
                write(
                    &mut expected,
                    if i % 3 == 2 { "err" } else { "out" },
                    997 + i,
                );
            }
            while got.len() < expected.len() {
                let ev = f.next_named("output");
                got.extend(output_bytes(&ev));
                last = ev.id.clone().expect("output events have ids");
                eq!(last, format!("1:{}", got.len()));
            }
            eq!(got.len(), expected.len());
            drop(f);
            // Write while disconnected.
            for i in 0..10 {
                write(
                    &mut expected,
                    if i % 2 == 0 { "out" } else { "err" },
                    501 + i,
                );
            }
        }
        // The last bytes, written while disconnected, come on the last reconnect, then the end.
        let mut f = s.sse(&path, &[("last-event-id", last.as_str())]);
        while got.len() < expected.len() {
            got.extend(output_bytes(&f.next_named("output")));
        }
        // Stdout is the helper's pattern exactly; the combined view interleaves the two streams
        // in the order the supervisor read them, which is what the output route gives.
        let truth = if stream == "stdout" {
            expected.clone()
        } else {
            s.get(&format!("/api/tasks/{id}/output?stream=combined"))
                .body
        };
        eq!(got.len(), expected.len());
        assert!(
            got == truth,
            "{stream}: first difference at {:?}",
            got.iter().zip(&truth).position(|(a, b)| a != b)
        );
        eq!(tp.info(id)["state"], json!("running"));
    }
    // End: the stream closes after `end`, whose info has the exit status.
    let mut f = s.sse(
        &format!(
            "/api/tasks/{id}/follow?offset={}",
            s.get(&format!("/api/tasks/{id}/output")).body.len()
        ),
        &[],
    );
    eq!(
        s.post(&format!("/api/tasks/{id}/kill"), r#"{"signal": 15}"#)
            .status,
        200
    );
    let end = f.next_named("end").json();
    eq!(end["signal"], json!("SIGTERM"));
    assert!(f.next().is_none());
    s.stop();
}

/// Read `f`'s output events until `n` bytes came (the stream must not end first).
fn read_bytes(f: &mut Sse, n: usize) -> Vec<u8> {
    let mut got = Vec::new();
    while got.len() < n {
        got.extend(output_bytes(&f.next_named("output")));
    }
    got
}

/// Many SSE clients of one task: its supervisor has one subscription for all of them (one more
/// connection, not twenty), each client gets every byte once, one that joins late or resumes at
/// an offset too, and the subscription ends with the last client.
#[test]
fn serve_followers_of_a_task_share_one_subscription_to_its_supervisor() {
    let tp = TestPool::new();
    let id = tp.spawn(["--", helper().to_str().unwrap(), "pump"]);
    let s = Server::start(&tp, &[]);
    let sup = tp.supervisor_pid(id);
    // The supervisor's connections: its sockets but the listener.
    let conns = || {
        std::fs::read_dir(format!("/proc/{sup}/fd"))
            .unwrap()
            .flatten()
            .filter(|e| {
                std::fs::read_link(e.path())
                    .is_ok_and(|l| l.to_string_lossy().starts_with("socket:"))
            })
            .count()
            - 1
    };
    // They settle (a request's connection goes once it has been answered).
    let settle = |want: usize| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while conns() != want && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        eq!(conns(), want);
    };
    let send = |line: &str| eq!(s.post(&format!("/api/tasks/{id}/send"), line).status, 200);
    settle(0);
    let path = format!("/api/tasks/{id}/follow?stream=stdout");
    let mut clients: Vec<Sse> = (0..20).map(|_| s.sse(&path, &[])).collect();
    settle(1);
    send("out 100000\n");
    for f in clients.iter_mut() {
        eq!(read_bytes(f, 100000), pattern(0, 100000));
    }
    for _ in 0..3 {
        send("out 200000\n");
        send("err 1000\n");
    }
    for f in clients.iter_mut() {
        eq!(read_bytes(f, 600000), pattern(100000, 600000));
    }
    // Joining late, from the start and from an offset: the rest from the files, then live.
    clients.push(s.sse(&path, &[]));
    clients.push(s.sse(&path, &[("last-event-id", "1:1234")]));
    settle(1);
    send("out 5000\n");
    let late = clients.len() - 2;
    for (i, f) in clients.iter_mut().enumerate() {
        let got = if i == late {
            read_bytes(f, 705000)
        } else if i == late + 1 {
            read_bytes(f, 705000 - 1234)
        } else {
            read_bytes(f, 5000)
        };
        let want = match i {
            i if i == late => pattern(0, 705000),
            i if i == late + 1 => pattern(1234, 705000 - 1234),
            _ => pattern(700000, 5000),
        };
        assert!(
            got == want,
            "client {i}: {} bytes, not the {} expected",
            got.len(),
            want.len()
        );
    }
    // The last client gone, the subscription goes too.
    drop(clients);
    settle(0);
    s.stop();
}

/// Event ids name the run: an id of run 1 after the task was restarted resumes nothing of run 1
/// in run 2, it starts run 2 at 0 (and says so); `?run=N` follows an earlier run.
#[test]
fn serve_follow_across_a_restart_starts_the_new_run_at_its_beginning() {
    let tp = TestPool::new();
    let n = tp.scratch().join("n");
    let script = format!(
        "n=$(cat {c} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {c}; echo \"run $n says hello\"",
        c = n.display()
    );
    let id = tp.spawn(["-c", &script]);
    eq!(code(&tp.run(["wait", &id.to_string()])), 0);
    let s = Server::start(&tp, &[]);
    let path = format!("/api/tasks/{id}/follow");
    // One whole follow, then a resume within the run.
    let mut f = s.sse(&path, &[]);
    eq!(f.next_named("run").json(), json!({"run": 1, "offset": 0}));
    let ev = f.next_named("output");
    eq!(output_bytes(&ev), b"run 1 says hello\n".to_vec());
    eq!(ev.id.as_deref(), Some("1:17"));
    eq!(f.next_named("end").json()["run"], json!(1));
    let mut f = s.sse(&path, &[("last-event-id", "1:4")]);
    eq!(f.next_named("run").json(), json!({"run": 1, "offset": 4}));
    eq!(
        output_bytes(&f.next_named("output")),
        b"1 says hello\n".to_vec()
    );
    f.next_named("end");

    eq!(s.post(&format!("/api/tasks/{id}/restart"), "").status, 200);
    eq!(code(&tp.run(["wait", &id.to_string()])), 0);
    // The id of run 1 (even at run 1's end): run 2 from its start.
    let mut f = s.sse(&path, &[("last-event-id", "1:17")]);
    eq!(f.next_named("run").json(), json!({"run": 2, "offset": 0}));
    let ev = f.next_named("output");
    eq!(output_bytes(&ev), b"run 2 says hello\n".to_vec());
    eq!(ev.id.as_deref(), Some("2:17"));
    let end = f.next_named("end").json();
    eq!(end["run"], json!(2));
    eq!(end["status"], json!("success"));
    assert!(f.next().is_none());
    // Run 1 is still there to follow, pinned.
    let mut f = s.sse(&format!("{path}?run=1"), &[("last-event-id", "1:4")]);
    eq!(f.next_named("run").json(), json!({"run": 1, "offset": 4}));
    eq!(
        output_bytes(&f.next_named("output")),
        b"1 says hello\n".to_vec()
    );
    f.next_named("end");
    // An id of a run to come, a pinned run the id contradicts, a run that is not there.
    eq!(
        s.get_with(
            &path,
            &[("authorization", &s.auth()), ("last-event-id", "3:0")]
        )
        .status,
        404
    );
    let r = s.get_with(
        &format!("{path}?run=1"),
        &[("authorization", &s.auth()), ("last-event-id", "2:0")],
    );
    eq!(r.status, 400);
    eq!(s.get(&format!("{path}?run=3")).status, 404);
    eq!(s.get(&format!("{path}?run=0")).status, 400);
    s.stop();
}

#[test]
fn serve_events_show_a_new_task_its_state_changes_and_its_removal() {
    let tp = TestPool::new();
    let s = Server::start(&tp, &[]);
    let mut ev = s.sse("/api/events", &[]);
    eq!(ev.status, 200);
    let id = tp.spawn(["--name", "newcomer", "--", "cat"]);
    let first = loop {
        let e = ev.next_named("task").json();
        if e["id"] == json!(id) {
            break e;
        }
    };
    eq!(first["name"], json!("newcomer"));
    // Its state changes reach the stream: running, then the meta it sets, then exited.
    let mut seen = vec![first["state"].as_str().unwrap().to_owned()];
    let mut wait_for = |pred: &dyn Fn(&Value) -> bool| loop {
        let e = ev.next_named("task").json();
        if e["id"] == json!(id) {
            seen.push(e["state"].as_str().unwrap().to_owned());
            if pred(&e) {
                return e;
            }
        }
    };
    if first["state"] != json!("running") {
        wait_for(&|e| e["state"] == json!("running"));
    }
    tp.ok(["meta", &id.to_string(), "progress=70"]);
    let e = wait_for(&|e| e["meta"]["progress"].is_number() || e["meta"]["progress"].is_string());
    assert!(e["meta"]["progress"] == json!(70) || e["meta"]["progress"] == json!("70"));
    tp.ok(["kill", &id.to_string()]);
    let e = wait_for(&|e| e["state"] == json!("exited"));
    eq!(e["signal"], json!("SIGTERM"));
    tp.run(["wait", &id.to_string()]);
    let out = tp.run(["rm", &id.to_string()]);
    assert!(out.status.success(), "rm: {}", stderr(&out));
    let gone = ev.next_named("removed").json();
    eq!(gone, json!({"id": id}));
    s.stop();
}

#[test]
fn serve_bounds_event_streams_and_frees_them_when_clients_go() {
    let tp = TestPool::new();
    let id = idle(&tp);
    let s = Server::start(&tp, &["--max-streams", "4"]);
    let follow = format!("/api/tasks/{id}/follow");
    let mut open: Vec<Sse> = (0..3).map(|_| s.sse(&follow, &[])).collect();
    open.push(s.sse("/api/events", &[]));
    for f in &open {
        eq!(f.status, 200);
    }
    let r = s.get(&follow);
    eq!(r.status, 503);
    eq!(r.code(), "too_many_streams");
    eq!(s.get("/api/events").status, 503);
    // Other requests are still answered.
    eq!(s.get("/api/tasks").status, 200);
    // Clients that go away (the task writes nothing meanwhile) give their streams back.
    drop(open);
    let deadline = Instant::now() + Duration::from_secs(10);
    let again: Vec<Sse> = (0..4)
        .map(|_| loop {
            let f = s.sse(&follow, &[]);
            if f.status == 200 {
                break f;
            }
            assert!(Instant::now() < deadline, "streams were not given back");
            std::thread::sleep(Duration::from_millis(20));
        })
        .collect();
    eq!(again.len(), 4);
    drop(again);
    s.stop();
}

/// A client that opens a follow and never reads: the task writes on to its end, and the server
/// answers others meanwhile.
#[test]
fn serve_slow_follower_stalls_neither_the_task_nor_the_server() {
    let tp = TestPool::new();
    let s = Server::start(&tp, &[]);
    let id = tp.spawn(["--", helper().to_str().unwrap(), "pump"]);
    let addr = s.base.strip_prefix("http://").unwrap().to_owned();
    let mut stuck = std::net::TcpStream::connect(&addr).unwrap();
    stuck.set_read_buffer_size(4096);
    write!(
        stuck,
        "GET /api/tasks/{id}/follow HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\r\n",
        s.token
    )
    .unwrap();
    for _ in 0..64 {
        eq!(
            s.post(&format!("/api/tasks/{id}/send"), "out 1048576\n")
                .status,
            200
        );
    }
    eq!(
        s.post(&format!("/api/tasks/{id}/send?eof=true"), "").status,
        200
    );
    let out = tp.run(["wait", &id.to_string(), "--timeout", "30s"]);
    eq!(code(&out), 0);
    eq!(s.get(&format!("/api/tasks/{id}")).status, 200);
    eq!(
        s.get(&format!("/api/tasks/{id}/output?stream=stdout&len=0"))
            .header("x-taskpool-end"),
        (64u64 << 20).to_string()
    );
    drop(stuck);
    s.stop();
}

trait ReadBuffer {
    fn set_read_buffer_size(&self, n: i32);
}

impl ReadBuffer for std::net::TcpStream {
    fn set_read_buffer_size(&self, n: i32) {
        use std::os::fd::AsFd;
        let _ = nix::sys::socket::setsockopt(
            &self.as_fd(),
            nix::sys::socket::sockopt::RcvBuf,
            &(n as usize),
        );
    }
}

#[test]
fn serve_read_only_refuses_every_change() {
    let tp = TestPool::new();
    let id = idle(&tp);
    let s = Server::start(&tp, &["--read-only", "--allow-spawn"]);
    for a in [
        "kill",
        "terminate",
        "pause",
        "resume",
        "restart",
        "send",
        "meta",
    ] {
        let r = s.post(&format!("/api/tasks/{id}/{a}"), "{}");
        eq!(r.status, 403);
        assert!(r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("read-only"));
    }
    eq!(s.post("/api/tasks", r#"{"command": ["true"]}"#).status, 403);
    eq!(tp.info(id)["state"], json!("running"));
    eq!(s.get("/api/tasks").status, 200);
    eq!(s.get("/api/server").json()["read_only"], json!(true));
    s.stop();
}

#[test]
fn serve_spawns_jobs_only_with_allow_spawn() {
    let tp = TestPool::new();
    let s = Server::start(&tp, &[]);
    let r = s.post("/api/tasks", r#"{"command": ["true"]}"#);
    eq!(r.status, 403);
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("--allow-spawn"));
    eq!(ls_json(&tp), json!([]));
    s.stop();

    let s = Server::start(&tp, &["--allow-spawn"]);
    let r = s.post(
        "/api/tasks",
        r#"{"command": ["sh", "-c", "echo spawned over http"], "name": "web"}"#,
    );
    eq!(r.status, 201);
    let id = r.json()["id"].as_u64().unwrap();
    eq!(r.json()["name"], json!("web"));
    tp.wait_ok(&id.to_string());
    eq!(
        s.get(&format!("/api/tasks/{id}/output")).body,
        b"spawned over http\n".to_vec()
    );
    eq!(s.post("/api/tasks", r#"{"command": "#).status, 400);
    eq!(s.post("/api/tasks", r#"{"no_command": true}"#).status, 400);
    s.stop();
}

#[test]
fn serve_on_a_unix_socket_is_private_and_goes_away_on_exit() {
    use std::os::unix::fs::PermissionsExt;
    let tp = TestPool::new();
    let sock = tp.scratch().join("serve.sock");
    let mut child = serve_cmd(&tp, &format!("unix:{}", sock.display()), &[])
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let token = line
        .trim()
        .strip_prefix(&format!("unix:{}?token=", sock.display()))
        .unwrap_or_else(|| panic!("URL line: {line}"))
        .to_owned();
    eq!(
        std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let ask = |auth: &str| {
        let mut c = std::os::unix::net::UnixStream::connect(&sock).unwrap();
        write!(
            c,
            "GET /api/tasks HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        c.read_to_string(&mut out).unwrap();
        out
    };
    let ok = ask(&format!("Authorization: Bearer {token}\r\n"));
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    assert!(ok.ends_with("[]"), "{ok}");
    assert!(ask("").starts_with("HTTP/1.1 401"));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::SIGTERM,
    )
    .unwrap();
    assert!(child.wait().unwrap().success());
    assert!(!sock.exists(), "the socket is left behind");
}

#[test]
fn serve_token_file_must_be_private() {
    use std::os::unix::fs::PermissionsExt;
    let tp = TestPool::new();
    let f = tp.scratch().join("token");
    std::fs::write(&f, "sesame-0123456789abcdef\n").unwrap();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = serve_cmd(&tp, "127.0.0.1:0", &["--token-file", f.to_str().unwrap()])
        .output()
        .unwrap();
    eq!(code(&out), 1);
    let err = stderr(&out);
    eq!(err.lines().count(), 1);
    assert!(
        err.contains(f.to_str().unwrap()) && err.contains("0644"),
        "stderr: {err}"
    );
    assert!(out.stdout.is_empty());

    let missing = tp.scratch().join("nope");
    let out = serve_cmd(
        &tp,
        "127.0.0.1:0",
        &["--token-file", missing.to_str().unwrap()],
    )
    .output()
    .unwrap();
    eq!(code(&out), 1);
    assert!(stderr(&out).contains(missing.to_str().unwrap()));

    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
    let s = Server::start(&tp, &["--token-file", f.to_str().unwrap()]);
    eq!(s.token, "sesame-0123456789abcdef");
    eq!(s.get("/api/tasks").status, 200);
    s.stop();
}

#[test]
fn serve_bad_listen_address_is_one_line_naming_it() {
    let tp = TestPool::new();
    let out = serve_cmd(&tp, "no-such-host.invalid:port", &[])
        .output()
        .unwrap();
    eq!(code(&out), 1);
    let err = stderr(&out);
    eq!(err.lines().count(), 1);
    assert!(
        err.contains("--listen no-such-host.invalid:port"),
        "stderr: {err}"
    );
}

#[test]
fn serve_warns_when_listening_beyond_loopback() {
    let tp = TestPool::new();
    let s = Server::start_at(&tp, "0.0.0.0:0", &[]);
    let deadline = Instant::now() + Duration::from_secs(5);
    // The warning is written before the URL line.
    while !s.log().contains("plain HTTP") {
        assert!(Instant::now() < deadline, "no warning: {}", s.log());
        std::thread::yield_now();
    }
    s.stop();
}

/// SIGTERM with streams open (one following a task that writes nothing): the server exits 0 at
/// once and the task runs on.
#[test]
fn serve_exits_cleanly_on_sigterm_with_streams_open() {
    let tp = TestPool::new();
    let id = idle(&tp);
    let s = Server::start(&tp, &[]);
    let pid = s.pid();
    let _f = s.sse(&format!("/api/tasks/{id}/follow"), &[]);
    let _e = s.sse("/api/events", &[]);
    let t = Instant::now();
    s.stop();
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "took {:?}",
        t.elapsed()
    );
    assert!(!alive(pid));
    eq!(tp.info(id)["state"], json!("running"));
}
