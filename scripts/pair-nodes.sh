#!/usr/bin/env bash
# Pairs this node with a peer so that this node can replicate to it:
#   scripts/pair-nodes.sh <peer> [--as NAME] [--admin-port 22] [--forced-command CMD]
# Run as root on the sending node. It
#  1. creates this node's replication key (ed25519) in the plugin's ssh dir
#     (/var/lib/buttervolume/ssh, which the managed plugin mounts as /root/.ssh)
#     unless it exists;
#  2. installs, over your normal admin SSH access to the peer (port 22), the
#     restricted line
#        command="<CMD> --peer <NAME>",restrict ssh-ed25519 AAAA... buttervolume@<this host>
#     in the peer's /var/lib/buttervolume/ssh/authorized_keys (no duplicates),
#     so this key can only run `buttervolume ssh-command` there, and reads
#     there only the volumes the peer replicates with this node (NAME: how
#     the peer's schedule names this node, `replicate:<NAME>`; default: the
#     address this node reaches the peer from);
#  3. records the peer plugin sshd's host key (port SSH_PORT, default 1122) in
#     this node's known_hosts, after showing its fingerprint.
# Run it on both nodes (each towards the other) for a two-way pair.
set -euo pipefail
peer=${1:?usage: pair-nodes.sh <peer> [--admin-port N] [--forced-command CMD]}
shift
admin_port=22
forced="/usr/bin/buttervolume ssh-command"   # path inside the managed plugin
as=
while [ $# -gt 0 ]; do
    case $1 in
        --as) as=$2; shift 2 ;;
        --admin-port) admin_port=$2; shift 2 ;;
        --forced-command) forced=$2; shift 2 ;;
        *) echo "unknown option $1" >&2; exit 1 ;;
    esac
done
ssh_dir=${BUTTERVOLUME_SSH_DATA:-/var/lib/buttervolume/ssh}
port=${SSH_PORT:-1122}

mkdir -p "$ssh_dir"; chmod 700 "$ssh_dir"
if [ ! -f "$ssh_dir/id_ed25519" ]; then
    ssh-keygen -q -t ed25519 -N "" -C "buttervolume@$(hostname)" -f "$ssh_dir/id_ed25519"
fi
if [ -z "$as" ]; then
    peer_ip=$(getent ahosts "${peer#*@}" | awk 'NR==1 {print $1}')
    as=$(ip route get "$peer_ip" 2>/dev/null | sed -n 's/.* src \([^ ]*\).*/\1/p')
    [ -n "$as" ] || { echo "cannot tell this node's address towards $peer: give it with --as NAME" >&2; exit 1; }
fi
case $as in *[!A-Za-z0-9._:-]*) echo "invalid --as $as" >&2; exit 1 ;; esac
forced="$forced --peer $as"
pub=$(cat "$ssh_dir/id_ed25519.pub")
blob=$(awk '{print $2}' <<<"$pub")
line="command=\"$forced\",restrict $pub"

# On the peer: replace any line carrying this key by the restricted one.
ssh -p "$admin_port" "root@$peer" \
    "set -e; d=$ssh_dir; mkdir -p \$d; chmod 700 \$d; f=\$d/authorized_keys; touch \$f; chmod 600 \$f;
     { grep -vF -- ' $blob' \$f || true; printf '%s\n' '$line'; } > \$f.new && mv \$f.new \$f"

# The peer plugin's sshd host key.
keys=$(ssh-keyscan -p "$port" -t ed25519 "$peer" 2>/dev/null)
[ -n "$keys" ] || { echo "no sshd answers on $peer:$port: is the plugin running there?" >&2; exit 1; }
echo "host key of [$peer]:$port:"
ssh-keygen -lf - <<<"$keys"
touch "$ssh_dir/known_hosts"
grep -vF "[$peer]:$port " "$ssh_dir/known_hosts" > "$ssh_dir/known_hosts.new" || true
printf '%s\n' "$keys" >> "$ssh_dir/known_hosts.new"
mv "$ssh_dir/known_hosts.new" "$ssh_dir/known_hosts"
echo "paired: this node can now run 'buttervolume send $peer <snapshot>'"
echo "its key reads on $peer only the volumes $peer replicates with $as (replicate:$as lines, sent markers, what this node sent)"
