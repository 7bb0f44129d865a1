//! The web page in a real browser (SPEC section 8): Debian's chromium, headless, driven by
//! chromedriver over the WebDriver protocol (plain JSON over HTTP, spoken here with ureq).
//! Everything, the browser included, runs in a network namespace of its own with nothing
//! but loopback in reach, so not one packet of the browser's can leave the machine. Root,
//! `chromium` and `chromium-driver`: `make test-tools` installs them and runs this.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::support::netns::{self, Lan};
use crate::support::*;
use serde_json::{Value, json};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A chromedriver session.
struct Browser {
    base: String,
    session: String,
    agent: ureq::Agent,
}

impl Browser {
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.try_call(method, path, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// A WebDriver command; `Err` with the driver's error when it fails (a stale element:
    /// the page replaced it meanwhile).
    fn try_call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let url = format!("{}{path}", self.base);
        let result = match (method, body) {
            ("GET", _) => self.agent.get(&url).call(),
            ("DELETE", _) => self.agent.delete(&url).call(),
            (_, body) => self
                .agent
                .post(&url)
                .header("Content-Type", "application/json")
                .send(body.unwrap_or(json!({})).to_string()),
        };
        let mut response = result.map_err(|e| e.to_string())?;
        let text = response.body_mut().read_to_string().unwrap();
        let value: Value = serde_json::from_str(&text).unwrap();
        if response.status().is_success() {
            Ok(value["value"].clone())
        } else {
            Err(value["value"].to_string())
        }
    }

