/**
 * bridge-vlan networking. libvirt's <vlan> element only works with Open
 * vSwitch, so on a Linux bridge the tag is set the way Proxmox does it:
 *  - vlan-aware: one VLAN-aware bridge (vlan_filtering 1); after the tap
 *    exists, `bridge vlan` makes the tag the tap's PVID, untagged egress;
 *  - per-vlan-bridge: one bridge per VLAN (vmbr0v100 over bond0.100), named
 *    by vm.vlanBridgePattern; the NIC simply attaches to it.
 * Host setup is in docs/vms.md.
 */
import { createHash } from "node:crypto";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { stringify } from "yaml";
import type { NetworkSpec } from "./spec.js";

const run = promisify(execFile);

export type VlanMode = "vlan-aware" | "per-vlan-bridge";

/** The bridge the NIC attaches to. */
export function bridgeFor(net: NetworkSpec, mode: VlanMode, pattern: string): string {
  if (mode === "per-vlan-bridge" && net.vlanId) return pattern.replace("{bridge}", net.bridge).replace("{vlan}", String(net.vlanId));
  return net.bridge;
}

/** Stable tap name (Linux IFNAMSIZ: 15 chars); libvirt reserves the vnet prefix. */
export function tapName(vmName: string): string {
  return `thoc${createHash("sha256").update(vmName).digest("hex").slice(0, 10)}`;
}

/** Locally administered MAC in QEMU's 52:54:00 range, stable per VM uuid. */
export function macFor(uuid: string): string {
  const h = createHash("sha256").update(uuid).digest();
  return `52:54:00:${[h[0], h[1], h[2]].map((b) => b!.toString(16).padStart(2, "0")).join(":")}`;
}

/** The `bridge` commands that give a tap its VLAN on a VLAN-aware bridge (empty when nothing to do). */
export function vlanCommands(tap: string, net: NetworkSpec, mode: VlanMode): string[][] {
  if (net.mode !== "bridge-vlan" || !net.vlanId || mode !== "vlan-aware") return [];
  return [
    ["bridge", "vlan", "del", "dev", tap, "vid", "1"],
    ["bridge", "vlan", "add", "dev", tap, "vid", String(net.vlanId), "pvid", "untagged", "master"],
  ];
}

/** Runs vlanCommands; the first `del` may fail harmlessly when the bridge gave the tap no default VLAN. */
export async function applyVlan(tap: string, net: NetworkSpec, mode: VlanMode): Promise<void> {
  const cmds = vlanCommands(tap, net, mode);
  for (const [i, c] of cmds.entries()) {
    try {
      await run(c[0]!, c.slice(1), { timeout: 5000 });
    } catch (err) {
      if (i === 0) continue;
      throw new Error(`${c.join(" ")}: ${(err as { stderr?: string }).stderr?.trim() || (err as Error).message}`);
    }
  }
}

/** cloud-init network-config v2 for the VM's one NIC, matched by MAC. */
export function networkConfig(net: NetworkSpec, mac: string): string {
  const eth: Record<string, unknown> = { match: { macaddress: mac }, "set-name": "eth0" };
  if (net.ipMode === "static") {
    eth.addresses = [`${net.ipAddress}/${net.netmask}`];
    eth.routes = [{ to: "default", via: net.gateway }];
  } else {
    eth.dhcp4 = true;
  }
  return stringify({ version: 2, ethernets: { eth0: eth } });
}
