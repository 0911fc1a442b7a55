#!/bin/sh
# Installs cairn from a checkout: the binary to /usr/local/bin/cairn, a
# commented default configuration to /etc/cairn/cairn.toml (mode 0600, only
# if there is none) and the state directory /var/lib/cairn (0700).
#
#   scripts/install.sh [--binary FILE] [--root DIR]
#   scripts/install.sh --uninstall [--purge] [--root DIR]
#
# --binary FILE  install this binary instead of building a release one
# --root DIR     install under DIR instead of / (images, tests)
# --uninstall    remove the binary; keep the configuration and state
# --purge        with --uninstall, remove the configuration and state too
#
# Remove the jobs' schedules first (cairn schedule remove JOB): uninstalling
# leaves timers and cron entries that would run a missing binary.
set -eu

usage() {
    sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
}

root=""
binary=""
uninstall=0
purge=0
while [ $# -gt 0 ]; do
    case "$1" in
        --root) [ $# -ge 2 ] || { echo "install.sh: --root needs a directory" >&2; exit 2; }
                root=$2; shift 2 ;;
        --root=*) root=${1#--root=}; shift ;;
        --binary) [ $# -ge 2 ] || { echo "install.sh: --binary needs a file" >&2; exit 2; }
                  binary=$2; shift 2 ;;
        --binary=*) binary=${1#--binary=}; shift ;;
        --uninstall) uninstall=1; shift ;;
        --purge) purge=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "install.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
done
if [ "$purge" = 1 ] && [ "$uninstall" = 0 ]; then
    echo "install.sh: --purge goes with --uninstall" >&2
    exit 2
fi

here=$(cd "$(dirname "$0")" && pwd)
bin_dir="$root/usr/local/bin"
conf_dir="$root/etc/cairn"
state_dir="$root/var/lib/cairn"

if [ "$uninstall" = 1 ]; then
    rm -f "$bin_dir/cairn"
    echo "removed $bin_dir/cairn"
    if [ "$purge" = 1 ]; then
        rm -rf "$conf_dir" "$state_dir"
        echo "removed $conf_dir and $state_dir"
    else
        echo "kept $conf_dir and $state_dir (remove them with --uninstall --purge)"
    fi
    exit 0
fi

if [ -z "$binary" ]; then
    (cd "$here/.." && cargo build --release --locked -p cairn)
    binary="$here/../target/release/cairn"
fi
if [ ! -f "$binary" ] || [ ! -x "$binary" ]; then
    echo "install.sh: $binary is not an executable file" >&2
    exit 1
fi

mkdir -p "$bin_dir"
# A copy beside the target, then a rename: a running cairn keeps its file.
cp "$binary" "$bin_dir/.cairn.new"
chmod 0755 "$bin_dir/.cairn.new"
mv -f "$bin_dir/.cairn.new" "$bin_dir/cairn"
echo "installed $bin_dir/cairn"

mkdir -p "$conf_dir"
chmod 0700 "$conf_dir"
if [ -e "$conf_dir/cairn.toml" ]; then
    echo "kept $conf_dir/cairn.toml"
else
    (umask 077 && cp "$here/default-config.toml" "$conf_dir/cairn.toml")
    chmod 0600 "$conf_dir/cairn.toml"
    echo "wrote $conf_dir/cairn.toml (commented; declare your jobs there)"
fi

mkdir -p "$state_dir"
chmod 0700 "$state_dir"
