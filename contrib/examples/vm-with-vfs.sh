#!/bin/bash
# vm-with-vfs.sh: hold K VFs of a vfpool pool for a VM while a command runs, then release them.
#
#   vm-with-vfs.sh POOL VM K [-- COMMAND [ARG]...]
#
# An example of VM tooling on top of `vfpool --json` and jq. It leases K VFs to owner VM
# (all or none), prints one line per lease, runs COMMAND with the leases in its environment,
# and releases every lease with its token when it exits, whatever the reason. Without a
# COMMAND it holds the leases until SIGINT or SIGTERM.
#
# COMMAND sees:
#   VFPOOL_LEASE_IDS   lease ids, space separated, e.g. "7 8"
#   VFPOOL_VF_PCIS     the VFs' PCI addresses, e.g. "0000:85:02.0 0000:85:02.1"
#   VFPOOL_VF_MACS     the MACs applied to the VFs, in the same order
# so that, for example, a QEMU wrapper can add `-device vfio-pci,host=$pci` per VF, or run
# `vfpool vm args $VFPOOL_LEASE_IDS` for the full argv of the pool's mode.
#
# Environment: VFPOOL (the vfpool binary, default `vfpool` from PATH); VFPOOL_SIM and
# VFPOOL_DB are read by vfpool itself, so `VFPOOL_SIM=/tmp/host vm-with-vfs.sh …` works
# against a simulated host.
#
# The tokens stay in this process: they are secrets. If it is killed with SIGKILL the EXIT
# trap cannot run; the leases carry --owner-pid of this shell, so `vfpool reconcile` frees
# them once it is gone (or an admin runs `vfpool lease release --owner VM --force`).
#
# Exit status: COMMAND's, or vfpool's when the lease fails (5: pool exhausted), or 1 when a
# release fails.
set -eu

usage() {
    echo "usage: $0 POOL VM K [-- COMMAND [ARG]...]" >&2
    exit 2
}

[ $# -ge 3 ] || usage
pool=$1 vm=$2 count=$3
shift 3
if [ $# -gt 0 ]; then
    [ "$1" = "--" ] || usage
    shift
fi
case $count in '' | *[!0-9]*) usage ;; esac
VFPOOL=${VFPOOL:-vfpool}
command -v jq >/dev/null || { echo "error: $0 needs jq" >&2; exit 1; }
command -v "$VFPOOL" >/dev/null || { echo "error: $VFPOOL is not in PATH" >&2; exit 1; }

lease_ids=() tokens=() sleeper=""

release_all() {
    local status=$? i failed=0
    trap - EXIT INT TERM
    [ -z "$sleeper" ] || kill "$sleeper" 2>/dev/null || true
    for ((i = ${#lease_ids[@]} - 1; i >= 0; i--)); do
        if "$VFPOOL" lease release "${lease_ids[i]}" --token "${tokens[i]}" >/dev/null; then
            echo "released lease ${lease_ids[i]}" >&2
        else
            failed=1  # vfpool said why on stderr; the lease stays for `vfpool reconcile`
        fi
    done
    if [ "$status" -eq 0 ] && [ "$failed" -ne 0 ]; then
        status=1
    fi
    exit "$status"
}

# Set the trap before acquiring: from here on, every exit path releases what was acquired.
trap release_all EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# All K or none: a failed acquire leaves nothing to release and passes vfpool's exit code on.
json=$("$VFPOOL" lease acquire "$pool" --owner "$vm" --count "$count" --owner-pid $$ --json)

# One jq pass per field keeps the values exact (no word splitting of jq's output).
while IFS=$'\t' read -r id token; do
    lease_ids+=("$id") tokens+=("$token")
done < <(jq -r '.[] | [.id, .token] | @tsv' <<<"$json")
[ "${#lease_ids[@]}" -eq "$count" ] || { echo "error: expected $count leases" >&2; exit 1; }

jq -r '.[] | "lease=\(.id) vf=\(.vf.pci) mac=\(.mac) vlan=\(.vlan // "-")"
             + " netdev=\(.vf.netdev // "-") pf=\(.pf.pci) numa=\(.numa_node // "-")"' <<<"$json"

VFPOOL_LEASE_IDS=${lease_ids[*]}
VFPOOL_VF_PCIS=$(jq -r '[.[].vf.pci] | join(" ")' <<<"$json")
VFPOOL_VF_MACS=$(jq -r '[.[].mac] | join(" ")' <<<"$json")
export VFPOOL_LEASE_IDS VFPOOL_VF_PCIS VFPOOL_VF_MACS

if [ $# -eq 0 ]; then
    echo "holding ${#lease_ids[@]} VF(s) for $vm; stop with Ctrl-C or SIGTERM" >&2
    while :; do
        sleep 3600 &
        sleeper=$!
        wait "$sleeper" || true
    done
fi

# In the foreground, so an interactive COMMAND (QEMU -nographic) keeps the terminal.
status=0
"$@" || status=$?
exit "$status"
