#!/usr/bin/env bash
# A throwaway SFTP server for cairn's tests: Debian's OpenSSH sshd run by
# this script (not by the system) on 127.0.0.1, with a host key and a user
# key generated here, in a state directory of its own.
#
#   scripts/test-servers/sftp.sh start   # install if missing, generate keys, start sshd
#   scripts/test-servers/sftp.sh env     # print the `export` lines the tests read
#   scripts/test-servers/sftp.sh stop    # stop sshd (the state directory is kept)
#   scripts/test-servers/sftp.sh clean   # stop and remove the state directory
#
# Typical use:  eval "$(scripts/test-servers/sftp.sh start)"
# (`start` prints the same lines as `env`; progress goes to stderr.)
#
# Settings (environment):
#   CAIRN_TEST_SFTP_DIR   state directory (default /tmp/cairn-test-sftp)
#   CAIRN_TEST_SFTP_PORT  TCP port on 127.0.0.1 (default 42022)
#
# Everything here is for tests only: the keys have no passphrase and live in
# the state directory, StrictModes is off (the state directory may sit under
# /tmp), and only public-key logins for the current user are accepted.
set -euo pipefail

DIR=${CAIRN_TEST_SFTP_DIR:-/tmp/cairn-test-sftp}
PORT=${CAIRN_TEST_SFTP_PORT:-42022}
USER_NAME=$(id -un)

log() { echo "sftp.sh: $*" >&2; }

install_if_missing() {
    if [ -x /usr/sbin/sshd ] && command -v ssh-keygen >/dev/null; then
        return
    fi
    log "installing openssh-server and openssh-client (apt-get)"
    if [ "$(id -u)" -ne 0 ]; then
        log "error: openssh-server is missing and installing it needs root; run: sudo apt-get install openssh-server openssh-client"
        exit 1
    fi
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server openssh-client >&2
}

running_pid() {
    local pid
    [ -f "$DIR/sshd.pid" ] || return 1
    pid=$(cat "$DIR/sshd.pid")
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
    # A stale pid file may name a process that is not our sshd any more.
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$DIR/sshd_config" || return 1
    echo "$pid"
}

print_env() {
    cat <<ENV
export CAIRN_TEST_SFTP_URL='sftp://$USER_NAME@127.0.0.1:$PORT$DIR/data'
export CAIRN_SFTP_KEY_FILE='$DIR/user_ed25519'
export CAIRN_SFTP_KNOWN_HOSTS='$DIR/known_hosts'
export CAIRN_TEST_SFTP_DIR='$DIR'
export CAIRN_TEST_SFTP_PORT='$PORT'
ENV
}

generate() {
    mkdir -p "$DIR/data"
    chmod 700 "$DIR"
    [ -f "$DIR/host_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C cairn-test-host -f "$DIR/host_ed25519"
    [ -f "$DIR/user_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C cairn-test-user -f "$DIR/user_ed25519"
    cp "$DIR/user_ed25519.pub" "$DIR/authorized_keys"
    chmod 600 "$DIR/authorized_keys"
    # The known_hosts line is written from the host key itself, so nothing
    # is trusted on first use.
    echo "[127.0.0.1]:$PORT $(cut -d' ' -f1,2 "$DIR/host_ed25519.pub")" >"$DIR/known_hosts"
    cat >"$DIR/sshd_config" <<CONF
Port $PORT
ListenAddress 127.0.0.1
HostKey $DIR/host_ed25519
PidFile $DIR/sshd.pid
AuthorizedKeysFile $DIR/authorized_keys
AllowUsers $USER_NAME
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PermitRootLogin prohibit-password
StrictModes no
AllowTcpForwarding no
X11Forwarding no
MaxStartups 64:30:128
MaxSessions 64
LogLevel ERROR
Subsystem sftp internal-sftp
CONF
}

start() {
    install_if_missing
    if pid=$(running_pid); then
        log "sshd already running (pid $pid) on 127.0.0.1:$PORT"
        print_env
        return
    fi
    generate
    # sshd's privilege separation needs this directory when run by hand.
    mkdir -p /run/sshd 2>/dev/null && chmod 755 /run/sshd 2>/dev/null || true
    /usr/sbin/sshd -t -f "$DIR/sshd_config"
    # -D: stay in the foreground (we background it), -e: log to stderr.
    /usr/sbin/sshd -D -e -f "$DIR/sshd_config" >>"$DIR/sshd.log" 2>&1 &
    local sshd_pid=$! i
    for i in $(seq 1 100); do
        kill -0 "$sshd_pid" 2>/dev/null || break # it exited: see its log
        if running_pid >/dev/null && (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
            log "sshd running (pid $(running_pid)) on 127.0.0.1:$PORT, state in $DIR"
            print_env
            return
        fi
        sleep 0.1
    done
    log "error: sshd did not start on 127.0.0.1:$PORT; its log ($DIR/sshd.log):"
    tail -n 20 "$DIR/sshd.log" >&2 || true
    exit 1
}

stop() {
    local pid i
    if ! pid=$(running_pid); then
        log "sshd is not running"
        return
    fi
    kill "$pid"
    for i in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$DIR/sshd.pid"
    log "sshd stopped"
}

case "${1:-}" in
start) start ;;
stop) stop ;;
env) print_env ;;
clean)
    stop
    rm -rf "$DIR"
    ;;
*)
    echo "usage: $0 start|stop|env|clean" >&2
    exit 2
    ;;
esac
