# Shared by s3.sh and azure.sh (sourced, not run): where servers are
# installed and keep their state, free ports, readiness waits and stopping.
#
# Installs go to $CAIRN_TEST_SERVERS_DIR (default ~/.cache/cairn-test-servers)
# so that they survive fresh clones on the same machine; each server's
# runtime state (pid, port, log) lives in a subdirectory "run-<name>".

SERVERS_DIR=${CAIRN_TEST_SERVERS_DIR:-$HOME/.cache/cairn-test-servers}
mkdir -p "$SERVERS_DIR"

# A TCP port on 127.0.0.1 that nothing listens on right now.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# Whether the process in pid file $1 is alive.
alive() {
    [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

# Waits up to $2 seconds until 127.0.0.1:$1 accepts connections.
wait_port() {
    local port=$1 limit=$2 waited=0
    while ! python3 -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1).close()' "$port" 2>/dev/null; do
        sleep 0.5
        waited=$((waited + 1))
        if [ "$waited" -ge $((limit * 2)) ]; then
            return 1
        fi
    done
}

# Stops the process (group) in pid file $1: SIGTERM, then SIGKILL after 5 s
# (Azurite sometimes ignores SIGTERM).
stop_pid() {
    local pidfile=$1 pid
    if ! alive "$pidfile"; then
        rm -f "$pidfile"
        return 0
    fi
    pid=$(cat "$pidfile")
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
}
