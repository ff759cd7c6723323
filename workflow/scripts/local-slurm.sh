#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, for testing the Slurm profile (workflow/profiles/slurm) against a
# real slurmctld and slurmd rather than a mock. Debian/Ubuntu only; needs root (it installs packages and
# writes /etc/slurm).
#
#   workflow/scripts/local-slurm.sh up       install what is missing, write the config, start the daemons
#   workflow/scripts/local-slurm.sh status   which daemons run, and the node as Slurm sees it
#   workflow/scripts/local-slurm.sh down     cancel the cluster's jobs, stop the daemons it started
#
# The cluster: one node with this machine's CPUs and memory and one stand-in GPU (no device behind it; jobs
# that ask for --gpus=1 are scheduled as GPU jobs, one at a time, and compute wherever their program decides),
# two partitions on that node, `cpu` (the default) and `gpu`, the names the Slurm profile uses, and no
# accounting database, so `sacct` does not work and job status comes from `squeue`.
#
# Exit status: 0 done; 3 this machine cannot run it (not root, no apt-get, packages not installable), which
# tests report as a skip; 1 anything else (the daemons' logs are printed).
set -euo pipefail

STATE=${LOCAL_SLURM_STATE:-/var/lib/stylelab-local-slurm}   # pid files, logs, Slurm's spool directories
NODE=stylelab-node
# The config must be in /etc/slurm: the executor plugin's job step removes SLURM_* variables (SLURM_CONF
# among them) before its nested srun, and then only the default place is searched.
CONF_DIR=/etc/slurm
MARK="# Written by stylelab's workflow/scripts/local-slurm.sh"
PACKAGES=(slurmctld slurmd slurm-client munge)

say() { echo "local-slurm: $*"; }
cannot_run() { echo "local-slurm: cannot run here: $*" >&2; exit 3; }
STARTED=""   # set once 'up' has started a daemon: a failure after that says how to stop it
fail() {
    echo "local-slurm: error: $*" >&2
    [[ -z $STARTED ]] || echo "local-slurm: '$0 down' stops what did start" >&2
    exit 1
}

