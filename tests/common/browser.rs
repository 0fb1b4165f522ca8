//! A real browser for the end-to-end tests: headless Chromium driven over WebDriver
//! (Debian's `chromium` + `chromium-driver`, installed by scripts/install-deps.sh) through
//! the `fantoccini` crate, with the flags a closed network needs, and the page helpers the
//! browser tests share.

use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

static SESSIONS: AtomicU32 = AtomicU32::new(0);

/// chromedriver on a free loopback port, killed (by its own pid) when dropped.
pub struct Driver {
    child: Child,
    url: String,
    profiles: PathBuf,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profiles);
    }
}

impl Driver {
    pub async fn start() -> Driver {
        let port = StdListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian chromium-driver; run scripts/install-deps.sh)");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profiles = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("chromium-profiles-{}-{port}", std::process::id()));
        Driver { child, url: format!("http://{addr}"), profiles }
    }

    /// A fresh headless Chromium session (its own profile directory, no network
    /// services: this machine's network is closed), with `extra` flags.
    pub async fn browser(&self, extra: &[String]) -> Client {
        let mut args = vec![
            "--headless".to_owned(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-dev-shm-usage".into(),
            "--window-size=1280,900".into(),
        ];
        let n = SESSIONS.fetch_add(1, Ordering::Relaxed);
        args.push(format!("--user-data-dir={}", self.profiles.join(n.to_string()).display()));
        args.extend(extra.iter().cloned());
        let mut options = json!({ "args": args });
        if std::path::Path::new("/usr/bin/chromium").exists() {
            options["binary"] = "/usr/bin/chromium".into();
        }
        let mut caps = serde_json::Map::new();
        caps.insert("goog:chromeOptions".into(), options);
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&self.url)
            .await
            .expect("a Chromium session through chromedriver")
    }
}

pub async fn text(browser: &Client, id: &str) -> String {
    browser.find(Locator::Id(id)).await.unwrap().text().await.unwrap()
}

/// Waits until the element `id` has `attribute` = `value` (the page redraws after the
/// API answered and the matrix was read back).
pub async fn wait_attr(browser: &Client, id: &str, attribute: &str, value: &str) {
    let mut last = None;
    for _ in 0..100 {
        if let Ok(element) = browser.find(Locator::Id(id)).await {
            last = element.attr(attribute).await.ok().flatten();
            if last.as_deref() == Some(value) {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("#{id} [{attribute}] is {last:?}, expected {value:?}");
}

pub async fn screenshot(browser: &Client, name: &str) {
    let dir = std::env::var_os("MIXMINUS_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")));
    std::fs::create_dir_all(&dir).unwrap();
    let png = browser.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    std::fs::write(dir.join(name), png).unwrap();
}

/// The latest API answer the page shows: (HTTP status, text).
pub async fn last_answer(browser: &Client) -> (String, String) {
    let item = browser.find(Locator::Css("#answers li")).await.unwrap();
    (item.attr("data-status").await.unwrap().unwrap_or_default(), item.text().await.unwrap())
}

/// Signs in on the page at `page` and opens conference `conference`.
pub async fn sign_in_and_open(
    browser: &Client,
    page: &str,
    account: &str,
    token: &str,
    conference: &str,
) {
    browser.goto(page).await.unwrap();
    browser.find(Locator::Id("signin-account")).await.unwrap().send_keys(account).await.unwrap();
    browser.find(Locator::Id("signin-token")).await.unwrap().send_keys(token).await.unwrap();
    browser.find(Locator::Id("signin-submit")).await.unwrap().click().await.unwrap();
    let open =
        browser.wait().for_element(Locator::Id(&format!("open-{conference}"))).await.unwrap();
    open.click().await.unwrap();
    wait_attr(browser, "live", "class", "live on").await;
}
