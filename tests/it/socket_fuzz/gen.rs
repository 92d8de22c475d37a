//! The seeded request generator: endpoints, junk paths, hosts, names and
//! the hostile request shapes.

use super::*;

/// xorshift64*: tiny, deterministic, good enough to pick test inputs.
pub(super) struct Rng(pub(super) u64);

impl Rng {
    pub(super) fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub(super) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const ENDPOINTS: &[&str] = &[
    "/Plugin.Activate",
    "/VolumeDriver.Capabilities",
    "/VolumeDriver.Create",
    "/VolumeDriver.Remove",
    "/VolumeDriver.Mount",
    "/VolumeDriver.Unmount",
    "/VolumeDriver.Path",
    "/VolumeDriver.Get",
    "/VolumeDriver.List",
    "/VolumeDriver.Snapshot",
    "/VolumeDriver.Snapshot.List",
    "/VolumeDriver.Snapshot.Remove",
    "/VolumeDriver.Snapshot.Restore",
    "/VolumeDriver.Clone",
    "/VolumeDriver.Snapshots.Purge",
    "/VolumeDriver.Inspect",
    "/VolumeDriver.Snapshot.Send",
    "/VolumeDriver.Volume.Sync",
    "/VolumeDriver.Schedule",
    "/VolumeDriver.Schedule.List",
    "/VolumeDriver.Schedule.Pause",
    "/VolumeDriver.Schedule.Resume",
    "/VolumeDriver.Status",
];

const JUNK_PATHS: &[&str] = &[
    "/",
    "",
    "*",
    "/VolumeDriver.",
    "/volumedriver.create",
    "/VolumeDriver.Create/../../etc/passwd",
    "/VolumeDriver.Snapshot.List/../../etc",
    "/VolumeDriver.Snapshot.List/..%2f..%2fetc",
    "/VolumeDriver.Snapshot.List/%00",
    "/VolumeDriver.Create?Name=../x",
    "//VolumeDriver.List",
    "/Plugin.Activate#frag",
    "http://evil/VolumeDriver.List",
];

/// Hosts for replication fields: loopback, or rejected by every check.
const HOSTS: &[&str] = &[
    "127.0.0.1",
    "127.0.0.2",
    "root@127.0.0.1",
    "-oProxyCommand=id",
    "127.0.0.1;id",
    "$(id)",
    "`id`",
    "a b",
    "../127.0.0.1",
    "127.0.0.1/x",
    "",
    "127.0.0.1\n",
    "127.0.0.1\u{0}",
    "|id",
];

/// Snapshot/volume-ish names that exist or could, so the real code paths
/// (not only the validation) are exercised.
const REAL_NAMES: &[&str] = &["db", "web", "ok-1", "db2", "x.y_z"];

pub(super) struct Gen {
    pub(super) rng: Rng,
    pub(super) token: String,
    /// Snapshot names the daemon handed out, reused as inputs.
    pub(super) snapshots: Vec<String>,
}

impl Gen {
    fn hostile_name(&mut self) -> String {
        let t = &self.token;
        let fixed: Vec<String> = vec![
            format!("../{t}"),
            format!("../../{t}"),
            format!("../../../{t}"),
            format!("db@../../{t}"),
            format!("/tmp/{t}"),
            format!("{t}/../../x"),
            "a/b".into(),
            "..".into(),
            ".".into(),
            "".into(),
            " ".into(),
            "$(id)".into(),
            ";rm -rf x".into(),
            "x;rm".into(),
            "`id`".into(),
            "a|b".into(),
            "a&&b".into(),
            "$HOME".into(),
            "-x".into(),
            ".hidden".into(),
            ".staging".into(),
            ".recv.1.2.3".into(),
            "x\u{0}y".into(),
            "\u{0}".into(),
            "x\ny".into(),
            "é".into(),
            "a@b".into(),
            "db@".into(),
            "db@a/b".into(),
            "db@$(id)".into(),
            "db@2026-01-01T00:00:00.000000".into(),
            "db@2026-01-01T00:00:00.000000@127.0.0.1".into(),
            "x".repeat(300),
            "y".repeat(256),
            "z".repeat(names::MAX_VOLUME_BYTES + 1),
            "w".repeat(names::MAX_VOLUME_BYTES),
            "\\..\\x".into(),
            "%2e%2e%2fx".into(),
            "\u{202e}txt.exe".into(),
            "\u{1F600}".into(),
            "*".into(),
            "?".into(),
        ];
        match self.rng.below(10) {
            0..=3 => self.rng.pick(&fixed).clone(),
            4..=6 => self.rng.pick(REAL_NAMES).to_string(),
            7 if !self.snapshots.is_empty() => {
                let s = self.rng.pick(&self.snapshots).clone();
                if self.rng.chance(50) {
                    s
                } else {
                    names::volume_of(&s).to_string()
                }
            }
            _ => {
                const ALPHABET: &[u8] = b"abcxyz0189-_.@/$;`|&()<>*? \n\t\\'\"%~!#ABCZ";
                let len = self.rng.below(40);
                (0..len).map(|_| *self.rng.pick(ALPHABET) as char).collect()
            }
        }
    }