    fn open(port: u16, downloads: &Path, profile: &Path) -> Browser {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(60)))
            .http_status_as_error(false)
            .build()
            .into();
        let base = format!("http://127.0.0.1:{port}");
        wait_until("chromedriver to listen", Duration::from_secs(20), || {
            agent.get(&format!("{base}/status")).call().is_ok()
        });
        let mut browser = Browser {
            base,
            session: String::new(),
            agent,
        };
        let args = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--disable-default-apps",
            "--disable-domain-reliability",
            "--no-pings",
            "--window-size=1100,900",
            &format!("--user-data-dir={}", profile.display()),
        ];
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": args,
                "prefs": {
                    "download.default_directory": downloads,
                    "download.prompt_for_download": false,
                },
            },
        }}});
        let created = browser.call("POST", "/session", Some(capabilities));
        browser.session = created["sessionId"].as_str().unwrap().to_string();
        // Downloads go to `downloads` without asking, in headless mode too.
        browser.session_call(
            "POST",
            "/chromium/send_command",
            Some(json!({"cmd": "Browser.setDownloadBehavior",
                        "params": {"behavior": "allow", "downloadPath": downloads}})),
        );
        browser
    }

    fn session_call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.call(method, &format!("/session/{}{path}", self.session), body)
    }

    fn go(&self, url: &str) {
        self.session_call("POST", "/url", Some(json!({ "url": url })));
    }

    /// The elements matching `css` now.
    fn all(&self, css: &str) -> Vec<String> {
        let found = self.session_call(
            "POST",
            "/elements",
            Some(json!({"using": "css selector", "value": css})),
        );
        found
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e[ELEMENT].as_str().unwrap().to_string())
            .collect()
    }

    /// Waits for an element matching `css` whose text satisfies `want`; returns it.
    fn wait_for(&self, css: &str, want: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            for element in self.all(css) {
                // An element the page replaced since it was listed is looked for again.
                let text = self.try_call(
                    "GET",
                    &format!("/session/{}/element/{element}/text", self.session),
                    None,
                );
                if text.is_ok_and(|t| want(t.as_str().unwrap_or_default())) {
                    return element;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no {css} as wanted on the page: {}",
                self.text(&self.all("body")[0])
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn text(&self, element: &str) -> String {
        self.session_call("GET", &format!("/element/{element}/text"), None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    fn attribute(&self, element: &str, name: &str) -> String {
        self.session_call("GET", &format!("/element/{element}/property/{name}"), None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// The computed value of CSS property `name` for `element`.
    fn css(&self, element: &str, name: &str) -> String {
        self.session_call("GET", &format!("/element/{element}/css/{name}"), None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// The document's title.
    fn title(&self) -> String {
        self.session_call("GET", "/title", None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// The text of the first element matching `css`.
    fn text_of(&self, css: &str) -> String {
        self.text(&self.wait_for(css, |_| true))
    }

    fn click(&self, element: &str) {
        self.session_call(
            "POST",
            &format!("/element/{element}/click"),
            Some(json!({})),
        );
    }

    fn clear(&self, element: &str) {
        self.session_call(
            "POST",
            &format!("/element/{element}/clear"),
            Some(json!({})),
        );
    }

    fn type_in(&self, element: &str, text: &str) {
        self.session_call(
            "POST",
            &format!("/element/{element}/value"),
            Some(json!({ "text": text })),
        );
    }

    fn screenshot(&self, path: &Path) {
        let png = self.session_call("GET", "/screenshot", None);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, base64(png.as_str().unwrap())).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self
                .agent
                .delete(&format!("{}/session/{}", self.base, self.session))
                .call();
        }
    }
}

fn base64(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let digits: Vec<u8> = text
        .bytes()
        .filter(|c| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/')
        .map(value)
        .collect();
    digits
        .chunks(4)
        .flat_map(|chunk| {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, &d)| n | u32::from(d) << (18 - 6 * i));
            let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
            bytes.into_iter().take(chunk.len() - 1)
        })
        .collect()
}

/// Checks what every page shows a newcomer: the heading and the title name the instance
/// (`who`, its `host:port`, and `detail`, as text even when it looks like markup), and the
/// footer ends on its last item, not on a separator.
fn check_header_and_footer(browser: &Browser, who: &str, detail: &str) {
    let heading = browser.wait_for("h1", |text| text.contains(who));
    let text = browser.text(&heading);
    assert!(
        text.contains(detail),
        "the heading {text:?} names {detail:?}"
    );
    assert!(
        browser.all("h1 b").is_empty(),
        "a name is shown as text, never as markup"
    );
    let title = browser.title();
    assert!(
        title.contains(who) && title.contains(detail),
        "the title {title:?} names {who} and {detail:?}"
    );
    let footer = browser.text_of("footer");
    assert!(
        !footer.trim_end().ends_with(['·', '|', '-']),
        "the footer {footer:?} ends on a separator"
    );
}

/// The one file that lands in `dir` (a finished download, not a `.crdownload`).
fn downloaded(dir: &Path) -> PathBuf {
    let mut found = None;
    wait_until("the download to finish", Duration::from_secs(20), || {
        let files: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .collect();
        found = files
            .iter()
            .find(|path| !path.to_string_lossy().ends_with(".crdownload"))
            .cloned();
        found.is_some() && files.len() == 1
    });
    found.unwrap()
}

#[test]
#[ignore = "needs root, chromium and chromium-driver: make test-tools"]
fn the_pages_search_download_and_list_in_a_real_browser() {
    assert!(
        netns::is_root(),
        "the browser runs in a network namespace of its own: run as root (make test-tools)"
    );
    let lan = Lan::new(1);
    let ns = lan.ns(1);
    let group = "239.1.2.3:4321";
    // Keyed: the page only reads, so a cluster key changes nothing for it.
    let key = "the-browser-test-cluster-key-0123456789";
    let s1 = Launch::supernode("s1", group, 2)
        .env("CLUSTER_KEY", key)
        .netns(ns)
        .start();
    let s2 = Launch::supernode("s2", group, 2)
        .env("CLUSTER_KEY", key)
        .netns(ns)
        .start();
    let here = Folder::with(&[("notes/readme.txt", b"read me, from node1\n")]);
    let there = Folder::with(&[("report.pdf", b"%PDF- a report that node2 holds\n")]);
    // A name that looks like markup: every page shows it as text.
    let node1_name = "<b>node1</b>";
    let node1 = Launch::node("node1", &here.path, &[&s1.url()])
        .env("CLUSTER_KEY", key)
        .env("NODE_NAME", node1_name)
        .netns(ns)
        .start();
    let node2 = Launch::node("node2", &there.path, &[&s2.url()])
        .env("CLUSTER_KEY", key)
        .netns(ns)
        .start();
    let wanted = sha256(b"%PDF- a report that node2 holds\n");
    let scratch = Folder::with(&[]);
    let (downloads, profile) = (scratch.path.join("downloads"), scratch.path.join("profile"));
    std::fs::create_dir_all(&downloads).unwrap();
    let driver_port = 9515;
    let _driver = Launch::tool(
        "chromedriver",
        &["chromedriver", &format!("--port={driver_port}")],
    )
    .netns(ns)
    .spawn();
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");

    lan.on(1, || {
        wait_registered(&s1, &[&node1]);
        wait_registered(&s2, &[&node2]);
        let browser = Browser::open(driver_port, &downloads, &profile);

        // node1's page: its file, then a search for what node2 holds, downloaded through node1.
        browser.go(&format!("{}/", node1.url()));
        browser.wait_for("#files tbody tr", |row| row.contains("notes/readme.txt"));
        check_header_and_footer(&browser, &node1.location(), node1_name);
        // Its supernode, linked to its page.
        let supernode = browser.wait_for("#about a.supernode", |_| true);
        assert_eq!(
            browser.attribute(&supernode, "href"),
            format!("{}/", s1.url())
        );
        let input = &browser.all("#q")[0];
        browser.type_in(input, &wanted);
        browser.click(&browser.all("#go")[0]);
        let holder = browser.wait_for("#results a.holder", |text| text.contains(&node2.location()));
        browser.screenshot(&shots.join("node.png"));
        assert_eq!(
            browser.attribute(&holder, "href"),
            format!("{}/api/node/resources/{wanted}/content", node2.url())
        );
        let through = browser.wait_for("#results a.via-node", |_| true);
        browser.click(&through);
        let file = downloaded(&downloads);
        let bytes = std::fs::read(&file).unwrap();
        assert_eq!(sha256(&bytes), wanted, "{} downloaded", file.display());

        // s1's page: its node, its peer, and the searches it answered.
        browser.go(&format!("{}/", s1.url()));
        // The first render has every value: no "…" waiting for the next refresh (the rate
        // of searches is the average since start until there is a last 5 s to tell).
        browser.wait_for("#about", |text| {
            !text.is_empty() && !text.contains("loading")
        });
        let first = browser.text(&browser.all("body")[0]);
        assert!(
            !first.contains('…'),
            "a placeholder on the first render: {first}"
        );
        assert!(
            first.contains("rate since start"),
            "not the first render: {first}"
        );
        check_header_and_footer(&browser, &s1.location(), &format!("group {group}"));
        browser.wait_for("#nodes tbody tr", |row| row.contains(&node1.location()));
        // A node is linked to its page, its name shown as text.
        let node = browser.wait_for("#nodes a.node", |text| text == node1.location());
        assert_eq!(
            browser.attribute(&node, "href"),
            format!("{}/", node1.url())
        );
        browser.wait_for("#nodes tbody td", |text| text == node1_name);
        // Numbers are right-aligned, as their header is.
        let resources = browser.wait_for("#nodes tbody td:nth-child(3)", |text| text == "1");
        let header = browser.all("#nodes thead th:nth-child(3)")[0].clone();
        assert_eq!(browser.text(&header), "Resources");
        assert_eq!(browser.css(&header, "text-align"), "right");
        assert_eq!(browser.css(&resources, "text-align"), "right");
        // The peer, by the address of its API, linked to its page; its UUID shortened.
        let peer = browser.wait_for("#peers a.peer", |text| text == s2.location());
        assert_eq!(browser.attribute(&peer, "href"), format!("{}/", s2.url()));
        browser.wait_for("#peers tbody tr", |row| row.contains("127.0.0.1:"));
        let uuid = browser.wait_for("#peers tbody td code[title]", |text| text.len() == 8);
        let whole = browser.attribute(&uuid, "title");
        assert!(
            whole.len() == 36 && whole.starts_with(&browser.text(&uuid)),
            "{whole:?} shortened as {:?}",
            browser.text(&uuid)
        );
        // node1's search and its download's redirect each asked the group.
        browser.wait_for("#searches", |text| {
            !text.contains("found by the group\n0") && text.contains("found by the group\n")
        });
        let input = &browser.all("#q")[0];
        browser.type_in(input, &wanted);
        browser.click(&browser.all("#go")[0]);
        browser.wait_for("#results a.holder", |text| text.contains(&node2.location()));
        // By name: any part of it, in any case.
        browser.clear(input);
        browser.type_in(input, "REPORT");
        browser.click(&browser.all("#go")[0]);
        browser.wait_for("#results p", |text| text.contains("report.pdf"));
        let holder = browser.wait_for("#results a.holder", |text| text == node2.location());
        assert_eq!(
            browser.attribute(&holder, "href"),
            format!("{}/api/node/resources/{wanted}/content", node2.url())
        );
        browser.screenshot(&shots.join("supernode.png"));
        // s2 lists node2.
        browser.go(&format!("{}/", s2.url()));
        browser.wait_for("#nodes tbody tr", |row| row.contains(&node2.location()));
    });
}
