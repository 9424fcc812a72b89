#!/usr/bin/env bash
# A real single-machine SLURM cluster for the tests: munge, slurmctld, and one slurmd per
# emulated node (node1 … nodeN on 127.0.0.1, each with its own port, spool and log), Debian's
# slurm-wlm 22.05. Needs root. State, config and logs in $ARL_SLURM_DIR (default
# /tmp/arl-slurm); clients must export SLURM_CONF=$ARL_SLURM_DIR/slurm.conf.
#
#   cluster/slurm/local-cluster.sh install      # apt packages (idempotent)
#   cluster/slurm/local-cluster.sh start [N]    # N emulated nodes (default 2); waits until idle
#   cluster/slurm/local-cluster.sh stop
set -euo pipefail
dir=${ARL_SLURM_DIR:-/tmp/arl-slurm}
conf=$dir/slurm.conf

install_packages() {
  if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    apt-get install -y -q slurm-wlm slurm-client munge >/dev/null ||
      { apt-get update -q >/dev/null && apt-get install -y -q slurm-wlm slurm-client munge >/dev/null; }
  fi
}

stop() {
  for pid_file in "$dir"/*.pid; do
    [ -e "$pid_file" ] || continue
    kill "$(cat "$pid_file")" 2>/dev/null || true
    rm -f "$pid_file"
  done
}

start() {
  local nodes=${1:-2}
  install_packages
  stop
  mkdir -p "$dir/state" "$dir/log"
  # munge: its key comes with the package; the daemon runs as user munge.
  if [ ! -e /etc/munge/munge.key ]; then
    mungekey --create
    chown munge:munge /etc/munge/munge.key
  fi
  install -d -o munge -g munge /run/munge
  if ! pgrep -x munged >/dev/null; then
    runuser -u munge -- /usr/sbin/munged
  fi
  local host
  host=$(hostname -s)
  {
    cat <<EOF
ClusterName=arl-test
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=16817
SlurmdPort=16818
SlurmUser=root
AuthType=auth/munge
AuthInfo=cred_expire=5
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0,sched_interval=2,bf_interval=1
EnforcePartLimits=ALL
SlurmdParameters=config_overrides
MpiDefault=none
MailProg=/bin/true
KillWait=5
ReturnToService=2
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool-%n
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd-%n.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd-%n.log
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
EOF
    for i in $(seq 1 "$nodes"); do
      echo "NodeName=node$i NodeHostname=$host NodeAddr=127.0.0.1 Port=$((16900 + i)) CPUs=8 State=UNKNOWN"
    done
    echo "PartitionName=debug Nodes=node[1-$nodes] Default=YES MaxTime=INFINITE State=UP"
  } >"$conf"
  # The emulated nodes' names, for the launchers' rendezvous host.
  for i in $(seq 1 "$nodes"); do
    grep -q "^127.0.0.1 node$i\$" /etc/hosts || echo "127.0.0.1 node$i" >>/etc/hosts
  done
  slurmctld -f "$conf"
  for i in $(seq 1 "$nodes"); do
    mkdir -p "$dir/spool-node$i"
    slurmd -f "$conf" -N "node$i"
  done
  export SLURM_CONF=$conf
  for _ in $(seq 1 100); do
    if [ "$(sinfo -h -o '%T' | sort -u)" = "idle" ]; then
      echo "slurm: $nodes nodes idle (SLURM_CONF=$conf)"
      return
    fi
    sleep 0.2
  done
  echo "slurm: the nodes did not become idle:" >&2
  sinfo >&2 || true
  tail -20 "$dir/log/slurmctld.log" >&2 || true
  exit 1
}

case ${1:-} in
  install) install_packages ;;
  start) start "${2:-2}" ;;
  stop) stop ;;
  *)
    echo "usage: $0 install | start [NODES] | stop" >&2
    exit 2
    ;;
esac
