//! The web page of `taskpool serve` in headless Chromium, driven over WebDriver (`chromedriver`,
//! Debian's `chromium-driver`). These tests fail, not skip, when chromedriver is missing. Each
//! saves a screenshot under `target/screenshots/`.
//!
//! Waiting is done in the page: a script resolves when its condition holds, checked again at
//! every DOM change (a `MutationObserver`), so no test sleeps or polls.

use crate::serve::Server;
use crate::util::*;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A chromedriver with one headless Chromium session.
struct Browser {
    rt: tokio::runtime::Runtime,
    client: Option<Client>,
    driver: Child,
    profile: PathBuf,
}

fn chromedriver() -> PathBuf {
    let found = std::env::var_os("CHROMEDRIVER")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
                .map(|d| d.join("chromedriver"))
                .find(|p| p.exists())
        });
    found.unwrap_or_else(|| {
        panic!(
            "chromedriver is not installed: the browser tests need Debian's chromium and \
             chromium-driver (apt-get install chromium chromium-driver), or CHROMEDRIVER=PATH"
        )
    })
}

impl Browser {
    fn start(tp: &TestPool) -> Browser {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        // A free port for the driver (it takes no port 0).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut driver = Command::new(chromedriver())
            .arg(format!("--port={port}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        // It says so once it listens.
        let mut r = BufReader::new(driver.stdout.take().unwrap());
        let mut line = String::new();
        loop {
            line.clear();
            assert!(
                r.read_line(&mut line).unwrap() > 0,
                "chromedriver exited before listening"
            );
            if line.contains("started successfully") {
                break;
            }
        }
        std::thread::spawn(move || std::io::copy(&mut r, &mut std::io::sink()));
        let profile = tp.scratch().join("chromium-profile");
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()),
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--window-size=1280,860", "--no-first-run", "--disable-extensions",
                    format!("--user-data-dir={}", profile.display()),
                ],
            }),
        );
        caps.insert("unhandledPromptBehavior".into(), json!("ignore"));
        let client = rt
            .block_on(
                ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                    .capabilities(caps)
                    .connect(&format!("http://127.0.0.1:{port}")),
            )
            .expect("a Chromium session from chromedriver");
        rt.block_on(
            client.update_timeouts(fantoccini::wd::TimeoutConfiguration::new(
                Some(Duration::from_secs(20)),
                Some(Duration::from_secs(20)),
                Some(Duration::ZERO),
            )),
        )
        .unwrap();
        Browser {
            rt,
            client: Some(client),
            driver,
            profile,
        }
    }

    fn c(&self) -> &Client {
        self.client.as_ref().unwrap()
    }

    fn goto(&self, url: &str) {
        self.rt.block_on(self.c().goto(url)).unwrap();
    }

    fn js(&self, script: &str) -> Value {
        self.rt
            .block_on(self.c().execute(script, vec![]))
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Wait until the JavaScript expression `cond` is truthy, checked now and on every DOM
    /// change (20 s at most); returns its value.
    fn wait(&self, cond: &str) -> Value {
        let script = format!(
            r#"const done = arguments[arguments.length - 1];
            const check = () => {{ try {{ return ({cond}); }} catch (e) {{ return false; }} }};
            const v = check();
            if (v) {{ done(v); return; }}
            const obs = new MutationObserver(() => {{
                const v = check();
                if (v) {{ obs.disconnect(); done(v); }}
            }});
            obs.observe(document, {{subtree: true, childList: true, characterData: true, attributes: true}});"#
        );
        match self.rt.block_on(self.c().execute_async(&script, vec![])) {
            Ok(v) => v,
            Err(e) => {
                self.screenshot("failed-wait");
                panic!("waiting for `{cond}`: {e}")
            }
        }
    }

    fn text(&self, css: &str) -> String {
        self.js(&format!(
            "const e = document.querySelector({}); return e ? e.textContent : null;",
            json!(css)
        ))
        .as_str()
        .unwrap_or_else(|| panic!("no element {css}"))
        .to_owned()
    }

    fn click(&self, css: &str) {
        self.rt
            .block_on(async { self.c().find(Locator::Css(css)).await?.click().await })
            .unwrap_or_else(|e| panic!("click {css}: {e}"));
    }

    fn accept_confirm(&self) {
        self.rt
            .block_on(self.c().accept_alert())
            .expect("a confirmation");
    }

    /// Save a PNG of the page as `target/screenshots/NAME.png`.
    fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.rt.block_on(self.c().screenshot()).expect("screenshot");
        // target/screenshots, above target/<host tuple>/tmp when the build names its target.
        let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        let target = tmp
            .ancestors()
            .find(|d| d.file_name().is_some_and(|n| n == "target"))
            .unwrap_or_else(|| tmp.parent().unwrap());
        let dir = target.join("screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(c) = self.client.take() {
            let _ = self.rt.block_on(c.close());
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// The page at the URL the server printed, once its live updates are connected.
fn open(b: &Browser, s: &Server) {
    b.goto(&s.url);
    b.wait("document.getElementById('conn').textContent === 'live'");
    // The token left the address bar once the cookie held it.
    let url = b.js("return location.href;");
    assert!(!url.as_str().unwrap().contains("token="), "address: {url}");
}

fn row(id: u64) -> String {
    format!("#tasks tbody tr[data-id='{id}']")
}

#[test]
fn browser_shows_a_new_task_live_streams_its_output_and_kills_it() {
    let tp = TestPool::new();
    let done = tp.spawn(["--name", "earlier", "--meta", "progress=100", "--", "true"]);
    tp.wait_ok(&done.to_string());
    let failed = tp.spawn([
        "--name",
        "tests",
        "--group",
        "ci",
        "-c",
        "echo FAIL >&2; exit 3",
    ]);
    tp.run(["wait", &failed.to_string()]);
    let s = Server::start(&tp, &[]);
    let b = Browser::start(&tp);
    open(&b, &s);
    b.wait(&format!("document.querySelector(\"{}\")", row(done)));

    // A task spawned after the page loaded appears without a reload.
    let id = tp.spawn([
        "--name",
        "echoer",
        "--group",
        "ci",
        "--meta",
        "progress=40",
        "--",
        "cat",
    ]);
    b.wait(&format!(
        "document.querySelector(\"{} td.state\").textContent === 'running'",
        row(id)
    ));
    eq!(b.text(&format!("{} td.name", row(id))), "echoer");
    let width = b.js(&format!(
        "return document.querySelector(\"{} .bar > span\").style.width;",
        row(id)
    ));
    eq!(width, json!("40%"));
    tp.ok(["meta", &id.to_string(), "progress=65"]);
    b.wait(&format!(
        "document.querySelector(\"{} .bar > span\").style.width === '65%'",
        row(id)
    ));
    b.screenshot("table");

    // Its page: output streams in as it is written.
    b.click(&format!("{} td.name a", row(id)));
    b.wait("document.getElementById('follow-state').textContent === 'following'");
    tp.ok(["send", &id.to_string(), "first line"]);
    b.wait("document.getElementById('output').textContent === 'first line\\n'");
    tp.ok(["send", &id.to_string(), "\x1b[31mred\x1b[0m and plain"]);
    b.wait("document.getElementById('output').textContent.endsWith('red and plain\\n')");
    // The colour became a class; no escape character reached the page.
    eq!(b.text("#output .a-f1"), "red");
    eq!(b.text("#output"), "first line\nred and plain\n");
    eq!(b.text("#t-state"), "running");
    b.screenshot("task");

    // Kill, confirmed: the state changes on the page.
    b.click("#actions button[data-action=kill]");
    b.accept_confirm();
    b.wait("document.getElementById('t-state').textContent === 'exited'");
    b.wait("document.getElementById('follow-state').textContent === 'ended'");
    b.wait("document.getElementById('report').textContent.includes('SIGTERM')");
    eq!(tp.info(id)["signal"], json!("SIGTERM"));
    b.screenshot("killed");

    // Back on the table, the row says so too.
    b.click("#home");
    b.wait(&format!(
        "document.querySelector(\"{} td.state\").textContent === 'exited'",
        row(id)
    ));
    drop(b);
    s.stop();
}

#[test]
fn browser_shows_markup_from_a_task_as_text_and_runs_none_of_it() {
    let tp = TestPool::new();
    let evil = r#"<img src=x onerror="window.pwned=1"><script>window.pwned=2</script><b>bold</b>"#;
    let id = tp.spawn([
        "--name",
        evil,
        "--meta",
        &format!("note={evil}"),
        "-c",
        &format!("printf '%s\\n' '{evil}'; printf '%s\\n' '{evil}' >&2; cat"),
    ]);
    let s = Server::start(&tp, &[]);
    let b = Browser::start(&tp);
    open(&b, &s);
    b.wait(&format!("document.querySelector(\"{}\")", row(id)));
    eq!(b.text(&format!("{} td.name", row(id))), evil);
    b.goto(&format!("{}/#/task/{id}", s.base));
    b.wait(&format!(
        "document.getElementById('output').textContent === {}",
        json!(format!("{evil}\n{evil}\n"))
    ));
    eq!(b.text("#t-title"), format!("task {id} · {evil}"));
    let meta: Value = serde_json::from_str(&b.text("#t-meta")).unwrap();
    eq!(meta["note"], json!(evil));
    // No element came of it, and no script ran.
    let found = b.js(
        "return [document.querySelectorAll('main img, main script, main b').length, \
         typeof window.pwned];",
    );
    eq!(found, json!([0, "undefined"]));
    // The stderr switch shows that stream alone.
    b.click("input[name=stream][value=stderr]");
    b.wait(&format!(
        "document.getElementById('output').textContent === {}",
        json!(format!("{evil}\n"))
    ));
    b.screenshot("markup");
    eq!(b.js("return typeof window.pwned;"), json!("undefined"));
    drop(b);
    s.stop();
}

#[test]
fn browser_read_only_page_has_no_buttons_and_filters_by_pattern() {
    let tp = TestPool::new();
    let a = tp.spawn(["--name", "alpha", "--meta", "owner=ci", "--", "true"]);
    let z = tp.spawn(["--name", "zeta", "--", "true"]);
    tp.wait_ok(&a.to_string());
    tp.wait_ok(&z.to_string());
    tp.ok(["restart", &a.to_string()]);
    tp.wait_ok(&a.to_string());
    let s = Server::start(&tp, &["--read-only"]);
    let b = Browser::start(&tp);
    open(&b, &s);
    b.wait("document.querySelectorAll('#tasks tbody tr').length === 2");
    // Sorted by id, newest first; a click on "name" sorts by name.
    let ids = "return [...document.querySelectorAll('#tasks tbody tr')].map(r => r.dataset.id);";
    eq!(b.js(ids), json!([z.to_string(), a.to_string()]));
    b.click("#tasks th[data-key=name]");
    eq!(b.js(ids), json!([a.to_string(), z.to_string()]));
    // The filter box takes a --where pattern.
    b.rt.block_on(async {
        let f = b.c().find(Locator::Css("#filter")).await?;
        f.send_keys(r#"{"meta": {"owner": "ci"}}"#).await?;
        b.c()
            .find(Locator::Css("#filter-form button"))
            .await?
            .click()
            .await
    })
    .unwrap();
    b.wait("document.querySelectorAll('#tasks tbody tr').length === 1");
    eq!(b.js(ids), json!([a.to_string()]));
    // A bad pattern is named, not applied.
    b.js("document.getElementById('filter').value = '{oops'; return null;");
    b.click("#filter-form button");
    b.wait("document.getElementById('filter-error').textContent.startsWith('not JSON')");

    // The task page: no buttons, and a chart of its two runs.
    b.goto(&format!("{}/#/task/{a}", s.base));
    b.wait("document.getElementById('t-state').textContent === 'exited'");
    b.wait("document.querySelectorAll('#chart svg rect').length === 2");
    eq!(
        b.js("return document.getElementById('actions').hidden;"),
        json!(true)
    );
    eq!(
        b.js("return getComputedStyle(document.getElementById('actions')).display;"),
        json!("none")
    );
    b.screenshot("read-only");
    drop(b);
    s.stop();
}

/// The server goes away and comes back (same port, same token) while the task writes: the page
/// reconnects by itself and shows every byte once.
#[test]
fn browser_resumes_output_after_the_server_comes_back() {
    use std::os::unix::fs::PermissionsExt;
    let tp = TestPool::new();
    let token = tp.scratch().join("token");
    std::fs::write(&token, "browser-test-token-0123456789\n").unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    let id = tp.spawn(["--name", "writer", "--", "cat"]);
    let args = ["--token-file", token.to_str().unwrap()];
    let s = Server::start(&tp, &args);
    let listen = s.base.strip_prefix("http://").unwrap().to_owned();
    let b = Browser::start(&tp);
    open(&b, &s);
    b.goto(&format!("{}/#/task/{id}", s.base));
    b.wait("document.getElementById('follow-state').textContent === 'following'");
    tp.ok(["send", &id.to_string(), "before"]);
    b.wait("document.getElementById('output').textContent === 'before\\n'");
    s.stop();
    b.wait("document.getElementById('conn').textContent === 'reconnecting'");
    tp.ok(["send", &id.to_string(), "while away"]);
    let s = Server::start_at(&tp, &listen, &args);
    tp.ok(["send", &id.to_string(), "after"]);
    b.wait("document.getElementById('output').textContent === 'before\\nwhile away\\nafter\\n'");
    b.wait("document.getElementById('conn').textContent === 'live'");
    b.screenshot("resumed");
    drop(b);
    s.stop();
}

/// 1000 tasks: the table is filled, and re-sorted, without the page stalling.
#[test]
fn browser_renders_a_thousand_tasks() {
    let tp = TestPool::new();
    let jobs = tp.scratch().join("jobs.jsonl");
    let lines: String = (0..1000)
        .map(|i| format!("{{\"command\": [\"true\"], \"name\": \"job {i:04}\", \"meta\": {{\"progress\": {}}}}}\n", i % 101))
        .collect();
    std::fs::write(&jobs, lines).unwrap();
    let ids: Vec<String> = tp
        .ok(["spawn", "--many", jobs.to_str().unwrap()])
        .lines()
        .map(str::to_owned)
        .collect();
    eq!(ids.len(), 1000);
    let mut wait = vec!["wait".to_owned()];
    wait.extend(ids);
    tp.ok(&wait);
    let s = Server::start(&tp, &[]);
    let b = Browser::start(&tp);
    b.goto(&s.url);
    let shown =
        b.wait("document.querySelectorAll('#tasks tbody tr').length === 1000 && performance.now()");
    let sort = b.js("const t = performance.now(); \
         document.querySelector('#tasks th[data-key=name]').click(); \
         return performance.now() - t;");
    let first = b.text("#tasks tbody tr td.name");
    eq!(first, "job 0000");
    b.screenshot("thousand");
    let (shown, sort) = (shown.as_f64().unwrap(), sort.as_f64().unwrap());
    eprintln!(
        "1000 tasks: table filled {shown:.0} ms after navigation, sorted by name in {sort:.0} ms"
    );
    assert!(shown < 5000.0, "the table took {shown:.0} ms to fill");
    assert!(sort < 1000.0, "sorting took {sort:.0} ms");
    drop(b);
    s.stop();
}

/// The output view follows new output while it is scrolled to the end, and stays put once the
/// user scrolls up, until they scroll back down.
#[test]
fn browser_output_auto_scrolls_until_the_user_scrolls_up() {
    let tp = TestPool::new();
    let id = tp.spawn(["--name", "lines", "--", "cat"]);
    let s = Server::start(&tp, &[]);
    let b = Browser::start(&tp);
    open(&b, &s);
    b.goto(&format!("{}/#/task/{id}", s.base));
    b.wait("document.getElementById('follow-state').textContent === 'following'");
    let send = |from: usize| {
        let text: Vec<String> = (from..from + 200).map(|i| format!("line {i}")).collect();
        tp.ok(["send", &id.to_string(), &text.join("\n")]);
        b.wait(&format!(
            "document.getElementById('output').textContent.includes('line {}\\n')",
            from + 199
        ));
    };
    let at_end = "const o = document.getElementById('output'); \
                  return o.scrollTop + o.clientHeight >= o.scrollHeight - 8;";
    let scroll_to = |js: &str| {
        b.js(&format!(
            "const o = document.getElementById('output'); o.scrollTop = {js}; \
             o.dispatchEvent(new Event('scroll')); return null;"
        ));
    };
    send(0);
    eq!(b.js(at_end), json!(true));
    scroll_to("0");
    send(200);
    eq!(
        b.js("return document.getElementById('output').scrollTop;"),
        json!(0)
    );
    eq!(b.js(at_end), json!(false));
    b.screenshot("scrolled-up");
    scroll_to("o.scrollHeight");
    send(400);
    eq!(b.js(at_end), json!(true));
    drop(b);
    s.stop();
}
