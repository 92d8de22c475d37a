//! Each node of the harness can run its own Docker (`nodes.sh docker-start`):
//! a container on node 1 writes into a `btrfs` volume served by node 1's own
//! buttervolume daemon, on node 1's btrfs; node 2's dockerd is independent
//! (its own volumes, its own daemon and btrfs). Nothing of it is the host's.

use testkit::nodes::Nodes;

#[test]
fn each_node_has_its_own_docker_plugin_and_btrfs() {
    let n = Nodes::up("nd", 2, "1G");
    let (one, two) = (n.name(1), n.name(2));
    n.docker_start(&one);
    n.docker_start(&two);
    let (docker_one, docker_two) = (n.dockerd(&one), n.dockerd(&two));

    docker_one.docker(&["volume", "create", "-d", "btrfs", "web"]);
    docker_one.in_container("web", "echo from-one > /data/f");
    assert_eq!(
        std::fs::read_to_string(n.data(&one).join("volumes/web/f")).unwrap(),
        "from-one\n",
        "the container's file is not on node 1's btrfs"
    );
    let inspect = docker_one.docker(&["volume", "inspect", "-f", "{{.Mountpoint}}", "web"]);
    assert_eq!(inspect, "/var/lib/buttervolume/volumes/web");

    // Node 2: its Docker knows nothing of node 1's volume ...
    let ls = docker_two.docker(&["volume", "ls", "-q"]);
    assert!(!ls.lines().any(|l| l == "web"), "{ls}");
    assert!(!n.data(&two).join("volumes/web").exists());
    // ... and works on its own: same name, its own daemon and btrfs.
    docker_two.docker(&["volume", "create", "-d", "btrfs", "web"]);
    let read = docker_two.in_container("web", "echo from-two > /data/f; cat /data/f");
    assert_eq!(read, "from-two");
    assert_eq!(
        std::fs::read_to_string(n.data(&one).join("volumes/web/f")).unwrap(),
        "from-one\n"
    );

    for (node, docker) in [(&one, &docker_one), (&two, &docker_two)] {
        docker.docker(&["volume", "rm", "web"]);
        assert!(!n.data(node).join("volumes/web").exists());
        n.docker_stop(node);
    }
}