    fn value(&mut self, stringy: impl FnOnce(&mut Gen) -> String) -> Value {
        match self.rng.below(20) {
            0..=11 => json!(stringy(self)),
            12 => json!(self.rng.next() as i64),
            13 => json!(-1.5e300),
            14 => json!(self.rng.chance(50)),
            15 => Value::Null,
            16 => json!([stringy(self), 1]),
            17 => json!({"Name": stringy(self)}),
            18 => json!(""),
            _ => json!("x".repeat(10_000)),
        }
    }

    fn body(&mut self) -> Value {
        let mut map = Map::new();
        let fields: &[&str] = &[
            "Name", "Opts", "ID", "Target", "Force", "Pattern", "Dryrun", "Host", "Hosts",
            "Volumes", "Test", "Compress", "BwLimit", "Action", "Timer",
        ];
        for field in fields {
            let wanted = if *field == "Name" { 85 } else { 40 };
            if !self.rng.chance(wanted) {
                continue;
            }
            let v = match *field {
                "Host" => self.value(|g| g.rng.pick(HOSTS).to_string()),
                "Hosts" => {
                    let n = self.rng.below(3);
                    json!((0..n)
                        .map(|_| self.rng.pick(HOSTS).to_string())
                        .collect::<Vec<_>>())
                }
                "Volumes" => {
                    let n = self.rng.below(3);
                    json!((0..n).map(|_| self.hostile_name()).collect::<Vec<_>>())
                }
                "Opts" => match self.rng.below(4) {
                    0 => json!({"copyonwrite": "false"}),
                    1 => json!({"compression": self.hostile_name()}),
                    2 => {
                        let mut opts = Map::new();
                        opts.insert(self.hostile_name(), json!(self.hostile_name()));
                        Value::Object(opts)
                    }
                    _ => self.value(|g| g.hostile_name()),
                },
                "Action" => self.value(|g| {
                    let host = g.rng.pick(HOSTS).to_string();
                    let name = g.hostile_name();
                    g.rng
                        .pick(&[
                            "snapshot".to_string(),
                            format!("replicate:{host}"),
                            format!("synchronize:{host},{host}"),
                            "purge:1h:1d".to_string(),
                            format!("purge:{name}"),
                            name,
                        ])
                        .clone()
                }),
                "Timer" => self.value(|g| {
                    g.rng
                        .pick(&[
                            "60",
                            "0",
                            "delete",
                            "pause",
                            "resume",
                            "cron:0 3 * * *",
                            "cron:0 3\n* * *",
                            "-1",
                            "99999999999999999999",
                            "cron:@reboot",
                            "cron:* * 1 * 1",
                            "1e3",
                            "\"",
                            "cron:0 3 * * *\r",
                        ])
                        .to_string()
                }),
                "Pattern" => self.value(|g| {
                    g.rng
                        .pick(&[
                            "1h:1d",
                            "1h",
                            "0h:1d",
                            "1x:2y",
                            "99999999999999999999h:1d",
                            "",
                        ])
                        .to_string()
                }),
                _ => self.value(|g| g.hostile_name()),
            };
            map.insert(field.to_string(), v);
        }
        Value::Object(map)
    }

