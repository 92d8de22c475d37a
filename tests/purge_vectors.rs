//! The purge rule against the 300 cases produced by buttervolume 3.13
//! (`tests/data/purge-vectors.json`, a copy of shared/compat's): every case
//! must give the reference's purged set.

use std::collections::BTreeSet;

use buttervolume::names::parse_timestamp;
use buttervolume::purge::{compute_purges, Pattern};
use serde_json::Value;

#[test]
fn every_reference_vector_gives_the_same_purged_set() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/purge-vectors.json");
    let data: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let dtformat = data["dtformat"].as_str().unwrap();
    let cases = data["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 300);
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect()
    };
    let mut failures = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let now = parse_timestamp(case["now"].as_str().unwrap(), dtformat).unwrap();
        let pattern = Pattern::parse(case["pattern"].as_str().unwrap()).unwrap();
        let snapshots = strings(&case["snapshots"]);
        let expected: BTreeSet<String> = strings(&case["purged"]).into_iter().collect();
        let got: BTreeSet<String> = compute_purges(&snapshots, &pattern, now, dtformat)
            .into_iter()
            .collect();
        if got != expected {
            failures.push(format!(
                "case {i} ({}): missing {:?}, extra {:?}",
                case["pattern"],
                expected.difference(&got).collect::<Vec<_>>(),
                got.difference(&expected).collect::<Vec<_>>()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failing cases:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
