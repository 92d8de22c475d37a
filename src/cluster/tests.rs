//! The receiver's stale-epoch rule.
use std::collections::HashMap;

use super::*;

fn config(state: &std::path::Path) -> Config {
    let env = HashMap::from([(
        "BUTTERVOLUME_STATE_PATH".to_string(),
        state.display().to_string(),
    )]);
    Config::resolve(&env, &HashMap::new()).unwrap()
}

#[test]
fn a_receiver_refuses_a_push_whose_epoch_is_older_than_the_one_it_knows() {
    let dir = tempfile::tempdir().unwrap();
    let c = config(dir.path());
    // Pair mode: no record known here, anything lands.
    assert!(admit_push(&c, "db", None).is_ok());
    Local::of(&c)
        .learn("db", &OwnerRecord::for_test("b", 5))
        .unwrap();
    assert!(admit_push(&c, "db", Some(5)).is_ok());
    assert!(admit_push(&c, "db", Some(6)).is_ok());
    let stale = admit_push(&c, "db", Some(4)).unwrap_err();
    assert!(
        stale.contains("stale") && stale.contains("b owns it at epoch 5"),
        "{stale}"
    );
    let none = admit_push(&c, "db", None).unwrap_err();
    assert!(none.contains("without an epoch"), "{none}");
    // Another volume is not concerned.
    assert!(admit_push(&c, "web", Some(1)).is_ok());
}
