//! The confinement rules, command by command, on made-up streams (a parent
//! snapshot given as a list of paths).

use std::collections::HashMap;

use super::*;
use crate::replication::stream::build;

/// A parent snapshot given as a list of (path, kind).
struct FakeParent(HashMap<String, Kind>, Vec<String>);

impl Inherited for FakeParent {
    fn kind(&mut self, path: &str) -> Kind {
        self.1.push(path.to_string());
        if path.is_empty() {
            return Kind::Dir;
        }
        *self.0.get(path).unwrap_or(&Kind::Missing)
    }
}

fn parent(entries: &[(&str, Kind)]) -> FakeParent {
    FakeParent(
        entries.iter().map(|(p, k)| (p.to_string(), *k)).collect(),
        Vec::new(),
    )
}

fn attrs<'a>(items: &[(u16, &'a [u8])]) -> Attributes<'a> {
    // Leak: the test data must outlive the parsed view.
    let data: &'a [u8] = Box::leak(build::attributes(items).into_boxed_slice());
    Attributes::parse(data, 1).unwrap()
}

fn run<I: Inherited>(c: &mut Confinement<I>, command: u16, items: &[(u16, &[u8])]) -> bool {
    c.check(command, &attrs(items)).is_ok()
}

#[test]
fn a_legitimate_full_stream_passes() {
    let mut c = Confinement::new(NoParent, false);
    let p = attr::PATH;
    assert!(run(&mut c, cmd::MKDIR, &[(p, b"o257-5-0")]));
    assert!(run(
        &mut c,
        cmd::RENAME,
        &[(p, b"o257-5-0"), (attr::PATH_TO, b"dir")]
    ));
    assert!(run(&mut c, cmd::MKFILE, &[(p, b"o258-5-0")]));
    assert!(run(
        &mut c,
        cmd::RENAME,
        &[(p, b"o258-5-0"), (attr::PATH_TO, b"dir/f")]
    ));
    assert!(run(
        &mut c,
        cmd::WRITE,
        &[(p, b"dir/f"), (attr::DATA, b"x")]
    ));
    assert!(run(
        &mut c,
        cmd::SYMLINK,
        &[(p, b"dir/l"), (attr::PATH_LINK, b"/etc/passwd")]
    ));
    assert!(run(&mut c, cmd::CHOWN, &[(p, b"dir/l")]));
    assert!(run(
        &mut c,
        cmd::LINK,
        &[(p, b"dir/g"), (attr::PATH_LINK, b"dir/f")]
    ));
    assert!(run(&mut c, cmd::UTIMES, &[(p, b"")]));
    assert!(run(&mut c, cmd::CHMOD, &[(p, b"dir")]));
    assert!(run(&mut c, cmd::END, &[]));
}

#[test]
fn traversal_absolute_and_nul_paths_are_refused() {
    for bad in [
        &b"../x"[..],
        b"../../volumes/db/data.txt",
        b"a/../../x",
        b"/etc/passwd",
        b"a\0b",
        b"\xff",
    ] {
        for command in [cmd::MKFILE, cmd::MKDIR, cmd::UNLINK, cmd::WRITE, cmd::CHOWN] {
            let mut c = Confinement::new(NoParent, false);
            assert!(
                !run(&mut c, command, &[(attr::PATH, bad)]),
                "{bad:?} {command}"
            );
        }
        let mut c = Confinement::new(NoParent, false);
        run(&mut c, cmd::MKFILE, &[(attr::PATH, b"f")]);
        assert!(!run(
            &mut c,
            cmd::RENAME,
            &[(attr::PATH, b"f"), (attr::PATH_TO, bad)]
        ));
        assert!(!run(
            &mut c,
            cmd::LINK,
            &[(attr::PATH, b"g"), (attr::PATH_LINK, bad)]
        ));
        assert!(!run(
            &mut c,
            cmd::CLONE,
            &[(attr::PATH, b"f"), (attr::CLONE_PATH, bad)]
        ));
    }
}

