#!/usr/bin/env bash
# Builds the buttervolume managed-plugin directory (config.json + rootfs/)
# without any image registry:
#
#   1. a Debian bookworm base rootfs made by mmdebstrap from the Debian mirror
#      this machine's apt uses (essential set + btrfs-progs, openssh, rsync,
#      tini), trimmed of everything only needed to install packages (perl,
#      dpkg, debconf...), of docs, man pages, locales and caches, with the ssh
#      host keys removed (`run --sshd` keeps its own on the host, in
#      /var/lib/buttervolume/state/sshd/, and writes its own sshd_config);
#      cached as plugin/cache/rootfs-<hash of the recipe>.tar so that a
#      rebuild with only a new binary takes seconds;
#   2. the release binary (cargo build --release) as /usr/bin/buttervolume.
#
# Reproducible: the base is built with a fixed SOURCE_DATE_EPOCH and packed
# with sorted names and normalized mtimes; the final rootfs gets every mtime
# set to SOURCE_DATE_EPOCH (default: the last commit's time). Same inputs
# (mirror state, package recipe, binary) give the same rootfs contents.
#
# Usage: plugin/build.sh [options]
#   -o, --output DIR    plugin directory to (re)create
#                       (default: plugin/build/buttervolume)
#   --binary PATH       use this binary instead of `cargo build --release`
#   --config PATH       manifest to use (default: config.json at the repo root)
#   --rebuild-base      ignore the cached base rootfs and build it again
#                       (use it to pick up Debian security updates)
#   --cache-dir DIR     where base rootfs tarballs are kept (plugin/cache)
#   --manifest FILE     also write a sorted listing of the rootfs (type, mode,
#                       owner, size, sha256 or link target) to FILE, to
#                       compare two builds
# Environment: MIRROR, SECURITY_MIRROR override the Debian mirrors found in
# /etc/apt/sources.list*; SOURCE_DATE_EPOCH overrides the final mtimes.
# Needs root (mmdebstrap root mode, chroot), mmdebstrap, tar, cargo.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=$repo/plugin/build/buttervolume
binary=
config=$repo/config.json
cache=$repo/plugin/cache
rebuild_base=false
manifest=

while [ $# -gt 0 ]; do
    case $1 in
        -o|--output) out=$2; shift 2 ;;
        --binary) binary=$2; shift 2 ;;
        --config) config=$2; shift 2 ;;
        --rebuild-base) rebuild_base=true; shift ;;
        --cache-dir) cache=$2; shift 2 ;;
        --manifest) manifest=$2; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
    esac
done

die() { echo "plugin/build.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root (mmdebstrap root mode, chroot)"
command -v mmdebstrap >/dev/null || die "mmdebstrap is missing: apt-get install mmdebstrap"
[ -f "$config" ] || die "no manifest at $config"
case $out in /|"$repo"|"$repo/") die "refusing to use $out as output directory" ;; esac

# ---------------------------------------------------------------------------
# The base rootfs recipe. Everything that changes its contents is in these
# variables and the two functions below: the cache key is their hash.
SUITE=bookworm
# Debian packages on top of the essential set. libbtrfsutil1 and libssl3 are
# runtime libraries of the binary (ldd target/release/buttervolume; libssh2
# is linked statically by the ssh2 crate); btrfs-progs runs `btrfs
# send/receive`; openssh-server is the plugin's sshd (`run --sshd`), so peers
# can send to this host; openssh-client brings ssh-keygen (its host key) and
# ssh for rsync; rsync for `buttervolume sync`; tini is PID 1 (reaps zombies);
# restic (a static binary) for `buttervolume backup`.
# The build checks below fail if the binary needs a library not listed here.
PACKAGES=libbtrfsutil1,libssl3,btrfs-progs,openssh-client,openssh-server,rsync,tini,restic
# Fixed epoch of the base (not the commit time, so the cache survives commits).
BASE_EPOCH=1735689600 # 2025-01-01T00:00:00Z
# Packages only needed to install or configure packages: their files go.
BUILD_ONLY_PACKAGES="perl-base dpkg debconf adduser passwd ucf init-system-helpers
    usr-is-merged runit-helper util-linux util-linux-extra sensible-utils"
