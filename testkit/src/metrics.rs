//! Metrics helpers: HTTP to a port inside a node's network namespace (the
//! nodes' loopback is their own), the text format read back, and a real
//! Prometheus server (the Debian package) run inside a node.

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use crate::nodes::NODES_SH;

/// Runs `f` on a thread that entered `node`'s network namespace (setns
/// changes the calling thread only).
pub fn in_netns<T: Send + 'static>(node: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{node}");
    std::thread::spawn(move || {
        let ns = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
            .unwrap_or_else(|e| panic!("entering {path}: {e}"));
        f()
    })
    .join()
    .expect("the namespace thread does not panic")
}

/// A TCP port free on the node's 127.0.0.1 right now.
pub fn free_port(node: &str) -> u16 {
    in_netns(node, || {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    })
}

/// GET `path` from 127.0.0.1:`port` in the node: (status, body); `None`
/// when nothing answers.
pub fn http_get(node: &str, port: u16, path: &str) -> Option<(u16, String)> {
    let path = path.to_string();
    in_netns(node, move || crate::http::tcp_get(port, &path))
}

/// One page of the text format: `name{labels}` as printed → value.
pub struct Page {
    pub text: String,
    samples: HashMap<String, f64>,
}

impl Page {
    pub fn parse(text: &str) -> Page {
        let samples = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .filter_map(|l| {
                let (series, value) = l.rsplit_once(' ')?;
                let value = match value {
                    "+Inf" => f64::INFINITY,
                    "-Inf" => f64::NEG_INFINITY,
                    v => v.parse().ok()?,
                };
                Some((series.to_string(), value))
            })
            .collect();
        Page {
            text: text.to_string(),
            samples,
        }
    }

    /// The sample of `name` with exactly these labels, in this order.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples.get(&series(name, labels)).copied()
    }

    /// [`Page::get`] that must exist.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels).unwrap_or_else(|| {
            panic!(
                "no sample {} in the page:\n{}",
                series(name, labels),
                self.text
            )
        })
    }
}

fn series(name: &str, labels: &[(&str, &str)]) -> String {
    if labels.is_empty() {
        return name.to_string();
    }
    let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    format!("{name}{{{}}}", labels.join(","))
}

/// The node's metrics page (from its daemon's METRICS_ADDR port), its
/// status figures read after this call: a page's can be those of a read
/// up to a second earlier (the scrapes of a second share one), so it
/// scrapes again until `buttervolume_status_timestamp_seconds` is not
/// before the call.
pub fn scrape(node: &str, port: u16) -> Page {
    // Milliseconds, as the page gives it.
    let asked = chrono::Utc::now().timestamp_millis() as f64 / 1000.0;
    let mut page = None;
    crate::wait_until(format!("a page of {node} read after {asked}"), 10, || {
        let (status, body) =
            http_get(node, port, "/metrics").unwrap_or_else(|| panic!("nothing on {node}:{port}"));
        assert_eq!(status, 200, "{body}");
        let read = Page::parse(&body);
        let fresh = read.value("buttervolume_status_timestamp_seconds", &[]) >= asked;
        page = Some(read);
        fresh
    });
    page.expect("scraped at least once")
}

/// `promtool check metrics` on a page: the format and the naming rules
/// (units, `_total` counters); returns what it says when it objects.
pub fn promtool_check(page: &str) -> Result<(), String> {
    let out = crate::output_with_stdin(
        Command::new("promtool").args(["check", "metrics"]),
        page.as_bytes(),
    );
    let said = format!("{}{}", crate::stdout(&out), crate::stderr(&out));
    if out.status.success() && said.trim().is_empty() {
        Ok(())
    } else {
        Err(said)
    }
}

/// A Prometheus server inside a node, on its 127.0.0.1, with its own
/// config and storage in a temporary directory; killed on drop.
pub struct Prometheus {
    child: Child,
    pub node: String,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts it scraping 127.0.0.1:`target` (in the node) every second,
    /// and waits until it is ready (`/-/ready`).
    pub fn start(node: &str, target: u16) -> Prometheus {
        assert!(
            Command::new("prometheus")
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success()),
            "prometheus is missing: run scripts/install-deps.sh"
        );
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
                 scrape_configs:\n  - job_name: buttervolume\n    static_configs:\n      - targets: ['127.0.0.1:{target}']\n"
            ),
        )
        .unwrap();
        let port = free_port(node);
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new(NODES_SH)
            .args(["exec", node, "prometheus"])
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting prometheus");
        let mut prometheus = Prometheus {
            child,
            node: node.to_string(),
            port,
            dir,
        };
        let log_path = prometheus.log_path();
        let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
        crate::wait_until(
            crate::wait::Lazy(|| format!("prometheus to be ready:\n{}", log())),
            60,
            || {
                if let Some(status) = prometheus.child.try_wait().unwrap() {
                    panic!("prometheus exited ({status}):\n{}", log());
                }
                prometheus.get("/-/ready").is_some_and(|(s, _)| s == 200)
            },
        );
        prometheus
    }

    fn get(&self, path: &str) -> Option<(u16, String)> {
        http_get(&self.node, self.port, path)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("prometheus.log")
    }

    /// An instant query through the HTTP API (`/api/v1/query`): the
    /// result's vector as (labels, sample time, value).
    pub fn query(&self, promql: &str) -> Vec<(Value, f64, f64)> {
        let path = format!("/api/v1/query?query={}", url_encode(promql));
        let (status, body) = self.get(&path).expect("prometheus answers");
        assert_eq!(status, 200, "{promql}: {body}");
        let reply: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(reply["status"], "success", "{promql}: {reply}");
        reply["data"]["result"]
            .as_array()
            .expect("a vector result")
            .iter()
            .map(|r| {
                let at = r["value"][0].as_f64().unwrap();
                let value: f64 = r["value"][1].as_str().unwrap().parse().unwrap();
                (r["metric"].clone(), at, value)
            })
            .collect()
    }
}

impl Prometheus {
    /// The samples of a range selector (`<selector>[<window>]`, queried
    /// through `/api/v1/query`) with their scrape times, of the one series
    /// it selects (none before its first scrape).
    pub fn samples(&self, selector: &str, window: &str) -> Vec<(f64, f64)> {
        let promql = format!("{selector}[{window}]");
        let path = format!("/api/v1/query?query={}", url_encode(&promql));
        let (status, body) = self.get(&path).expect("prometheus answers");
        assert_eq!(status, 200, "{promql}: {body}");
        let reply: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(reply["status"], "success", "{promql}: {reply}");
        assert_eq!(reply["data"]["resultType"], "matrix", "{reply}");
        let series = reply["data"]["result"].as_array().unwrap();
        assert!(
            series.len() <= 1,
            "{selector} selects several series: {reply}"
        );
        series
            .iter()
            .flat_map(|s| s["values"].as_array().unwrap().iter())
            .map(|v| {
                let value: f64 = v[1].as_str().unwrap().parse().unwrap();
                (v[0].as_f64().unwrap(), value)
            })
            .collect()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- prometheus log ---\n{}", self.log());
        }
    }
}

fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            b => format!("%{b:02X}"),
        })
        .collect()
}
