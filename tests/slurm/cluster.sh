#!/usr/bin/env bash
# tests/slurm/cluster.sh - a one-node Slurm cluster (munged + slurmctld +
# slurmd) for the Slurm engine's integration tests (tests/integration/slurm.rs)
# and CI (.ci/run). Debian 12 (Slurm 22.05), root, no systemd needed; the
# choices are explained in docs/slurm.md.
#
#   cluster.sh [start]       install what is missing, write the config, start
#                            the daemons that are not running, wait until the
#                            node is idle, print one "OK ..." line.
#   cluster.sh stop          cancel queued/running jobs, then stop the daemons
#                            this script started (by the pids it recorded).
#   cluster.sh restart       stop, then start.
#   cluster.sh status        print daemon pids and node state; exit 0 when
#                            the cluster is usable.
#
# Environment (all optional):
#   CI_SLURM_PROCTRACK   auto (default) | cgroup | pgid | linuxproc
#                        auto = cgroup when a writable cgroup-v1 freezer is
#                        mounted, pgid otherwise.
#   CI_SLURM_WAIT        seconds to wait for each daemon / the node (60)
#   CI_SLURM_KILL_WAIT   seconds between SIGTERM and SIGKILL on scancel and
#                        at time limit (Slurm's KillWait; 5 here, 30 upstream)
#   CI_SLURM_MIN_JOB_AGE seconds a finished job stays visible to squeue and
#                        scontrol (Slurm's MinJobAge; 300 like upstream)
set -euo pipefail

readonly CONF_DIR=/etc/slurm
readonly SLURM_CONF=$CONF_DIR/slurm.conf
readonly CGROUP_CONF=$CONF_DIR/cgroup.conf
readonly LOG_DIR=/var/log/slurm
readonly CTLD_SPOOL=/var/spool/slurmctld
readonly SLURMD_SPOOL=/var/spool/slurmd
readonly MUNGE_KEY=/etc/munge/munge.key
readonly MUNGE_PIDFILE=/run/munge/munged.pid
readonly CTLD_PIDFILE=/run/slurmctld.pid
readonly SLURMD_PIDFILE=/run/slurmd.pid
# Pids of the daemons this script started; `stop` signals only these.
readonly STARTED_DIR=/run/taskpool-slurm-cluster

readonly WAIT=${CI_SLURM_WAIT:-60}
readonly KILL_WAIT=${CI_SLURM_KILL_WAIT:-5}
readonly MIN_JOB_AGE=${CI_SLURM_MIN_JOB_AGE:-300}
readonly PROCTRACK_WANTED=${CI_SLURM_PROCTRACK:-auto}

NODE=$(hostname -s)
readonly NODE

