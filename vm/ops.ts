/**
 * What a VM offers beyond its lifecycle: internal qcow2 snapshots (libvirt
 * 9.0 cannot revert external ones), the serial console, the serial log
 * virtlogd keeps, and metrics from virConnectGetAllDomainStats.
 */
import { open, stat } from "node:fs/promises";
import { ThocError } from "../errors/index.js";
import type { ConsoleStream, DomainStats, SnapshotInfo } from "../hypervisor/index.js";
import { stateToStatus, type VmManager, type VmRecord } from "./manager.js";
import { esc } from "./xml.js";

export const SNAPSHOT_NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9._-]{0,63}$/;

export async function createSnapshot(m: VmManager, vm: string, name: string, description = ""): Promise<SnapshotInfo> {
  const snap = name || `snap-${new Date().toISOString().replace(/[-:]/g, "").replace(/\..*/, "")}`;
  if (!SNAPSHOT_NAME_RE.test(snap)) throw new ThocError("invalid_argument", `snapshot name "${snap}": use 1-64 letters, digits, '.', '_' or '-'`, { field: "name" });
  return m.exclusive(vm, async (r) => {
    if ((await m.o.hv.snapshotList(r.domain)).some((s) => s.name === snap)) {
      throw new ThocError("already_exists", `VM ${vm} already has a snapshot ${snap}: pick another name or delete it first`, { snapshot: snap });
    }
    // Internal snapshot of the qcow2 overlay only: the seed ISO is read-only and has nothing to keep.
    const disks = r.spec.diskGB > 0 ? `<disks><disk name='vda' snapshot='internal'/>${r.imageKind === "disk" ? "<disk name='sda' snapshot='no'/>" : ""}</disks>` : "";
    const xml = `<domainsnapshot><name>${esc(snap)}</name><description>${esc(description)}</description>${disks}</domainsnapshot>`;
    await m.o.hv.snapshotCreate(r.domain, xml);
    const made = (await m.o.hv.snapshotList(r.domain)).find((s) => s.name === snap);
    return made ?? { name: snap, description, createdAt: Math.floor(Date.now() / 1000), state: r.status };
  });
}

export async function listSnapshots(m: VmManager, vm: string): Promise<SnapshotInfo[]> {
  const r = await m.get(vm);
  return m.o.hv.snapshotList(r.domain);
}

export async function restoreSnapshot(m: VmManager, vm: string, snap: string): Promise<VmRecord> {
  await m.exclusive(vm, async (r) => {
    if (!(await m.o.hv.snapshotList(r.domain)).some((s) => s.name === snap)) throw new ThocError("not_found", `VM ${vm} has no snapshot ${snap} (thoc-node vm snapshot list ${vm})`, { snapshot: snap });
    await m.o.hv.snapshotRevert(r.domain, snap);
  });
  return m.refreshStatus(vm);
}

export async function deleteSnapshot(m: VmManager, vm: string, snap: string): Promise<void> {
  await m.exclusive(vm, async (r) => {
    if (!(await m.o.hv.snapshotList(r.domain)).some((s) => s.name === snap)) throw new ThocError("not_found", `VM ${vm} has no snapshot ${snap} (thoc-node vm snapshot list ${vm})`, { snapshot: snap });
    await m.o.hv.snapshotDelete(r.domain, snap);
  });
}

export async function openConsole(m: VmManager, vm: string): Promise<ConsoleStream> {
  const r = await m.get(vm);
  const d = await m.o.hv.lookup(r.domain);
  if (!d || stateToStatus(d.state) !== "running") throw new ThocError("failed_precondition", `VM ${vm} is not running (${d ? d.state : "no domain"}): start it first (thoc-node vm start ${vm})`, { vm });
  return m.o.hv.openConsole(r.domain);
}

/** The serial log: what is there now (the last tailBytes), then, with follow, new bytes as they land. */
export async function* readLog(m: VmManager, vm: string, opts: { follow?: boolean; tailBytes?: number; signal?: AbortSignal }): AsyncIterable<Uint8Array> {
  await m.get(vm);
  const file = m.serialLog(vm);
  let pos = 0;
  const size = async () => (await stat(file).catch(() => undefined))?.size;
  const s0 = await size();
  if (s0 !== undefined && opts.tailBytes && s0 > opts.tailBytes) pos = s0 - opts.tailBytes;
  while (!opts.signal?.aborted) {
    const s = await size();
    if (s !== undefined && s < pos) pos = 0; // truncated: the VM was restarted with append off
    if (s !== undefined && s > pos) {
      const fh = await open(file, "r");
      try {
        while (pos < s) {
          const buf = Buffer.alloc(Math.min(64 * 1024, s - pos));
          const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
          if (!bytesRead) break;
          pos += bytesRead;
          yield buf.subarray(0, bytesRead);
        }
      } finally { await fh.close(); }
    }
    if (!opts.follow) return;
    // Following ends when the VM is deleted.
    if (!(await m.o.records.get(vm))) return;
    await new Promise((r) => setTimeout(r, 200));
  }
}

export interface VmMetricsReading extends DomainStats { cpuPercent: number; timestamp: number }

const lastCpu = new Map<string, { t: number; ns: number }>();

/** Utilisation since the previous reading of the same VM (0 on the first). */
export function withCpuPercent(s: DomainStats, now = Date.now()): VmMetricsReading {
  const prev = lastCpu.get(s.name);
  lastCpu.set(s.name, { t: now, ns: s.cpuTimeNs });
  const dt = prev ? (now - prev.t) * 1e6 : 0;
  const cpuPercent = prev && dt > 0 && s.vcpus > 0 ? Math.max(0, ((s.cpuTimeNs - prev.ns) / dt / s.vcpus) * 100) : 0;
  return { ...s, cpuPercent, timestamp: now };
}

export async function vmMetrics(m: VmManager, vm: string, timeoutMs: number): Promise<VmMetricsReading> {
  const r = await m.get(vm);
  const [s] = await m.o.hv.stats(timeoutMs, [r.domain]);
  if (!s) throw new ThocError("not_found", `libvirt has no stats for VM ${vm} (status ${r.status})`, { vm });
  return withCpuPercent(s);
}
