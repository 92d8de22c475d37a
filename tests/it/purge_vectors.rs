//! The purge rules against the references' own vectors, as pure functions
//! (fast, no root): `tests/data/purge-vectors.json` (300 cases from
//! buttervolume 3.13's `compute_purges`: the `age` rule) and
//! `tests/data/purge-vectors-upstream-master.json` (300 cases from upstream
//! master's `compute_purges` and pattern parser: the `calendar` rule, and
//! counted or single-step patterns in either mode). The same vectors
//! replay through the API on real snapshots in tests/purge_replay.rs.

use std::collections::BTreeSet;

use buttervolume::config::PurgeTimeframes;
use buttervolume::names::parse_timestamp;
use buttervolume::purge::{compute_purges, plan, Candidate, Pattern};
use serde_json::Value;

fn cases(file: &str) -> (String, Vec<Value>) {
    let path = format!("{}/tests/data/{file}", env!("CARGO_MANIFEST_DIR"));
    let data: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let cases = data["cases"].as_array().unwrap().clone();
    assert_eq!(cases.len(), 300);
    (data["dtformat"].as_str().unwrap().to_string(), cases)
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

fn mismatch(i: usize, case: &Value, expected: &BTreeSet<String>, got: &BTreeSet<String>) -> String {
    format!(
        "case {i} ({}): missing {:?}, extra {:?}",
        case["pattern"],
        expected.difference(got).collect::<Vec<_>>(),
        got.difference(expected).collect::<Vec<_>>()
    )
}

#[test]
fn every_313_vector_gives_the_same_purged_set_in_age_mode() {
    let (dtformat, cases) = cases("purge-vectors.json");
    let mut failures = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let now = parse_timestamp(case["now"].as_str().unwrap(), &dtformat).unwrap();
        let pattern = Pattern::parse(case["pattern"].as_str().unwrap()).unwrap();
        let expected: BTreeSet<String> = strings(&case["purged"]).into_iter().collect();
        let got: BTreeSet<String> = compute_purges(
            &strings(&case["snapshots"]),
            &pattern,
            PurgeTimeframes::Age,
            now,
            &dtformat,
        )
        .into_iter()
        .collect();
        if got != expected {
            failures.push(mismatch(i, case, &expected, &got));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Whether 3.13 has this pattern: uncounted, two components or more.
/// Those follow `PURGE_TIMEFRAMES`; every other pattern is master's.
fn is_313s(pattern: &str) -> bool {
    !pattern.contains('/') && pattern.contains(':')
}

#[test]
fn every_upstream_master_vector_gives_the_same_purged_set() {
    let (dtformat, cases) = cases("purge-vectors-upstream-master.json");
    let mut failures = Vec::new();
    let mut replayed = [0, 0];
    for mode in [PurgeTimeframes::Calendar, PurgeTimeframes::Age] {
        for (i, case) in cases.iter().enumerate() {
            let text = case["pattern"].as_str().unwrap();
            if mode == PurgeTimeframes::Age && is_313s(text) {
                continue;
            }
            replayed[(mode == PurgeTimeframes::Age) as usize] += 1;
            let refused = case["refused"].as_bool().unwrap();
            let pattern = match Pattern::parse(text) {
                Ok(p) if !refused => p,
                Err(_) if refused => continue,
                Ok(_) => {
                    failures.push(format!("case {i}: {text:?} accepted"));
                    continue;
                }
                Err(e) => {
                    failures.push(format!("case {i}: {e}"));
                    continue;
                }
            };
            let now = parse_timestamp(case["now"].as_str().unwrap(), &dtformat).unwrap();
            // Master keeps every sent marker and its snapshot; this plugin
            // keeps the newest per host: the same here (one per host).
            let mut names = strings(&case["snapshots"]);
            names.sort();
            let candidates = Candidate::from_names(&names, &dtformat);
            let expected: BTreeSet<String> = strings(&case["purged"]).into_iter().collect();
            let got: BTreeSet<String> =
                plan(&candidates, &pattern, mode, now).into_iter().collect();
            if got != expected {
                failures.push(format!("{mode:?}: {}", mismatch(i, case, &expected, &got)));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(replayed[0], 300);
    assert!(replayed[1] > 150, "{replayed:?}");
}
