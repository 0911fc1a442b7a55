#!/bin/sh
# Builds a Debian package of cairn with dpkg-deb alone (no cargo-deb or
# debhelper needed): /usr/bin/cairn, a commented default configuration at
# /etc/cairn/cairn.toml (mode 0600, a conffile: upgrades keep your edits),
# the state directory /var/lib/cairn (0700) and the documentation.
#
#   scripts/build-deb.sh [--binary FILE] [--out DIR]
#
# --binary FILE  package this binary instead of building a release one
# --out DIR      write cairn_<version>_<arch>.deb there (default: target/deb)
#
# Install with `apt install ./cairn_<version>_<arch>.deb`; remove with
# `apt remove cairn` (keeps /etc/cairn) or `apt purge cairn`. Schedules are
# made per job with `cairn schedule install JOB`, as after scripts/install.sh.
set -eu

usage() {
    sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
}

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
binary=""
out="$top/target/deb"
while [ $# -gt 0 ]; do
    case "$1" in
        --binary) [ $# -ge 2 ] || { echo "build-deb.sh: --binary needs a file" >&2; exit 2; }
                  binary=$2; shift 2 ;;
        --binary=*) binary=${1#--binary=}; shift ;;
        --out) [ $# -ge 2 ] || { echo "build-deb.sh: --out needs a directory" >&2; exit 2; }
               out=$2; shift 2 ;;
        --out=*) out=${1#--out=}; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "build-deb.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
done
for tool in dpkg-deb dpkg; do
    command -v "$tool" >/dev/null || {
        echo "build-deb.sh: $tool is missing: run this on Debian or Ubuntu (apt-get install dpkg)" >&2
        exit 1
    }
done

if [ -z "$binary" ]; then
    (cd "$top" && cargo build --release --locked -p cairn)
    binary="$top/target/release/cairn"
fi
if [ ! -f "$binary" ] || [ ! -x "$binary" ]; then
    echo "build-deb.sh: $binary is not an executable file" >&2
    exit 1
fi

version=$(sed -n '/^version = "/{s/^version = "\(.*\)"$/\1/p;q}' "$top/Cargo.toml")
[ -n "$version" ] || { echo "build-deb.sh: no version in $top/Cargo.toml" >&2; exit 1; }
arch=$(dpkg --print-architecture)

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
chmod 0755 "$stage"
install -D -m 0755 "$binary" "$stage/usr/bin/cairn"
# Debian ships binaries without debug information (a release build has
# none; a debug build loses some 200 MB).
if command -v strip >/dev/null; then
    strip --strip-debug "$stage/usr/bin/cairn"
fi
install -d -m 0700 "$stage/etc/cairn" "$stage/var/lib/cairn"
install -m 0600 "$here/default-config.toml" "$stage/etc/cairn/cairn.toml"
doc="$stage/usr/share/doc/cairn"
install -d -m 0755 "$doc"
install -m 0644 "$top/README.md" "$top/docs/jobs.md" "$doc/"
cat > "$doc/copyright" <<COPYRIGHT
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: cairn

Files: *
License: Apache-2.0
 On Debian systems the full text of the license is in
 /usr/share/common-licenses/Apache-2.0.
COPYRIGHT
chmod 0644 "$doc/copyright"

install -d -m 0755 "$stage/DEBIAN"
size=$(du -sk "$stage" | cut -f1)
# What the binary links dynamically (TLS and SSH crypto are built in).
cat > "$stage/DEBIAN/control" <<CONTROL
Package: cairn
Version: $version
Section: admin
Priority: optional
Architecture: $arch
Depends: libc6, libgcc-s1, zlib1g
Installed-Size: $size
Maintainer: cairn developers <cairn@invalid>
Description: backup agent for guest VMs: disks and files, deduplicated and encrypted
 cairn backs up whole disks (block level) and file trees into a repository
 on a mounted share, SFTP, S3-compatible storage or Azure Blob Storage,
 with content-defined chunking, deduplication, zstd and AES-256-GCM.
 Jobs from /etc/cairn/cairn.toml run from a systemd timer or cron
 (cairn schedule install JOB).
CONTROL
echo "/etc/cairn/cairn.toml" > "$stage/DEBIAN/conffiles"
chmod 0644 "$stage/DEBIAN/control" "$stage/DEBIAN/conffiles"

mkdir -p "$out"
deb="$out/cairn_${version}_${arch}.deb"
dpkg-deb --root-owner-group --build "$stage" "$deb" >/dev/null
echo "$deb"