# The PID in a pid file if that process is alive, else nothing.
live_pid() {
    local file=$1 pid
    [[ -s $file ]] || return 0
    pid=$(<"$file")
    if [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; then echo "$pid"; fi
}

show_logs() {
    local log
    for log in "$STATE"/slurmctld.log "$STATE"/slurmd.log /var/log/munge/munged.log; do
        [[ -s $log ]] && { echo "--- last lines of $log" >&2; tail -n 20 "$log" >&2; }
    done
    return 0
}

install_packages() {
    local missing=()
    command -v slurmctld >/dev/null || missing+=(slurmctld)
    command -v slurmd >/dev/null || missing+=(slurmd)
    command -v sbatch >/dev/null || missing+=(slurm-client)
    command -v munged >/dev/null || missing+=(munge)
    ((${#missing[@]} == 0)) && return 0
    command -v apt-get >/dev/null || cannot_run "no apt-get to install ${missing[*]} (Debian/Ubuntu only)"
    say "installing ${PACKAGES[*]}"
    # Keep the packages' own services from starting during the install (on a machine with an init system
    # they would start munged and a slurmctld without a config); policy-rc.d is how Debian says "not now".
    # Only a policy file that this script created is removed again.
    local policy=/usr/sbin/policy-rc.d made_policy=""
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && made_policy=1
    fi
    local ok=""
    export DEBIAN_FRONTEND=noninteractive
    # Wait for a package manager that is busy elsewhere rather than fail (and be skipped) at once.
    local apt=(apt-get -y -q -o DPkg::Lock::Timeout=120)
    if "${apt[@]}" install --no-install-recommends "${PACKAGES[@]}" >"$STATE/apt.log" 2>&1; then
        ok=1
    elif "${apt[@]}" update >>"$STATE/apt.log" 2>&1 \
        && "${apt[@]}" install --no-install-recommends "${PACKAGES[@]}" >>"$STATE/apt.log" 2>&1; then
        ok=1   # the package lists were stale
    fi
    [[ -n $made_policy ]] && rm -f "$policy"
    [[ -n $ok ]] || { tail -n 5 "$STATE/apt.log" >&2; cannot_run "apt-get could not install ${PACKAGES[*]} (log: $STATE/apt.log)"; }
}

write_config() {
    local host cpus mem
    host=$(hostname -s)
    # What slurmd itself detects, so the node is never configured with more than it has (it would be
    # drained as invalid).
    cpus=$(slurmd -C | sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' | head -n 1)
    mem=$(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' | head -n 1)
    [[ -n $cpus && -n $mem ]] || fail "slurmd -C did not report CPUs and RealMemory: $(slurmd -C 2>&1)"
    mkdir -p "$CONF_DIR"
    cat >"$CONF_DIR/slurm.conf" <<EOF
$MARK: a one-node test cluster.
# Removed again by 'local-slurm.sh down'. Do not edit; edit the script.
ClusterName=stylelab
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$STATE/slurmctld
SlurmdSpoolDir=$STATE/slurmd
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
# No cgroups (containers often lack them): processes are tracked through /proc and tasks are not bound.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
MpiDefault=none
MailProg=/bin/true
# No accounting database: sacct has nothing to read, job states come from slurmctld (squeue).
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
# Finished jobs stay visible to squeue for an hour: the executor plugin reads their final state from it, and
# tests read which resources each job got after the run.
MinJobAge=3600
ReturnToService=2
SlurmdTimeout=60
GresTypes=gpu
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem Gres=gpu:1 State=UNKNOWN
PartitionName=cpu Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$NODE Default=NO MaxTime=INFINITE State=UP
EOF
    # The stand-in GPU: a GPU gres needs a device file, or slurmd registers the node as invalid.
    cat >"$CONF_DIR/gres.conf" <<EOF
$MARK: one stand-in GPU with no device behind it.
Name=gpu Count=1 File=/dev/null
EOF
}

# A daemon's parent returns before the daemon has written its pid file; wait for the file (5 s at most).
wait_for_pid_file() {
    local daemon=$1 deadline=$((SECONDS + 5))
    while [[ -z $(live_pid "$STATE/$daemon.pid") ]]; do
        ((SECONDS < deadline)) || { show_logs; fail "$daemon exited right after starting"; }
        sleep 0.1
    done
}

up() {
    [[ $(uname -s) == Linux ]] || cannot_run "not Linux"
    ((EUID == 0)) || cannot_run "needs root to install packages, write $CONF_DIR and start the daemons"
    local pid
    for daemon in slurmctld slurmd; do
        pid=$(live_pid "$STATE/$daemon.pid")
        [[ -z $pid ]] || fail "$daemon is already running (pid $pid); run '$0 down' first"
    done
    local file
    for file in "$CONF_DIR/slurm.conf" "$CONF_DIR/gres.conf"; do
        if [[ -e $file ]] && ! grep -qF "$MARK" "$file"; then
            fail "$file exists and was not written by this script; not overwriting a real cluster's config"
        fi
    done
    # A fresh start: no state, jobs or logs from an earlier cluster.
    mkdir -p "$STATE"
    rm -rf "${STATE:?}/slurmctld" "${STATE:?}/slurmd" "$STATE"/*.log "$STATE"/*.pid
    mkdir -p "$STATE/slurmctld" "$STATE/slurmd"
    install_packages
    write_config

    # munged: reuse one that already answers (a system service), else start our own as the munge user.
    if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
        say "using the munged already running"
    else
        install -d -o munge -g munge -m 0755 /run/munge
        [[ -s /etc/munge/munge.key ]] || fail "no /etc/munge/munge.key (the munge package creates it)"
        STARTED=1
        runuser -u munge -- munged --pid-file=/run/munge/munged.pid \
            || { show_logs; fail "munged did not start"; }
        # munged forks into the background; remember its PID so that 'down' stops that process only.
        cp /run/munge/munged.pid "$STATE/munged.pid"
        munge -n | unmunge >/dev/null || { show_logs; fail "munged runs but does not answer"; }
    fi

    # Both daemons fork into the background and write their pid files ($STATE/*.pid, from slurm.conf).
    # -c: start from an empty state (no jobs left from an earlier cluster).
    STARTED=1
    slurmctld -c || { show_logs; fail "slurmctld did not start"; }
    wait_for_pid_file slurmctld
    slurmd -N "$NODE" || { show_logs; fail "slurmd did not start"; }
    wait_for_pid_file slurmd

    # Ready when the node has registered and is idle. A deadline in seconds, not a count of tries: each
    # query can itself wait some seconds for a controller that does not answer.
    local state="" deadline=$((SECONDS + 60))
    while ((SECONDS < deadline)); do
        [[ -n $(live_pid "$STATE/slurmctld.pid") ]] || { show_logs; fail "slurmctld stopped after starting"; }
        [[ -n $(live_pid "$STATE/slurmd.pid") ]] || { show_logs; fail "slurmd stopped after starting"; }
        state=$(timeout 5 sinfo -h -n "$NODE" -o %T 2>/dev/null | head -n 1 || true)
        [[ $state == idle ]] && break
        sleep 1
    done
    if [[ $state != idle ]]; then
        timeout 5 scontrol show node "$NODE" >&2 || true
        show_logs
        fail "node $NODE is '${state:-not known}' after 60 s, not idle"
    fi
    say "up: node $NODE idle with $(sinfo -h -n "$NODE" -o '%c CPUs, %m MB of memory, GRES %G' | head -n 1);" \
        "partitions: $(sinfo -h -o %P | tr '\n' ' ')(* = default)"
}

# Stop the process in a pid file (one this script started) and wait until it is gone.
stop_pid_file() {
    local name=$1 file=$2 pid waited=0
    pid=$(live_pid "$file")
    if [[ -z $pid ]]; then rm -f "$file"; return 0; fi
    kill -TERM "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null && ((waited < 100)); do sleep 0.1; waited=$((waited + 1)); done
    if kill -0 "$pid" 2>/dev/null; then
        say "$name (pid $pid) ignored SIGTERM for 10 s; killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$file"
    say "stopped $name (pid $pid)"
}

down() {
    ((EUID == 0)) || cannot_run "needs root to stop the daemons"
    # Jobs first, so that no job step is left running without its slurmd.
    if [[ -n $(live_pid "$STATE/slurmctld.pid") ]]; then
        local jobs waited=0
        jobs=$(squeue -h -t pending,running,suspended,completing -o %i 2>/dev/null || true)
        if [[ -n $jobs ]]; then
            say "cancelling jobs: $(echo $jobs)"
            # shellcheck disable=SC2086  # one argument per job id
            scancel $jobs || true
            while [[ -n $(squeue -h -t pending,running,suspended,completing -o %i 2>/dev/null) ]] && ((waited < 30)); do
                sleep 1
                waited=$((waited + 1))
            done
        fi
    fi
    stop_pid_file slurmd "$STATE/slurmd.pid"
    stop_pid_file slurmctld "$STATE/slurmctld.pid"
    stop_pid_file munged "$STATE/munged.pid"   # only present when 'up' started munged itself
    # Our config goes too, so nothing finds a cluster that is not there; the logs stay in $STATE.
    local file
    for file in "$CONF_DIR/slurm.conf" "$CONF_DIR/gres.conf"; do
        if [[ -e $file ]] && grep -qF "$MARK" "$file"; then rm -f "$file"; fi
    done
    say "down (logs in $STATE)"
}

status() {
    local daemon pid
    for daemon in munged slurmctld slurmd; do
        pid=$(live_pid "$STATE/$daemon.pid")
        if [[ -n $pid ]]; then echo "$daemon: running, pid $pid"; else echo "$daemon: not running (as started by this script)"; fi
    done
    if [[ -n $(live_pid "$STATE/slurmctld.pid") ]]; then sinfo -N -o '%N %T %c %m %G %P'; fi
}

case ${1:-} in
    up) up ;;
    down) down ;;
    status) status ;;
    *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