log() { printf 'cluster.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------- processes

# pid_alive PID COMM: PID is a live process whose command name is COMM.
# A zombie counts as gone: the daemons are reparented to pid 1, which may
# reap them only a while after they exit.
pid_alive() {
    local pid=$1 comm=$2 stat
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
    # /proc/PID/stat is "PID (COMM) STATE ..."; COMM may contain spaces.
    [[ ${stat#*\(} == "$comm) "* ]] || return 1
    stat=${stat##*) }
    [[ ${stat%% *} != [ZX] ]]
}

# running PIDFILE COMM: print the pid from PIDFILE if that process is COMM.
running() {
    local pid
    pid=$(cat "$1" 2>/dev/null) || return 1
    pid_alive "$pid" "$2" && printf '%s\n' "$pid"
}

# proc_running PID: PID exists and is not a zombie (whatever it is called).
proc_running() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [[ ${stat%% *} != [ZX] ]]
}

record_started() { mkdir -p "$STARTED_DIR"; printf '%s\n' "$2" >"$STARTED_DIR/$1.pid"; }

# wait_for SECONDS COMMAND...: retry COMMAND every 0.2 s until it succeeds.
wait_for() {
    local deadline=$((SECONDS + $1)); shift
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || return 1
        sleep 0.2
    done
}

# stop_pid NAME PID COMM: TERM, wait up to 20 s, then KILL.
stop_pid() {
    local name=$1 pid=$2 comm=$3 i
    pid_alive "$pid" "$comm" || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        pid_alive "$pid" "$comm" || { log "stopped $name (pid $pid)"; return 0; }
        sleep 0.2
    done
    log "$name (pid $pid) ignored SIGTERM for 20 s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
}

# ---------------------------------------------------------------- install

install_packages() {
    local missing=0 cmd
    for cmd in munged mungekey slurmctld slurmd sbatch scontrol; do
        command -v "$cmd" >/dev/null 2>&1 || [[ -x /usr/sbin/$cmd ]] || missing=1
    done
    ((missing)) || return 0
    log "installing slurm-wlm and munge (apt)"
    # Keep the packages' init scripts from starting daemons during the
    # install: this script starts them itself, with its own config.
    local policy=/usr/sbin/policy-rc.d own_policy=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod 755 "$policy"; own_policy=1
    fi
    local rc=0
    {
        DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            slurm-wlm munge
    } >"/tmp/taskpool-slurm-apt.log" 2>&1 || rc=$?
    if ((own_policy)); then rm -f "$policy"; fi
    ((rc == 0)) || { tail -n 20 /tmp/taskpool-slurm-apt.log >&2; die "apt-get failed (rc $rc)"; }
}

# ---------------------------------------------------------------- config

# A cgroup-v1 freezer hierarchy we can create directories in is what
# proctrack/cgroup needs here; Slurm 22.05's cgroup/v2 wants a delegated
# (systemd) cgroup, so a pure v2 host falls back to pgid.
cgroup_v1_freezer_usable() {
    local probe=/sys/fs/cgroup/freezer/.taskpool-slurm-probe.$$
    awk '$2 == "/sys/fs/cgroup/freezer" && $3 == "cgroup" {found=1} END {exit !found}' \
        /proc/mounts || return 1
    mkdir "$probe" 2>/dev/null || return 1
    rmdir "$probe"
}

choose_proctrack() {
    case $PROCTRACK_WANTED in
        auto) if cgroup_v1_freezer_usable; then echo cgroup; else echo pgid; fi ;;
        cgroup | pgid | linuxproc) echo "$PROCTRACK_WANTED" ;;
        *) die "CI_SLURM_PROCTRACK must be auto, cgroup, pgid or linuxproc" ;;
    esac
}

# write_if_changed FILE: replace FILE with stdin when different; status 0 if replaced.
write_if_changed() {
    local file=$1 tmp
    tmp=$(mktemp "$file.XXXXXX")
    cat >"$tmp"
    if [[ -f $file ]] && cmp -s "$tmp" "$file"; then rm -f "$tmp"; return 1; fi
    chmod 644 "$tmp"; mv -f "$tmp" "$file"
}

# Sets CPUS, MEM, PROCTRACK, and CONFIG_CHANGED=1 when a file was rewritten.
write_config() {
    local cpus mem proctrack
    CONFIG_CHANGED=0
    cpus=$(nproc)
    # A little under MemTotal so slurmd never reports less than configured.
    mem=$(awk '/^MemTotal:/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)
    proctrack=$(choose_proctrack)
    mkdir -p "$CONF_DIR" "$LOG_DIR" "$CTLD_SPOOL" "$SLURMD_SPOOL"

    if write_if_changed "$SLURM_CONF" <<EOF
# Written by tests/slurm/cluster.sh: one node, no accounting, for CI.
ClusterName=ci
SlurmctldHost=${NODE}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=${CTLD_SPOOL}
SlurmdSpoolDir=${SLURMD_SPOOL}
SlurmctldPidFile=${CTLD_PIDFILE}
SlurmdPidFile=${SLURMD_PIDFILE}
SlurmctldLogFile=${LOG_DIR}/slurmctld.log
SlurmdLogFile=${LOG_DIR}/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/${proctrack}
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
# Start queued batch jobs on the next 1 s tick instead of every ~3 s.
SchedulerParameters=batch_sched_delay=0
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
# One line per finished job, kept after MinJobAge drops it from squeue.
JobCompType=jobcomp/filetxt
JobCompLoc=${LOG_DIR}/jobcomp.log
ReturnToService=2
MinJobAge=${MIN_JOB_AGE}
KillWait=${KILL_WAIT}
InactiveLimit=0
NodeName=${NODE} NodeAddr=127.0.0.1 CPUs=${cpus} RealMemory=${mem} State=UNKNOWN
PartitionName=debug Nodes=${NODE} Default=YES MaxTime=INFINITE State=UP
EOF
    then CONFIG_CHANGED=1; fi

    if [[ $proctrack == cgroup ]]; then
        if write_if_changed "$CGROUP_CONF" <<'EOF'
# Written by tests/slurm/cluster.sh: cgroups only to track (and kill) job processes.
CgroupPlugin=cgroup/v1
CgroupAutomount=no
ConstrainCores=no
ConstrainRAMSpace=no
ConstrainSwapSpace=no
ConstrainDevices=no
EOF
        then CONFIG_CHANGED=1; fi
    fi
    CPUS=$cpus MEM=$mem PROCTRACK=$proctrack
}

munge_key() {
    if [[ ! -s $MUNGE_KEY ]]; then
        log "creating $MUNGE_KEY"
        install -d -o munge -g munge -m 0700 /etc/munge
        mungekey --create --force --keyfile="$MUNGE_KEY" 2>/dev/null ||
            dd if=/dev/urandom of="$MUNGE_KEY" bs=1 count=1024 status=none
    fi
    chown munge:munge "$MUNGE_KEY"
    chmod 0400 "$MUNGE_KEY"
}

# ---------------------------------------------------------------- daemons

munge_works() { munge -n </dev/null | unmunge >/dev/null; }
ctld_up() { scontrol ping 2>/dev/null | grep -q 'is UP'; }
queue_empty() { [[ -z $(squeue -h -o %A 2>/dev/null) ]]; }

start_munged() {
    local pid
    if pid=$(running "$MUNGE_PIDFILE" munged) && munge_works 2>/dev/null; then return 0; fi
    install -d -o munge -g munge -m 0755 /run/munge
    install -d -o munge -g munge -m 0700 /var/log/munge
    install -d -o munge -g munge -m 0711 /var/lib/munge
    runuser -u munge -- /usr/sbin/munged </dev/null >>/var/log/munge/munged.start.log 2>&1 ||
        { tail -n 5 /var/log/munge/munged.start.log >&2; die "munged did not start"; }
    wait_for "$WAIT" munge_works || die "munged does not answer (see /var/log/munge/munged.log)"
    pid=$(running "$MUNGE_PIDFILE" munged) || die "munged has no pid file"
    record_started munged "$pid"
    log "started munged (pid $pid)"
}

# start_slurm_daemon NAME PIDFILE READY-CHECK: start NAME unless running.
# Run in the foreground (-D) in a session of its own, so its pid is known at
# once and a daemon that dies during start-up is noticed at once; its log is
# $LOG_DIR/NAME.log, and anything it prints goes to $LOG_DIR/NAME.stderr.
start_slurm_daemon() {
    local name=$1 pidfile=$2 ready=$3 pid deadline why=""
    if running "$pidfile" "$name" >/dev/null; then return 0; fi
    STARTED_AT=$(date +%s)
    (cd / && exec setsid "/usr/sbin/$name" -D </dev/null >>"$LOG_DIR/$name.stderr" 2>&1) &
    pid=$!
    record_started "$name" "$pid"
    deadline=$((SECONDS + WAIT))
    until [[ $(cat "$pidfile" 2>/dev/null) == "$pid" ]] && "$ready" >/dev/null 2>&1; do
        proc_running "$pid" || why="exited"
        ((SECONDS < deadline)) || why="is not ready after ${WAIT}s"
        if [[ -n $why ]]; then
            tail -n 20 "$LOG_DIR/$name.log" "$LOG_DIR/$name.stderr" >&2 || true
            [[ $name != slurmd || $PROCTRACK != cgroup ]] ||
                log "hint: if the log shows cgroup errors, CI_SLURM_PROCTRACK=pgid avoids cgroups"
            die "$name $why (see $LOG_DIR/$name.log)"
        fi
        sleep 0.2
    done
    log "started $name (pid $pid)"
}

node_state() { sinfo -h -n "$NODE" -o %T 2>/dev/null; }
node_usable() { [[ $(node_state) =~ ^(idle|mixed|allocated)$ ]]; }
# The slurmd started at STARTED_AT (epoch s) answers RPCs, and the
# controller has heard from it: the node's SlurmdStartTime is that recent.
slurmd_registered() {
    local t
    scontrol show slurmd >/dev/null 2>&1 || return 1
    t=$(scontrol show node "$NODE" 2>/dev/null | grep -o 'SlurmdStartTime=[^ ]*') || return 1
    t=${t#*=}
    [[ $t != None ]] && (($(date -d "$t" +%s) >= STARTED_AT))
}

wait_node() {
    local deadline=$((SECONDS + WAIT)) resumed=0 state
    while ! node_usable; do
        state=$(node_state || true)
        # A node left DOWN/DRAINED by an earlier run: ask for it back once.
        if ((!resumed)) && [[ $state =~ ^(down|drain|drained|draining)\*?$ ]]; then
            scontrol update NodeName="$NODE" State=RESUME >/dev/null 2>&1 || true
            resumed=1
        fi
        if ((SECONDS >= deadline)); then
            scontrol show node "$NODE" >&2 || true
            tail -n 20 "$LOG_DIR/slurmd.log" >&2 || true
            die "node $NODE is '${state:-unknown}' after ${WAIT}s"
        fi
        sleep 0.2
    done
}

stop_recorded() {
    local name=$1 pid
    [[ -f $STARTED_DIR/$name.pid ]] || return 0
    pid=$(cat "$STARTED_DIR/$name.pid")
    stop_pid "$name" "$pid" "$name"
    rm -f "$STARTED_DIR/$name.pid"
}

cancel_all_jobs() {
    ctld_up || return 0
    local ids
    ids=$(squeue -h -o %A 2>/dev/null | tr '\n' ' ')
    [[ -n ${ids// /} ]] || return 0
    log "cancelling jobs: $ids"
    # shellcheck disable=SC2086
    scancel $ids 2>/dev/null || true
    wait_for $((KILL_WAIT + 20)) queue_empty ||
        log "jobs still listed after cancel: $(squeue -h -o '%A:%T' | tr '\n' ' ')"
}

# ---------------------------------------------------------------- commands

cmd_start() {
    local t0=$EPOCHREALTIME
    install_packages
    munge_key
    write_config
    if ((CONFIG_CHANGED)) && { running "$CTLD_PIDFILE" slurmctld || running "$SLURMD_PIDFILE" slurmd; } >/dev/null; then
        log "configuration changed; restarting slurmctld and slurmd"
        cancel_all_jobs
        local p
        if p=$(running "$SLURMD_PIDFILE" slurmd); then stop_pid slurmd "$p" slurmd; fi
        if p=$(running "$CTLD_PIDFILE" slurmctld); then stop_pid slurmctld "$p" slurmctld; fi
    fi
    start_munged
    start_slurm_daemon slurmctld "$CTLD_PIDFILE" ctld_up
    start_slurm_daemon slurmd "$SLURMD_PIDFILE" slurmd_registered
    wait_node
    printf 'OK slurm cluster: node=%s cpus=%s mem=%sM proctrack=%s state=%s (%.1fs)\n' \
        "$NODE" "$CPUS" "$MEM" "$PROCTRACK" "$(node_state)" \
        "$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN {print b - a}')"
}

cmd_stop() {
    cancel_all_jobs
    stop_recorded slurmd
    stop_recorded slurmctld
    stop_recorded munged
    local name file left=""
    for name in slurmd:$SLURMD_PIDFILE slurmctld:$CTLD_PIDFILE munged:$MUNGE_PIDFILE; do
        file=${name#*:}; name=${name%%:*}
        if running "$file" "$name" >/dev/null; then left+=" $name"; fi
    done
    if [[ -n $left ]]; then
        log "still running, not started by this script:$left"
    fi
    echo "OK slurm cluster stopped"
}

cmd_status() {
    local name file pid rc=0
    for name in munged:$MUNGE_PIDFILE slurmctld:$CTLD_PIDFILE slurmd:$SLURMD_PIDFILE; do
        file=${name#*:}; name=${name%%:*}
        if pid=$(running "$file" "$name"); then
            echo "$name: running (pid $pid)"
        else
            echo "$name: not running"; rc=1
        fi
    done
    if ctld_up; then
        sinfo -N -o '%N %T %C %m'
        node_usable || rc=1
    else
        rc=1
    fi
    return $rc
}

[[ $(id -u) == 0 ]] || die "must run as root"
case ${1:-start} in
    start) cmd_start ;;
    stop) cmd_stop ;;
    restart) cmd_stop; cmd_start ;;
    status) cmd_status ;;
    *) die "usage: $0 [start|stop|restart|status]" ;;
esac
