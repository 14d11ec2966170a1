#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, to try the Slurm recipes (examples/slurm/) on a real Slurm: Debian's
# slurm-wlm and munge, slurmctld and slurmd on localhost with this machine's CPUs, one partition "local". As root.
#
#   examples/slurm/local_cluster.sh [start]   # install (apt-get, once), write the config, start the daemons
#   examples/slurm/local_cluster.sh status    # sinfo and squeue
#   examples/slurm/local_cluster.sh stop      # cancel what is left, stop slurmd, slurmctld and munged
#
# Made for containers and VMs without systemd or usable cgroups: the daemons are started directly (no service
# manager), processes are tracked by parent pid (proctrack/linuxproc), no task or cgroup plugin, no accounting
# database. The config goes to /etc/slurm/slurm.conf (where sbatch and squeue look) with a marker line; a
# slurm.conf without that marker (a real cluster's) is never overwritten. Starting again is harmless.
set -euo pipefail

CONF=/etc/slurm/slurm.conf
MARKER="# written by examples/slurm/local_cluster.sh"
STATE=/var/spool/slurm-local  # slurmctld's state and slurmd's spool
LOGS=/var/log/slurm
MUNGE_PID=/run/munge/munged.pid

say() { echo "local_cluster: $*"; }
die() { echo "local_cluster: error: $*" >&2; exit 1; }
alive() { [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }
gone() {  # gone PID SECONDS: wait until the process has exited
  for ((i = 0; i < $2 * 2; i++)); do
    kill -0 "$1" 2>/dev/null || return 0
    sleep 0.5
  done
  return 1
}

install_packages() {
  if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null &&
     command -v munged >/dev/null; then
    return
  fi
  say "installing slurm-wlm and munge (apt-get)"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends slurm-wlm munge
}

write_config() {
  if [[ -f $CONF ]] && ! grep -qxF "$MARKER" "$CONF"; then
    die "$CONF exists and was not written by this script (a real cluster's?): leaving it alone"
  fi
  local node
  node=$(hostname -s)
  # slurmd -C: this machine's CPUs, sockets, cores, threads and memory, as slurmd itself will report them
  local hw
  hw=$(slurmd -C | head -1 | sed 's/^NodeName=[^ ]* //')
  mkdir -p /etc/slurm "$STATE/ctld" "$STATE/d" "$LOGS"
  cat > "$CONF.tmp" <<EOF
$MARKER
ClusterName=local
SlurmctldHost=$node(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# a requeued job may start again after cred_expire seconds (default 120): 10 keeps the checks short
AuthInfo=cred_expire=10
MailProg=/bin/true
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
# no systemd, no cgroups: track a job's processes by parent pid, no task plugin, no accounting
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
SchedulerType=sched/backfill
# look at pending jobs every 5 s (defaults 60 and 30): a requeued job starts soon after cred_expire
SchedulerParameters=sched_interval=5,bf_interval=5
# one job per CPU: two --cpus-per-task=1 tasks run side by side on a 2-CPU machine
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
DefMemPerCPU=1024
# jobs may requeue (scontrol requeue, --requeue); a restarted slurmd brings its node back
JobRequeue=1
ReturnToService=2
KillWait=30
MinJobAge=600
NodeName=$node NodeAddr=127.0.0.1 $hw State=UNKNOWN
PartitionName=local Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
  mv "$CONF.tmp" "$CONF"
}

start_munge() {
  if alive "$MUNGE_PID"; then
    return
  fi
  [[ -s /etc/munge/munge.key ]] || mungekey --create --keyfile /etc/munge/munge.key
  chown munge:munge /etc/munge/munge.key && chmod 0400 /etc/munge/munge.key
  install -d -o munge -g munge -m 0755 /run/munge
  install -d -o munge -g munge -m 0700 /var/lib/munge /var/log/munge
  runuser -u munge -- /usr/sbin/munged
  munge -n | unmunge >/dev/null || die "munge does not work (see /var/log/munge/munged.log)"
}

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...: until COMMAND succeeds
  local seconds=$1 what=$2
  shift 2
  for ((i = 0; i < seconds * 2; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  die "$what: not after ${seconds}s (see $LOGS/)"
}

node_state() { sinfo -h -N -n "$(hostname -s)" -o %T 2>/dev/null; }
node_idle() { [[ $(node_state) =~ ^(idle|mixed|allocated)$ ]]; }

start() {
  [[ $(id -u) == 0 ]] || die "run as root (it installs packages and starts daemons)"
  install_packages
  if alive /run/slurmctld.pid && alive /run/slurmd.pid && grep -qxF "$MARKER" "$CONF" 2>/dev/null; then
    say "already running"
  else
    write_config
    start_munge
    alive /run/slurmctld.pid || slurmctld
    wait_for 30 "slurmctld answering" scontrol ping
    alive /run/slurmd.pid || slurmd
  fi
  wait_for 60 "node $(hostname -s) up" node_idle
  say "up: $(sinfo -h -o '%P %D node(s) %c CPUs %T')"
}

stop() {
  if command -v squeue >/dev/null && alive /run/slurmctld.pid; then
    local ids
    ids=$(squeue -h -o %i | tr '\n' ' ')
    if [[ -n $ids ]]; then
      # a cancel sends SIGTERM to every process of a job (SIGKILL after KillWait): the runs write resume.pt
      say "cancelling the jobs left: $ids"
      scancel $ids || true
      for ((i = 0; i < 120 && $(squeue -h | wc -l) > 0; i++)); do sleep 0.5; done
    fi
  fi
  for daemon in slurmd slurmctld; do
    if alive "/run/$daemon.pid"; then
      pid=$(cat "/run/$daemon.pid")
      kill -TERM "$pid"
      gone "$pid" 30 || die "$daemon (pid $pid) did not stop"
      say "stopped $daemon"
    fi
  done
  if alive "$MUNGE_PID"; then
    pid=$(cat "$MUNGE_PID")
    kill -TERM "$pid"
    gone "$pid" 10 || die "munged (pid $pid) did not stop"
    say "stopped munged"
  fi
}

case ${1:-start} in
  start) start ;;
  stop) stop ;;
  status)
    alive /run/slurmctld.pid || { say "not running"; exit 1; }
    sinfo
    squeue
    ;;
  *) die "usage: $0 [start|stop|status]" ;;
esac
