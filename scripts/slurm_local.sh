#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for the slow tier's SLURM tests (tests/test_slurm.py) and for trying the
# SLURM launcher: slurm-wlm and munge from Debian's packages (installed when missing), one slurmctld and one slurmd
# as root, a `debug` partition with this machine's CPUs and memory.
#
#   scripts/slurm_local.sh start    # install if needed, write the config, start the daemons, wait for an idle node
#   scripts/slurm_local.sh status   # exit 0 when the node answers, else 1
#   scripts/slurm_local.sh stop     # stop the daemons this script started
#
# The config and the daemons' state live in DDPM_SLURM_DIR (/tmp/ddpm-slurm): point the clients at it with
# `export SLURM_CONF=/tmp/ddpm-slurm/slurm.conf` (the tests do so themselves). Needs root (apt-get, the daemons).
set -euo pipefail

dir="${DDPM_SLURM_DIR:-/tmp/ddpm-slurm}"
conf="$dir/slurm.conf"
export SLURM_CONF="$conf"
node="$(hostname -s)"

install() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null; then
        return
    fi
    echo "slurm_local: installing slurm-wlm and munge"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
}

write_config() {
    mkdir -p "$dir/state" "$dir/spool"
    local cpus memory
    cpus="$(nproc)"
    memory="$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)"  # MB, as slurmd measures it
    # proctrack/linuxproc and task/none: no cgroups, which containers and CI machines often lack; cons_tres with
    # CR_CPU_Memory: jobs run side by side as far as their CPUs and memory (the launcher's mem_gb) allow.
    cat >"$conf" <<EOF
ClusterName=ddpm-local
SlurmctldHost=$node(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
SchedulerType=sched/backfill
MpiDefault=none
SwitchType=switch/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
ReturnToService=2
SlurmdTimeout=60
KillWait=30
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
}

start_munge() {
    if munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
        return  # a munged is running already (the system's, or one started before)
    fi
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    [ -s /etc/munge/munge.key ] || { mungekey --create --keyfile /etc/munge/munge.key; chown munge:munge /etc/munge/munge.key; }
    runuser -u munge -- /usr/sbin/munged
    echo "munge" >"$dir/started-munge"
}

status() {
    sinfo -h -N -o '%T' 2>/dev/null | grep -qx 'idle\|mixed\|allocated'
}

start() {
    install
    if status; then
        echo "slurm_local: already running (SLURM_CONF=$conf)"
        return
    fi
    write_config
    start_munge
    # -c: a clean start, no jobs kept from an earlier cluster in the same folder
    slurmctld -c -f "$conf"
    slurmd -f "$conf"
    for _ in $(seq 60); do
        if status; then
            echo "slurm_local: node $node idle, partition debug ($(nproc) CPUs); export SLURM_CONF=$conf"
            return
        fi
        sleep 1
    done
    echo "slurm_local: the node did not come up in 60 s; the logs:" >&2
    tail -n 20 "$dir/slurmctld.log" "$dir/slurmd.log" >&2 || true
    exit 1
}

stop_pid() {
    local file="$1"
    [ -s "$file" ] || return 0
    local pid
    pid="$(cat "$file")"
    kill "$pid" 2>/dev/null || return 0
    for _ in $(seq 20); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.5
    done
    kill -9 "$pid" 2>/dev/null || true
}

stop() {
    [ -f "$conf" ] || { echo "slurm_local: not started here ($conf missing)"; return; }
    scancel --full --quiet --partition=debug 2>/dev/null || true
    stop_pid "$dir/slurmd.pid"
    stop_pid "$dir/slurmctld.pid"
    if [ -f "$dir/started-munge" ]; then
        stop_pid /run/munge/munged.pid
        rm -f "$dir/started-munge"
    fi
    echo "slurm_local: stopped"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) if status; then echo "slurm_local: running (SLURM_CONF=$conf)"; else echo "slurm_local: not running"; exit 1; fi ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
