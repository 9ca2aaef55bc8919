#!/usr/bin/env bash
# slurm-local.sh start|stop|status: a real one-node Slurm on this machine, for CI and for trying
# the slurm/ scripts by hand (docs/slurm.md). Needs root (CI runs as root).
#   start: installs Debian's slurm-wlm and munge if missing, starts munged (with a fresh key if
#          none exists), writes slurm.conf and all state/spool/log/pid files under $SLURM_LOCAL_DIR
#          (default /tmp/gptoss-slurm), starts slurmctld and slurmd, waits until sinfo shows the node
#          idle, and prints the one line to use it:   export SLURM_CONF=<dir>/slurm.conf
#   stop:  stops slurmd, slurmctld (and munged if this script started it) by their pid files.
#   status: sinfo/squeue against that conf.
# The node is this host with all its CPUs, partition "debug" (default) with OverSubscribe=FORCE,
# so `srun -n 3 -O --mpi=pmix ...` runs 3 ranks even on 2 cores. KillOnBadExit=1: a rank that
# fails or dies ends its whole job step.
set -euo pipefail
dir=${SLURM_LOCAL_DIR:-/tmp/gptoss-slurm}
conf=$dir/slurm.conf
cmd=${1:-}

log() { echo "slurm-local: $*" >&2; }
die() { echo "slurm-local: error: $*" >&2; exit 1; }

stop_pidfile() {  # stop_pidfile FILE NAME
  local f=$1 name=$2 pid
  [ -f "$f" ] || return 0
  pid=$(cat "$f" 2>/dev/null || echo "")
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
    log "stopped $name (pid $pid)"
  fi
  rm -f "$f"
}

case "$cmd" in
start)
  [ "$(id -u)" -eq 0 ] || die "must run as root (it starts munged, slurmctld and slurmd)"
  missing=()
  for p in slurm-wlm munge; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  mkdir -p "$dir"/{state,spool,log}

  # munge: key (1024 random bytes, owner munge, mode 400), daemon as the munge user.
  if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    if [ ! -s /etc/munge/munge.key ]; then
      mkdir -p /etc/munge
      dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
      log "created /etc/munge/munge.key"
    fi
    chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    runuser -u munge -- /usr/sbin/munged
    touch "$dir/munged.ours"
    for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
    munge -n | unmunge >/dev/null 2>&1 || die "munged does not answer (see /var/log/munge/munged.log)"
    log "munged started"
  fi

  host=$(hostname -s)
  cpus=$(nproc)
  mem_mb=$(awk '/MemTotal/ { printf "%d", $2 / 1024 * 0.9 }' /proc/meminfo)
  cat >"$conf" <<CONF
# slurm.conf written by launch/slurm-local.sh: one node ($host), state under $dir.
ClusterName=gptoss-local
SlurmctldHost=$host
SlurmctldPort=${SLURM_LOCAL_CTLD_PORT:-6817}
SlurmdPort=${SLURM_LOCAL_SLURMD_PORT:-6818}
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SwitchType=switch/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
KillOnBadExit=1
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=60
NodeName=$host CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE
CONF
  export SLURM_CONF=$conf
  alive() { [ -f "$1" ] && kill -0 "$(cat "$1" 2>/dev/null)" 2>/dev/null; }
  if alive "$dir/slurmctld.pid" && alive "$dir/slurmd.pid" && scontrol ping 2>/dev/null | grep -q UP; then
    log "already running (state in $dir)"
    echo "export SLURM_CONF=$conf"
    exit 0
  fi
  stop_pidfile "$dir/slurmd.pid" slurmd
  stop_pidfile "$dir/slurmctld.pid" slurmctld
  # Another Slurm (another state folder, or the system's) answering on our port would silently
  # take our jobs: refuse.
  if scontrol ping 2>/dev/null | grep -q UP; then
    die "a slurmctld not started from $dir already answers on port ${SLURM_LOCAL_CTLD_PORT:-6817}: stop it (slurm-local.sh stop with its SLURM_LOCAL_DIR) or set SLURM_LOCAL_CTLD_PORT/SLURM_LOCAL_SLURMD_PORT"
  fi
  slurmctld -f "$conf" || die "slurmctld did not start (see $dir/log/slurmctld.log)"
  slurmd -f "$conf" || die "slurmd did not start (see $dir/log/slurmd.log)"
  sleep 0.5
  alive "$dir/slurmctld.pid" || die "slurmctld exited: $(tail -1 "$dir/log/slurmctld.log" 2>/dev/null)"
  alive "$dir/slurmd.pid" || die "slurmd exited: $(tail -1 "$dir/log/slurmd.log" 2>/dev/null)"
  state=""
  for _ in $(seq 120); do
    state=$(sinfo -h -n "$host" -o %t 2>/dev/null | head -1 || true)
    [[ "$state" == idle* || "$state" == mix* || "$state" == alloc* ]] && break
    sleep 0.25
  done
  [[ "$state" == idle* || "$state" == mix* || "$state" == alloc* ]] ||
    die "node $host is '${state:-unknown}' after 30 s (logs in $dir/log)"
  log "node $host ($cpus CPUs) is $state"
  echo "export SLURM_CONF=$conf"
  ;;
stop)
  stop_pidfile "$dir/slurmd.pid" slurmd
  stop_pidfile "$dir/slurmctld.pid" slurmctld
  if [ -f "$dir/munged.ours" ]; then
    stop_pidfile /run/munge/munged.pid munged
    rm -f "$dir/munged.ours"
  fi
  ;;
status)
  export SLURM_CONF=$conf
  sinfo && squeue
  ;;
*)
  echo "usage: slurm-local.sh start|stop|status   (state in \$SLURM_LOCAL_DIR, default /tmp/gptoss-slurm)" >&2
  exit 2
  ;;
esac