# Single files and directories not needed at runtime.
TRIM_PATHS="usr/lib/x86_64-linux-gnu/gconv usr/share/perl5 usr/share/debconf
    usr/share/lintian usr/share/bug usr/share/bash-completion usr/share/man
    usr/share/info usr/share/locale usr/share/initramfs-tools usr/share/pam-configs
    usr/share/polkit-1 usr/lib/systemd usr/lib/tmpfiles.d etc/systemd etc/init.d
    etc/cron.daily etc/logrotate.d etc/apt var/lib/apt var/lib/dpkg var/cache
    var/log var/lib/ucf var/backups
    usr/bin/btrfs-convert usr/bin/btrfs-image usr/bin/btrfstune
    usr/bin/btrfs-find-root usr/bin/btrfs-map-logical usr/bin/btrfs-select-super
    usr/bin/mkfs.btrfs usr/bin/fsck.btrfs usr/bin/tini-static
    etc/ssh/ssh_host_ecdsa_key etc/ssh/ssh_host_ecdsa_key.pub
    etc/ssh/ssh_host_ed25519_key etc/ssh/ssh_host_ed25519_key.pub
    etc/ssh/ssh_host_rsa_key etc/ssh/ssh_host_rsa_key.pub"

# Prints the apt URI this machine uses for suite $1 (one-line .list or
# deb822 .sources files), or $2 when none is found.
host_mirror() {
    local uri
    uri=$(awk -v suite="$1" '
        function flush() {
            if (type ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " suite " ") && uris != "") {
                split(uris, u, " "); print u[1]; found = 1; exit
            }
            type = ""; suites = ""; uris = ""
        }
        FNR == 1 { flush() }
        /^[[:space:]]*#/ { next }
        /^deb[[:space:]]/ {
            i = 2
            if ($i ~ /^\[/) { while ($i !~ /\]$/ && i < NF) i++; i++ }
            if ($(i + 1) == suite) { print $i; found = 1; exit }
            next
        }
        /^Types:/  { $1 = ""; type = $0 }
        /^URIs:/   { $1 = ""; uris = $0 }
        /^Suites:/ { $1 = ""; suites = $0 }
        /^[[:space:]]*$/ { flush() }
        END { if (!found) flush() }
    ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
      /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
    echo "${uri:-$2}"
}
MIRROR=${MIRROR:-$(host_mirror "$SUITE" http://deb.debian.org/debian)}
SECURITY_MIRROR=${SECURITY_MIRROR:-$(host_mirror "$SUITE-security" http://deb.debian.org/debian-security)}

# mmdebstrap: essential set + PACKAGES, merged /usr without the usrmerge
# package (which would pull the whole of perl), no docs/man/locales.
build_base() { # <output tar>
    SOURCE_DATE_EPOCH=$BASE_EPOCH mmdebstrap \
        --mode=root --variant=essential --format=tar \
        --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
        --include="$PACKAGES" \
        --aptopt='Acquire::Languages "none"' \
        --aptopt='APT::Install-Recommends "false"' \
        --dpkgopt='path-exclude=/usr/share/doc/*' \
        --dpkgopt='path-include=/usr/share/doc/*/copyright' \
        --dpkgopt='path-exclude=/usr/share/man/*' \
        --dpkgopt='path-exclude=/usr/share/locale/*' \
        --dpkgopt='path-exclude=/usr/share/info/*' \
        --dpkgopt='path-exclude=/usr/share/lintian/*' \
        "$SUITE" "$1" \
        "deb $MIRROR $SUITE main" \
        "deb $MIRROR $SUITE-updates main" \
        "deb $SECURITY_MIRROR $SUITE-security main"
}

# Trims an extracted base rootfs down to what runs in the plugin.
trim_base() { # <rootfs dir>
    local root=$1 pkg list path
    # Keep a record of what went in (dpkg's database goes away below).
    mkdir -p "$root/usr/share/buttervolume"
    dpkg-query --admindir="$root/var/lib/dpkg" -W \
        -f '${Package} ${Version} ${Architecture}\n' | LC_ALL=C sort \
        >"$root/usr/share/buttervolume/packages.txt"
    for pkg in $BUILD_ONLY_PACKAGES; do
        for list in "$root/var/lib/dpkg/info/$pkg.list" "$root/var/lib/dpkg/info/$pkg:amd64.list"; do
            [ -f "$list" ] || continue
            while IFS= read -r path; do
                case $path in /usr/share/doc/*) continue ;; esac
                # Directories stay, and so do links to them (/bin -> usr/bin).
                [ -d "$root$path" ] && continue
                if [ -L "$root$path" ] || [ -f "$root$path" ]; then
                    rm -f "$root$path"
                fi
            done <"$list"
        done
    done
    for path in $TRIM_PATHS; do
        rm -rf "${root:?}/$path"
    done
    mkdir -p "$root/var/log" "$root/var/cache"
    # Dangling symlinks left by the removals (update-alternatives links and
    # links to them).
    for _ in 1 2 3; do
        chroot "$root" /usr/bin/find /usr /etc /var -xtype l -delete
    done
    # Files that mmdebstrap copied from the build host, or that Docker
    # bind-mounts over anyway: make them neutral and reproducible.
    : >"$root/etc/resolv.conf"
    echo buttervolume >"$root/etc/hostname"
    printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
    rm -f "$root/etc/machine-id" "$root/var/lib/dbus/machine-id"
    # sshd's privilege separation dir, and where Docker mounts its socket dir.
    install -d -m 755 "$root/run/sshd" "$root/run/docker/plugins"
    install -d -m 700 "$root/root"
}
# ---------------------------------------------------------------------------

# Packs a directory into a tarball with sorted names and one mtime.
pack() { # <dir> <tar> <epoch>
    tar -C "$1" --sort=name --numeric-owner --format=gnu \
        --mtime="@$3" -cf "$2" .
}

key=$( {
    echo "$SUITE $PACKAGES $BASE_EPOCH $MIRROR $SECURITY_MIRROR"
    echo "$BUILD_ONLY_PACKAGES $TRIM_PATHS"
    mmdebstrap --version
    declare -f build_base trim_base pack
} | sha256sum | cut -c1-16)
base=$cache/rootfs-$key.tar
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9

if $rebuild_base || [ ! -f "$base" ]; then
    echo "building the base rootfs ($SUITE: $PACKAGES) from $MIRROR ..." >&2
    work=$(mktemp -d "$cache/.work.XXXXXX")
    trap 'rm -rf "$work"' EXIT
    build_base "$work/mmdebstrap.tar" >"$work/mmdebstrap.log" 2>&1 \
        || { tail -n 30 "$work/mmdebstrap.log" >&2; die "mmdebstrap failed"; }
    mkdir "$work/root"
    tar -C "$work/root" --numeric-owner -xpf "$work/mmdebstrap.tar"
    trim_base "$work/root"
    pack "$work/root" "$work/base.tar" "$BASE_EPOCH"
    mv "$work/base.tar" "$base"
    rm -rf "$work"
    trap - EXIT
    # Keep the three newest bases.
    find "$cache" -maxdepth 1 -name 'rootfs-*.tar' -printf '%T@ %p\n' | sort -rn |
        tail -n +4 | cut -d' ' -f2- | xargs -r rm -f
fi

if [ -z "$binary" ]; then
    echo "building the release binary ..." >&2
    (cd "$repo" && flock /tmp/cargo.lock cargo build --release --quiet)
    binary=$repo/target/release/buttervolume
fi
[ -x "$binary" ] || die "no executable at $binary"

export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$repo" log -1 --format=%ct 2>/dev/null || echo "$BASE_EPOCH")}

rm -rf "$out"
mkdir -p "$out/rootfs"
tar -C "$out/rootfs" --numeric-owner -xpf "$base"
install -m 755 "$binary" "$out/rootfs/usr/bin/buttervolume"
install -m 644 "$config" "$out/config.json"
find "$out" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

# Every program the plugin runs must find its libraries in this rootfs
# (catches a library the new binary links and the base lacks).
loader=/usr/lib64/ld-linux-x86-64.so.2
for bin in /usr/bin/buttervolume /usr/bin/btrfs /usr/bin/ssh /usr/bin/ssh-keygen \
           /usr/sbin/sshd /usr/bin/rsync /usr/bin/tini /usr/bin/bash /usr/bin/dash; do
    libs=$(chroot "$out/rootfs" "$loader" --list "$bin" 2>&1) \
        || die "cannot load $bin in the rootfs: $libs"
    if grep -q 'not found' <<<"$libs"; then
        die "$bin misses libraries in the rootfs (add their packages to PACKAGES): $libs"
    fi
done
chroot "$out/rootfs" /usr/bin/buttervolume --version >/dev/null \
    || die "/usr/bin/buttervolume --version fails in the rootfs"

if [ -n "$manifest" ]; then
    (
        cd "$out/rootfs"
        find . -printf '%y %m %U:%G %s %T@ %p -> %l\n' | LC_ALL=C sort
        find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
    ) >"$manifest"
fi

size=$(du -sb "$out/rootfs" | cut -f1)
echo "built plugin directory $out (rootfs $((size / 1000000)) MB, base $(basename "$base"))" >&2
echo "$out"
