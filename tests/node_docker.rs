//! Each node of the harness can run its own Docker (`nodes.sh docker-start`):
//! a container on node 1 writes into a `btrfs` volume served by node 1's own
//! buttervolume daemon, on node 1's btrfs; node 2's dockerd is independent
//! (its own volumes, its own daemon and btrfs). Nothing of it is the host's.

mod common;

use common::nodes::Nodes;

#[test]
fn each_node_has_its_own_docker_plugin_and_btrfs() {
    let n = Nodes::up("nd", 2, "1G");
    let (one, two) = (n.name(1), n.name(2));
    n.docker_start(&one);
    n.docker_start(&two);

    n.docker(&one, &["volume", "create", "-d", "btrfs", "web"]);
    n.docker(
        &one,
        &[
            "run",
            "--rm",
            "-v",
            "web:/data",
            "bv-busybox",
            "sh",
            "-c",
            "echo from-one > /data/f",
        ],
    );
    assert_eq!(
        std::fs::read_to_string(n.data(&one).join("volumes/web/f")).unwrap(),
        "from-one\n",
        "the container's file is not on node 1's btrfs"
    );
    let inspect = n.docker(&one, &["volume", "inspect", "-f", "{{.Mountpoint}}", "web"]);
    assert_eq!(inspect, "/var/lib/buttervolume/volumes/web");

    // Node 2: its Docker knows nothing of node 1's volume ...
    let ls = n.docker(&two, &["volume", "ls", "-q"]);
    assert!(!ls.lines().any(|l| l == "web"), "{ls}");
    assert!(!n.data(&two).join("volumes/web").exists());
    // ... and works on its own: same name, its own daemon and btrfs.
    n.docker(&two, &["volume", "create", "-d", "btrfs", "web"]);
    let read = n.docker(
        &two,
        &[
            "run",
            "--rm",
            "-v",
            "web:/data",
            "bv-busybox",
            "sh",
            "-c",
            "echo from-two > /data/f; cat /data/f",
        ],
    );
    assert_eq!(read, "from-two");
    assert_eq!(
        std::fs::read_to_string(n.data(&one).join("volumes/web/f")).unwrap(),
        "from-one\n"
    );

    for node in [&one, &two] {
        n.docker(node, &["volume", "rm", "web"]);
        assert!(!n.data(node).join("volumes/web").exists());
        n.docker_stop(node);
    }
}
