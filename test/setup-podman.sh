#!/usr/bin/env bash
# Makes podman's Docker-compatible API answer on /run/podman/podman.sock for the container
# tests, on a machine without systemd as PID 1 (containers, CI): writes containers.conf
# (runc, cgroupfs, ulimits the service may hand out) unless one exists that is not ours, and
# starts `podman system service` in the background. Idempotent: does nothing when the
# socket answers. Usage: bash test/setup-podman.sh   (as root)
# THOC_PODMAN_CONF and THOC_PODMAN_SOCK move the files (to try it without touching /etc, /run).
set -euo pipefail
conf=${THOC_PODMAN_CONF:-/etc/containers/containers.conf}
sock=${THOC_PODMAN_SOCK:-/run/podman/podman.sock}
mark="# written by thoc-node test/setup-podman.sh"

answers() { [ -S "$sock" ] && curl -sf --max-time 3 --unix-socket "$sock" http://d/_ping >/dev/null 2>&1; }
if answers; then
  echo "podman service already answers on $sock"
  exit 0
fi

# crun refuses hybrid cgroup hosts and there is no systemd to be the cgroup manager: runc +
# cgroupfs. Rootful podman asks for nofile/nproc 1048576 by default; without CAP_SYS_RESOURCE
# (a CI container) runc then fails "error setting rlimit ... operation not permitted", so the
# defaults are the service's own hard limits (podman caps its nproc at kernel.pid_max).
if [ ! -e "$conf" ] || grep -qF "$mark" "$conf"; then
  nofile=$(ulimit -Hn); [ "$nofile" = unlimited ] || [ "$nofile" -gt 1048576 ] && nofile=1048576
  nproc=$(ulimit -Hu); pidmax=$(cat /proc/sys/kernel/pid_max 2>/dev/null || echo 32768)
  { [ "$nproc" = unlimited ] || [ "$nproc" -gt "$pidmax" ]; } && nproc=$pidmax
  mkdir -p "$(dirname "$conf")"
  cat > "$conf" <<EOF
$mark
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
[engine]
cgroup_manager = "cgroupfs"
runtime = "runc"
events_logger = "file"
EOF
  echo "setup-podman: wrote $conf (nofile=$nofile nproc=$nproc)"
else
  echo "setup-podman: keeping $conf (not written by this script)"
fi

mkdir -p "$(dirname "$sock")"
rm -f "$sock"
log=${TMPDIR:-/tmp}/thoc-podman-service.log
# --time=0: never exit for idleness. setsid: not in the caller's process group (CI's shell).
# From /: conmon starts each container in the service's working directory, and a checkout or
# worktree removed later (CI's temp clone) fails every start with "Failed to get working directory".
(cd / && CONTAINERS_CONF="$conf" exec setsid podman system service --time=0 "unix://$sock" >"$log" 2>&1 < /dev/null) &
for _ in $(seq 1 200); do
  if answers; then
    echo "podman service ready on $sock: $(podman --version)"
    exit 0
  fi
  sleep 0.1
done
echo "setup-podman: podman system service did not answer on $sock within 20 s; its log ($log):" >&2
tail -20 "$log" >&2 || true
exit 1
