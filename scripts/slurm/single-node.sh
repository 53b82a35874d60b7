#!/usr/bin/env bash
# A throw-away single-node Slurm cluster on this machine, for the study runner's Slurm test
# (tests/slurm.rs) and for trying `autoplan study --slurm` by hand. Debian packages, no
# systemd; runs as root; every daemon binds 127.0.0.1 and is stopped by its own PID.
#
#   scripts/slurm/single-node.sh up     installs munge and Slurm if missing, writes the
#                                       configuration under $AUTOPLAN_SLURM_DIR, starts munged,
#                                       slurmctld and slurmd, waits until the node is idle
#   scripts/slurm/single-node.sh down   stops the daemons it started (their PID files)
#
# Clients need `export SLURM_CONF=$AUTOPLAN_SLURM_DIR/etc/slurm.conf` (printed by `up`).
set -euo pipefail
dir=${AUTOPLAN_SLURM_DIR:-/tmp/autoplan-slurm}
conf=$dir/etc/slurm.conf
export SLURM_CONF=$conf

wait_for() { # seconds, command...
    local n=$(( $1 * 2 )); shift
    for _ in $(seq "$n"); do "$@" >/dev/null 2>&1 && return 0; sleep 0.5; done
    return 1
}

up() {
    local start; start=$(date +%s)
    if [[ -s $dir/run/slurmctld.pid ]] && kill -0 "$(cat "$dir/run/slurmctld.pid")" 2>/dev/null; then
        echo "slurm already up; export SLURM_CONF=$conf"; return 0
    fi
    if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            munge slurmctld slurmd slurm-client >/dev/null
    fi
    local installed; installed=$(date +%s)
    mkdir -p "$dir"/{etc,munge,state,spool,log,run}
    chmod 0700 "$dir/munge"
    if [[ ! -s $dir/munge/munge.key ]]; then
        head -c 1024 /dev/urandom >"$dir/munge/munge.key"
        chmod 0400 "$dir/munge/munge.key"
    fi
    cat >"$conf" <<CONF
ClusterName=autoplan
# Daemons bind the address of their host name (localhost: 127.0.0.1), not every interface.
CommunicationParameters=NoInAddrAny,NoCtldInAddrAny
SlurmctldHost=localhost
SlurmctldPort=${AUTOPLAN_SLURMCTLD_PORT:-6817}
SlurmdPort=${AUTOPLAN_SLURMD_PORT:-6818}
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/run/munge.sock
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MinJobAge=3600
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/run/slurmctld.daemon.pid
SlurmdPidFile=$dir/run/slurmd.daemon.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$(nproc) RealMemory=1000 State=UNKNOWN
PartitionName=main Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
    munged --key-file="$dir/munge/munge.key" --socket="$dir/run/munge.sock" \
        --pid-file="$dir/run/munged.pid" --log-file="$dir/log/munged.log" \
        --seed-file="$dir/munge/munged.seed"
    # In the foreground (-D) but in the background of this shell: $! is the daemon's PID.
    slurmctld -D -i -f "$conf" >>"$dir/log/slurmctld.out" 2>&1 &
    echo $! >"$dir/run/slurmctld.pid"
    wait_for 30 sh -c 'scontrol ping | grep -q UP' || { tail -20 "$dir"/log/slurmctld.*; exit 1; }
    slurmd -D -N localhost -f "$conf" >>"$dir/log/slurmd.out" 2>&1 &
    echo $! >"$dir/run/slurmd.pid"
    wait_for 30 sh -c '[ "$(sinfo -h -n localhost -o %T)" = idle ]' || { sinfo; tail -20 "$dir"/log/slurmd.*; exit 1; }
    echo "slurm up (install $((installed - start)) s, start $(( $(date +%s) - installed )) s); export SLURM_CONF=$conf"
}

down() {
    if scontrol ping >/dev/null 2>&1; then
        squeue -h -o %A | sort -u | xargs -r scancel || true
    fi
    for f in slurmd.pid slurmctld.pid munged.pid; do
        [[ -s $dir/run/$f ]] || continue
        local pid; pid=$(cat "$dir/run/$f")
        kill "$pid" 2>/dev/null || true
        wait_for 10 sh -c "! kill -0 $pid" || kill -9 "$pid" 2>/dev/null || true
        rm -f "$dir/run/$f"
    done
    echo "slurm down"
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
