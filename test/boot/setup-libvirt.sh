#!/usr/bin/env bash
# Starts virtlogd and libvirtd for the VM boot tests on a machine without
# systemd as PID 1 (containers, CI). Idempotent: does nothing when both run.
# Usage: bash test/boot/setup-libvirt.sh   (as root)
set -euo pipefail
mkdir -p /run/libvirt /var/log/libvirt/qemu /var/lib/libvirt/qemu /var/lib/libvirt/images
# A daemon that died can linger as a zombie when PID 1 does not reap: count live ones only.
running() { ps -C "$1" -o stat= 2>/dev/null | grep -qv '^Z'; }
if ! running virtlogd; then
  virtlogd -d
fi
if ! running libvirtd; then
  rm -f /run/libvirtd.pid
  libvirtd -d
fi
# libvirtd answers once its socket exists; wait up to 15 s.
for _ in $(seq 1 150); do
  if virsh -c qemu:///system version >/dev/null 2>&1; then
    echo "libvirtd ready: $(virsh -c qemu:///system version | grep -i 'running hypervisor' || true)"
    exit 0
  fi
  sleep 0.1
done
echo "setup-libvirt: libvirtd did not answer on qemu:///system within 15 s" >&2
exit 1
