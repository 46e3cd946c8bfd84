# Helpers shared by testbed.sh and branch.sh (sourced, not run).

# The script's name, for its messages.
PROG=${0##*/}

die() {
    echo "$PROG: $*" >&2
    exit 1
}

check_name() {
    [[ ${1-} =~ ^[a-z0-9]{1,8}$ ]] || die "lab name must be 1-8 characters [a-z0-9], got '${1-}'"
}

ns_exists() {
    [[ -e /run/netns/$1 ]]
}

# Kills every process in namespace $1 and waits (5 s at most) until the
# kernel reports none left.
kill_ns() {
    local ns=$1 pids i
    ns_exists "$ns" || return 0
    for ((i = 0; i < 50; i++)); do
        pids=$(ip netns pids "$ns" 2>/dev/null || true)
        [[ -z $pids ]] && return 0
        # shellcheck disable=SC2086
        kill -9 $pids 2>/dev/null || true
        sleep 0.1
    done
    echo "$PROG: processes still in $ns after kill -9: $pids" >&2
}

# Runs CMD… ($3 on) in lab $1's node $2 (check_node: the script's own
# list of nodes), in place of the script.
exec_in() {
    check_name "$1"
    check_node "$2"
    local ns=$1-$2
    shift 2
    exec ip netns exec "$ns" "$@"
}