    fn path(&mut self) -> String {
        if self.rng.chance(8) {
            return self.rng.pick(JUNK_PATHS).to_string();
        }
        let endpoint = self.rng.pick(ENDPOINTS).to_string();
        if endpoint.ends_with("Snapshot.List") && self.rng.chance(40) {
            let name: String = self
                .hostile_name()
                .bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() || b"-_.@".contains(&b) {
                        (b as char).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect();
            return format!("{endpoint}/{name}");
        }
        endpoint
    }

    /// A well-formed request on real names, so the real operations run
    /// between the hostile ones (and their results are fuzzed further).
    fn plausible(&mut self) -> Vec<u8> {
        let path = *self.rng.pick(ENDPOINTS);
        let name = if !self.snapshots.is_empty() && self.rng.chance(40) {
            self.rng.pick(&self.snapshots).clone()
        } else {
            self.rng.pick(REAL_NAMES).to_string()
        };
        let other = if self.rng.chance(70) {
            self.rng.pick(REAL_NAMES).to_string()
        } else {
            self.hostile_name()
        };
        let body = json!({
            "Name": name,
            "Target": other,
            "ID": "fuzz",
            "Pattern": self.rng.pick(&["1h:1d", "1m:2m"]),
            "Dryrun": self.rng.chance(50),
            "Action": self.rng.pick(&["snapshot", "purge:1h:1d", "replicate:127.0.0.1"]),
            "Timer": self.rng.pick(&["60", "0", "cron:*/5 * * * *", "pause", "resume"]),
            "Host": "127.0.0.1",
            "Hosts": ["127.0.0.1"],
            "Volumes": [name],
            "Test": true,
        })
        .to_string();
        format!(
            "POST {path} HTTP/1.1\r\nHost: plugin\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    /// One hostile request, as raw bytes, and whether the write side should
    /// be shut right after (so a lying Content-Length ends quickly).
    pub(super) fn request(&mut self) -> (Vec<u8>, bool) {
        if self.rng.chance(25) {
            return (self.plausible(), false);
        }
        let path = self.path();
        let method = if self.rng.chance(85) {
            "POST"
        } else {
            *self
                .rng
                .pick(&["GET", "PUT", "DELETE", "FOO", "post", "CONNECT"])
        };
        let body: Vec<u8> = match self.rng.below(20) {
            0..=13 => self.body().to_string().into_bytes(),
            14 => self
                .rng
                .pick(&["[]", "42", "\"Name\"", "null", "true"])
                .as_bytes()
                .to_vec(),
            15 => b"{\"Name\": \"\xff\xfe\xc0\xaf\"}".to_vec(),
            16 => b"{\"Name\": ".to_vec(),
            17 => (0..self.rng.below(300))
                .map(|_| self.rng.next() as u8)
                .collect(),
            18 => Vec::new(),
            _ => format!("{{\"Name\": \"{}\"}}", "\\u0000".repeat(50)).into_bytes(),
        };
        let header = |len: String| {
            format!(
                "{method} {path} HTTP/1.1\r\nHost: plugin\r\nConnection: close\r\nContent-Length: {len}\r\n\r\n"
            )
            .into_bytes()
        };
        match self.rng.below(100) {
            0..=69 => {
                let mut out = header(body.len().to_string());
                out.extend_from_slice(&body);
                (out, false)
            }
            // Content-Length larger than the body, then EOF.
            70..=76 => {
                let mut out = header((body.len() + 1 + self.rng.below(5000)).to_string());
                out.extend_from_slice(&body);
                (out, true)
            }
            // Smaller: the rest is read as a (garbage) next request.
            77..=82 => {
                let mut out = header((body.len() / 2).to_string());
                out.extend_from_slice(&body);
                (out, false)
            }
            // Garbage Content-Length values.
            83..=85 => {
                let len = self
                    .rng
                    .pick(&["-1", "abc", "99999999999999999999999", "1, 2", "0x10", ""])
                    .to_string();
                let mut out = header(len);
                out.extend_from_slice(&body);
                (out, true)
            }
            // Garbage request lines and headers.
            86..=91 => {
                let garbage: Vec<u8> = match self.rng.below(5) {
                    0 => (0..self.rng.below(200)).map(|_| self.rng.next() as u8).collect(),
                    1 => b"GET\r\n\r\n".to_vec(),
                    2 => format!("POST {path} HTTP/9.9\r\n\r\n").into_bytes(),
                    3 => format!("POST {path} HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\n{{}}").into_bytes(),
                    _ => {
                        let mut out = format!("POST {path}\0 HTTP/1.1\r\nX: ").into_bytes();
                        out.extend_from_slice(b"\xff\xfe\r\n\r\n");
                        out
                    }
                };
                let mut out = garbage;
                out.extend_from_slice(b"\r\n\r\n");
                (out, true)
            }
            // Chunked, sometimes broken.
            92..=96 => {
                let mut out = format!(
                    "{method} {path} HTTP/1.1\r\nHost: plugin\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n"
                )
                .into_bytes();
                if self.rng.chance(50) {
                    out.extend_from_slice(format!("{:x}\r\n", body.len()).as_bytes());
                    out.extend_from_slice(&body);
                    out.extend_from_slice(b"\r\n0\r\n\r\n");
                } else {
                    out.extend_from_slice(b"zz\r\nnot hex\r\n");
                }
                (out, true)
            }
            // Oversized body (over the 1 MiB cap).
            97 => {
                let big = vec![b' '; buttervolume::server::MAX_BODY + 10];
                let mut out = header(big.len().to_string());
                out.extend_from_slice(&big);
                (out, false)
            }
            // A huge header.
            _ => {
                let mut out = format!("POST {path} HTTP/1.1\r\nX-Big: ").into_bytes();
                out.extend(std::iter::repeat_n(b'a', 500_000));
                out.extend_from_slice(b"\r\n\r\n");
                (out, true)
            }
        }
    }
}