#[test]
fn nothing_goes_through_or_writes_to_a_symlink_made_by_the_stream() {
    let mut c = Confinement::new(NoParent, false);
    let p = attr::PATH;
    assert!(run(
        &mut c,
        cmd::SYMLINK,
        &[(p, b"l"), (attr::PATH_LINK, b"/root/.ssh")]
    ));
    for command in [
        cmd::MKFILE,
        cmd::WRITE,
        cmd::UNLINK,
        cmd::CHOWN,
        cmd::SET_XATTR,
    ] {
        assert!(
            !run(&mut c, command, &[(p, b"l/authorized_keys")]),
            "{command}"
        );
    }
    for command in [cmd::WRITE, cmd::TRUNCATE, cmd::CHMOD, cmd::FALLOCATE] {
        assert!(!run(&mut c, command, &[(p, b"l")]), "{command}");
    }
    // Renamed or hard-linked, it is still a symlink.
    assert!(run(
        &mut c,
        cmd::RENAME,
        &[(p, b"l"), (attr::PATH_TO, b"m")]
    ));
    assert!(!run(&mut c, cmd::WRITE, &[(p, b"m")]));
    assert!(run(
        &mut c,
        cmd::LINK,
        &[(p, b"n"), (attr::PATH_LINK, b"m")]
    ));
    assert!(!run(&mut c, cmd::MKFILE, &[(p, b"n/x")]));
    // A file is not a directory either.
    assert!(run(&mut c, cmd::MKFILE, &[(p, b"f")]));
    assert!(!run(&mut c, cmd::MKFILE, &[(p, b"f/x")]));
    // Removed and recreated as a directory: fine.
    assert!(run(&mut c, cmd::UNLINK, &[(p, b"f")]));
    assert!(run(&mut c, cmd::MKDIR, &[(p, b"f")]));
    assert!(run(&mut c, cmd::MKFILE, &[(p, b"f/x")]));
}

#[test]
fn inherited_symlinks_and_directories_are_looked_up_in_the_parent() {
    let p = attr::PATH;
    let mut c = Confinement::new(
        parent(&[
            ("data", Kind::Dir),
            ("data/f", Kind::Other),
            ("link", Kind::Symlink),
        ]),
        true,
    );
    assert!(run(&mut c, cmd::WRITE, &[(p, b"data/f")]));
    assert!(!run(&mut c, cmd::WRITE, &[(p, b"link")]));
    assert!(!run(&mut c, cmd::MKFILE, &[(p, b"link/x")]));
    assert!(!run(&mut c, cmd::MKFILE, &[(p, b"nowhere/x")]));
    // A renamed inherited directory keeps its inherited content.
    assert!(run(
        &mut c,
        cmd::RENAME,
        &[(p, b"data"), (attr::PATH_TO, b"moved")]
    ));
    assert!(run(&mut c, cmd::WRITE, &[(p, b"moved/f")]));
    assert!(!run(&mut c, cmd::WRITE, &[(p, b"data/f")]));
    // An inherited symlink renamed is still one.
    assert!(run(
        &mut c,
        cmd::RENAME,
        &[(p, b"link"), (attr::PATH_TO, b"moved/l")]
    ));
    assert!(!run(&mut c, cmd::MKFILE, &[(p, b"moved/l/x")]));
    // Each parent path is looked up once.
    let asked = &c.inherited.1;
    let mut unique = asked.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(asked.len(), unique.len(), "{asked:?}");
}

#[test]
fn one_subvolume_per_stream() {
    let mut c = Confinement::new(NoParent, false);
    assert!(!run(&mut c, cmd::SUBVOL, &[(attr::PATH, b"db@2099")]));
    assert!(!run(&mut c, cmd::SNAPSHOT, &[(attr::PATH, b"db@2099")]));
    assert!(!run(&mut c, 99, &[]));
}

#[test]
fn only_the_volumes_own_metadata_may_be_set_in_the_trusted_namespace() {
    let mut c = Confinement::new(NoParent, false);
    let (p, n) = (attr::PATH, attr::XATTR_NAME);
    assert!(run(&mut c, cmd::MKFILE, &[(p, b"f")]));
    let ours = crate::metadata::XATTR.as_bytes();
    for command in [cmd::SET_XATTR, cmd::REMOVE_XATTR] {
        assert!(run(&mut c, command, &[(p, b""), (n, ours)]));
        assert!(run(&mut c, command, &[(p, b"f"), (n, b"user.anything")]));
        assert!(run(
            &mut c,
            command,
            &[(p, b"f"), (n, b"security.capability")]
        ));
        assert!(!run(&mut c, command, &[(p, b"f"), (n, ours)]), "{command}");
        assert!(
            !run(
                &mut c,
                command,
                &[(p, b"f"), (n, b"trusted.overlay.opaque")]
            ),
            "{command}"
        );
        assert!(
            !run(&mut c, command, &[(p, b""), (n, b"trusted.other")]),
            "{command}"
        );
    }
}
