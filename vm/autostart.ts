/**
 * Autostart: once per agent process, as soon as libvirt answers, the VMs that
 * were meant to run (record.desired "running": created or started through the
 * API and not stopped by `vm stop` since) but whose domain is not running are
 * started again, unless created with --no-autostart. That is what makes VMs
 * survive a host reboot, a host crash, or a kill of their QEMU while the agent
 * was away. The agent does it rather than libvirt's own autostart flag
 * (docs/vms.md, "Autostart"): a start through the agent sets up the VM's VLAN,
 * can be vetoed by the cluster (a VM deleted with --force while this node was
 * down), and is logged, evented and shown in `vm show` in one place.
 */
import { ThocError } from "../errors/index.js";
import type { VmManager, VmRecord } from "./manager.js";
import { autostartOf } from "./spec.js";

/**
 * Starts at once: a host that comes back with many VMs boots them a few at a
 * time rather than all together (QEMU start-up and guest boots compete for
 * the same CPUs and disks; 2 cores here). Proxmox starts its onboot guests
 * one by one; a few in parallel keeps a big host from taking minutes.
 */
export const AUTOSTART_CONCURRENCY = 4;

export interface AutostartOutcome {
  vm: string;
  outcome: "started" | "failed" | "vetoed";
  /** The failure or the veto's reason. */
  reason?: string;
  /** From the VM's turn to its outcome; checkMs of it waiting for the veto (the cluster's tables). */
  ms: number;
  checkMs: number;
}

export interface AutostartOptions {
  concurrency?: number;
  /**
   * Why a VM must not start on this node although its record wants it to
   * (the scheduler: deleted with --force while this node was down), or
   * undefined to start it. A veto that throws vetoes nothing.
   */
  veto?: (r: VmRecord) => Promise<string | undefined>;
  log?: { info(o: object, m: string): void; warn(o: object, m: string): void };
  /** Each VM's outcome as it happens (the subsystem publishes failures as events). */
  onOutcome?: (o: AutostartOutcome) => void;
}

/**
 * A VM the agent starts at its start: meant to run, autostart on, and its
 * domain shut off (reconcile has just read libvirt's state into the record).
 * A missing domain cannot be started, a paused or running one needs nothing.
 */
export function wantsAutostart(r: VmRecord): boolean {
  return r.desired === "running" && autostartOf(r.spec) && (r.status === "stopped" || r.status === "crashed");
}

/** Starts every VM that wantsAutostart, at most `concurrency` at a time; never throws. */
export async function autostartVms(m: VmManager, o: AutostartOptions = {}): Promise<AutostartOutcome[]> {
  const queue = (await m.list()).filter(wantsAutostart);
  const outcomes: AutostartOutcome[] = [];
  if (!queue.length) return outcomes;
  o.log?.info({ vms: queue.map((r) => r.name) }, "autostart: starting the VMs that were running when this agent or its host stopped");
  const one = async (r: VmRecord): Promise<AutostartOutcome> => {
    const t0 = Date.now();
    const why = await o.veto?.(r).catch((err: unknown) => { o.log?.warn({ err, vm: r.name }, "autostart: the cluster check failed; starting anyway"); return undefined; });
    const checkMs = Date.now() - t0;
    if (why) return { vm: r.name, outcome: "vetoed", reason: why, ms: checkMs, checkMs };
    // The record may have changed since the listing (a user's stop or delete meanwhile): look again.
    const now = await m.get(r.name).catch(() => undefined);
    if (!now || !wantsAutostart(now)) return { vm: r.name, outcome: "vetoed", reason: now ? `no longer wanted (status ${now.status}, desired ${now.desired ?? "unset"})` : "deleted meanwhile", ms: Date.now() - t0, checkMs };
    try {
      await m.startVm(r.name, { by: "autostart" });
      return { vm: r.name, outcome: "started", ms: Date.now() - t0, checkMs };
    } catch (err) {
      const e = ThocError.from(err);
      // Another operation holds the VM (a user's start or delete right at the agent's start): it decides, not autostart.
      if (e.code === "aborted") return { vm: r.name, outcome: "vetoed", reason: e.message, ms: Date.now() - t0, checkMs };
      const reason = e.message;
      await m.noteAutostartError(r.name, `${new Date().toISOString()}: ${reason}`).catch(() => {});
      return { vm: r.name, outcome: "failed", reason, ms: Date.now() - t0, checkMs };
    }
  };
  const workers = Array.from({ length: Math.max(1, Math.min(o.concurrency ?? AUTOSTART_CONCURRENCY, queue.length)) }, async () => {
    for (let r = queue.shift(); r; r = queue.shift()) {
      const out = await one(r);
      outcomes.push(out);
      if (out.outcome === "started") o.log?.info({ vm: out.vm, ms: out.ms, checkMs: out.checkMs }, "autostart: VM started");
      else if (out.outcome === "vetoed") o.log?.info({ vm: out.vm, reason: out.reason }, "autostart: VM not started");
      else o.log?.warn({ vm: out.vm, err: out.reason }, "autostart: VM failed to start (vm show says why; vm start retries)");
      try { o.onOutcome?.(out); } catch { /* a listener's failure is not the VM's */ }
    }
  });
  await Promise.all(workers);
  return outcomes;
}
