/**
 * `thoc-node vm ...`: VM lifecycle, snapshots, console, logs, metrics, GPUs
 * (SPEC §2). Every subcommand is one VmService call (the console a bidi stream).
 */
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import type { Command } from "commander";
import type { VmService, Vm } from "../../proto/index.js";
import { ThocError } from "../../errors/index.js";
import type { Client } from "../../rpc/index.js";
import { agentAddress, connect, globalOpts, type GlobalOpts } from "../connect.js";
import { bytes, fail, outputFormat, outputOptions, printJson, table, type OutputFormat } from "../output.js";

/** Calls that wait on a guest (create, stop) get at least this long, whatever --timeout says. */
const SLOW_MS = 180_000;
type VmClient = Client<typeof VmService.method>;
const slow = (g: GlobalOpts) => ({ timeoutMs: Math.max(Number(g.timeout ?? 10_000), SLOW_MS) });

export function vmJson(v: Vm | undefined): unknown {
  if (!v) return null;
  const s = v.spec;
  return {
    name: v.name, uuid: v.uuid, status: v.status, node: v.node, nodeId: v.nodeId || undefined, group: v.group || undefined, domain: v.domain, createdAt: new Date(Number(v.createdAtMs)).toISOString(),
    image: s?.image, imageKind: v.imageKind, vcpus: s?.vcpus, ramMB: s?.ramMb, diskGB: s?.diskGb, macAddress: v.macAddress || undefined,
    network: s?.network ? { mode: s.network.mode, ipMode: s.network.ipMode, ipAddress: s.network.ipAddress || undefined, netmask: s.network.netmask || undefined, gateway: s.network.gateway || undefined, vlanId: s.network.vlanId || undefined, bridge: s.network.bridge } : undefined,
    gpu: s?.gpu ? { mode: s.gpu.mode, deviceIds: s.gpu.deviceIds, migProfile: s.gpu.migProfile || undefined, devices: v.gpuDevices } : undefined,
    cloudInit: s?.cloudInit ? { hostname: s.cloudInit.hostname, username: s.cloudInit.username, sshPublicKey: s.cloudInit.sshPublicKey || undefined, passwordSet: v.passwordSet } : undefined,
    ipAddresses: v.ipAddresses,
    detail: v.detail || undefined,
    // Absent for VMs listed from the cluster table (another node's): vm show asks their node.
    autostart: s?.autostart, desiredState: v.desiredState || undefined, autostartError: v.autostartError || undefined,
  };
}

function invalid(msg: string): never {
  throw new ThocError("invalid_argument", msg);
}

function int(v: string | undefined, what: string): number {
  if (v === undefined) return 0;
  if (!/^\d+$/.test(v)) invalid(`${what}: "${v}" is not a whole number`);
  return Number(v);
}

async function readStdin(): Promise<string> {
  let s = "";
  for await (const c of process.stdin) s += c;
  return s.replace(/\r?\n$/, "");
}

interface CreateOpts {
  image?: string; vcpus?: string; ram?: string; disk?: string; sshKey?: string; ip?: string; netmask?: string; gateway?: string;
  dhcp?: boolean; vlan?: string; bridge?: string; network?: string; gpu?: string; hostname?: string; user?: string;
  passwordStdin?: boolean; start?: boolean; node?: string; group?: string; json?: boolean;
  /** false with --no-autostart. */
  autostart?: boolean;
}

async function buildSpec(name: string, o: CreateOpts) {
  if (o.ip && o.dhcp) invalid("--ip and --dhcp exclude each other: pick one");
  let gpu;
  if (o.gpu) {
    const m = /^(passthrough|mig):(.+)$/.exec(o.gpu);
    if (!m) invalid(`--gpu ${o.gpu}: use passthrough:PCI[,PCI...] or mig:PROFILE[@GPU]`);
    if (m[1] === "passthrough") gpu = { enabled: true, mode: "passthrough", deviceIds: m[2]!.split(",").map((s) => s.trim()).filter(Boolean), migProfile: "" };
    else { const [profile, dev] = m[2]!.split("@"); gpu = { enabled: true, mode: "mig", deviceIds: dev ? [dev] : [], migProfile: profile! }; }
  }
  let sshPublicKey = "";
  if (o.sshKey) {
    try { sshPublicKey = readFileSync(o.sshKey, "utf8").trim(); } catch (err) { invalid(`--ssh-key ${o.sshKey}: cannot read it: ${(err as Error).message}`); }
  }
  const password = o.passwordStdin ? await readStdin() : "";
  const cloud = sshPublicKey || password || o.hostname || o.user;
  return {
    name, image: o.image ?? "", vcpus: int(o.vcpus ?? "1", "--vcpus"), ramMb: int(o.ram ?? "1024", "--ram"), diskGb: int(o.disk ?? "10", "--disk"),
    gpu,
    network: {
      mode: o.network ?? "bridge-vlan", ipMode: o.ip ? "static" : o.dhcp ? "dhcp" : "", ipAddress: o.ip ?? "", netmask: o.netmask ?? "",
      gateway: o.gateway ?? "", vlanId: int(o.vlan, "--vlan"), bridge: o.bridge ?? "",
    },
    cloudInit: cloud ? { hostname: o.hostname ?? "", username: o.user ?? "", sshPublicKey, password } : undefined,
    autostart: o.autostart !== false,
  };
}

const VM_HEADER = ["NAME", "NODE", "STATUS", "IMAGE", "VCPUS", "RAM", "DISK", "IP", "GPU"];
/** Wide: what identifies the VM to libvirt and the network, and how its address is configured. */
const VM_WIDE_HEADER = ["UUID", "MAC", "NETWORK", "GROUP", "CREATED"];

function vmRow(v: Vm, format: OutputFormat = "table"): (string | number)[] {
  const s = v.spec;
  const configured = s?.network?.mode === "none" ? "-" : s?.network?.ipMode === "static" ? `${s.network.ipAddress}/${s.network.netmask}` : "dhcp";
  const row: (string | number)[] = [v.name, v.node, v.status, s?.image ?? "", s?.vcpus ?? 0, `${s?.ramMb ?? 0} MiB`, `${s?.diskGb ?? 0} GB`,
    // The guest's addresses once libvirt knows them; until then what was asked for (a static address, or dhcp).
    v.ipAddresses.length ? v.ipAddresses.map((a) => a.replace(/\/\d+$/, "")).join(",") : configured, v.gpuDevices.join(",") || "-"];
  if (format !== "wide") return row;
  const net = s?.network;
  return [...row, v.uuid || "-", v.macAddress || "-", net && net.mode !== "none" ? `${net.mode}${net.vlanId ? ` vlan ${net.vlanId}` : ""} ${configured}` : "none",
    v.group || "-", new Date(Number(v.createdAtMs)).toISOString()];
}

function printVm(v: Vm | undefined, json?: boolean): void {
  if (json) return printJson(vmJson(v));
  if (!v) return;
  const j = vmJson(v) as Record<string, unknown>;
  console.log(table(Object.entries(j).filter(([, x]) => x !== undefined).map(([k, x]) => [k, typeof x === "object" ? JSON.stringify(x) : String(x)])));
}

export function registerVm(program: Command): void {
  const vm = program.command("vm").description("virtual machines of the cluster: any agent answers for every VM");
  const run = (fn: (g: GlobalOpts, client: VmClient, ...a: never[]) => Promise<void>) =>
    async (...args: unknown[]) => {
      const cmd = args[args.length - 1] as Command;
      const g = globalOpts(cmd);
      const client = await connect((p) => p.VmService, g);
      try { await (fn as (...x: unknown[]) => Promise<void>)(g, client, ...args.slice(0, -1)); } catch (err) { fail(err, agentAddress(g)); } finally { client.close(); }
    };

  vm.command("create <name>").description("create and start a VM")
    .option("--image <name>", "base image (thoc-node image list)")
    .option("--vcpus <n>", "virtual CPUs", "1").option("--ram <mib>", "memory in MiB", "1024").option("--disk <gb>", "disk size in GB (a qcow2 overlay over the image)", "10")
    .option("--ssh-key <file>", "OpenSSH public key file for the cloud-init user")
    .option("--ip <addr/prefix>", "static IPv4 address, e.g. 10.0.0.5/24").option("--netmask <mask>", "netmask when --ip has no /prefix")
    .option("--gateway <addr>", "default gateway (static addressing)").option("--dhcp", "DHCP addressing (the default)")
    .option("--vlan <id>", "VLAN tag 1-4094 on the bridge").option("--bridge <name>", "host bridge (default: the node's vm.bridge)")
    .option("--network <mode>", "bridge-vlan (default) or none")
    .option("--gpu <spec>", "passthrough:PCI[,PCI] or mig:PROFILE[@GPU]")
    .option("--hostname <name>", "guest host name (default: the VM name)").option("--user <name>", "cloud-init user (default thoc)")
    .option("--password-stdin", "read the user's password from stdin (it is stored only as a SHA-512 crypt hash)")
    .option("--no-start", "define the VM without starting it")
    .option("--no-autostart", "do not start it again when the agent starts (after a host reboot or crash); vm autostart changes it later")
    .option("--node <node>", "run on this node (name or id); default: the scheduler leader picks one")
    .option("--group <name>", "anti-affinity group: no two VMs of the group on one node")
    .option("--json", "print one JSON document")
    .action(run(async (g, client, name: string, o: CreateOpts) => {
      const spec = await buildSpec(name, o);
      if (o.group !== undefined && !/^[a-z0-9][a-z0-9-]{0,62}$/.test(o.group)) invalid(`--group ${o.group}: use 1-63 lowercase letters, digits and '-', starting with a letter or digit`);
      // One id for every try: a retry after a lost answer or a leader change gets the same VM, never a second one.
      const requestId = randomUUID();
      const req = { spec, noStart: o.start === false, node: o.node ?? "", group: o.group ?? "", requestId };
      let v;
      for (let attempt = 0; ; attempt++) {
        try { ({ vm: v } = await client.createVm(req, slow(g))); break; } catch (err) {
          if (!(err instanceof ThocError) || err.code !== "unavailable" || attempt >= 2) throw err;
          await new Promise((r) => setTimeout(r, 1000));
        }
      }
      if (o.json) printJson(vmJson(v)); else console.log(`vm ${v?.name} ${v?.status} on ${v?.node}`);
    }));

  outputOptions(vm.command("list").description("every VM of the cluster (--node: one node's)").option("--node <node>", "only this node's VMs (name or id)"))
    .action(run(async (_g, client, o: { output?: string; json?: boolean; node?: string }) => {
      const format = outputFormat(o);
      const { vms } = await client.listVms({ node: o.node ?? "" });
      if (format === "json") return printJson(vms.map(vmJson));
      console.log(table([[...VM_HEADER, ...(format === "wide" ? VM_WIDE_HEADER : [])], ...vms.map((v) => vmRow(v, format))]));
    }));

  vm.command("show <name>").description("one VM").option("--json", "print one JSON document")
    .action(run(async (_g, client, name: string, o: { json?: boolean }) => printVm((await client.getVm({ name })).vm, o.json)));

  vm.command("start <name>").description("start a stopped VM").option("--json", "print one JSON document")
    .action(run(async (g, client, name: string, o: { json?: boolean }) => {
      const { vm: v } = await client.startVm({ name }, slow(g));
      if (o.json) printJson(vmJson(v)); else console.log(`vm ${name} ${v?.status}`);
    }));

  for (const [verb, desc] of [["stop", "ACPI shutdown, then power off after the timeout"], ["restart", "stop (as vm stop), then start"]] as const) {
    vm.command(`${verb} <name>`).description(desc)
      .option("--force", "power off at once (no ACPI shutdown)").option("--timeout-ms <ms>", "ACPI wait before powering off (default: the node's vm.stopTimeout)")
      .option("--json", "print one JSON document")
      .action(run(async (g, client, name: string, o: { force?: boolean; timeoutMs?: string; json?: boolean }) => {
        const req = { name, force: Boolean(o.force), timeoutMs: int(o.timeoutMs, "--timeout-ms") };
        const { vm: v } = verb === "stop" ? await client.stopVm(req, slow(g)) : await client.restartVm(req, slow(g));
        if (o.json) printJson(vmJson(v)); else console.log(`vm ${name} ${v?.status}`);
      }));
  }

  vm.command("autostart <name> <on|off>").description("whether the agent starts the VM again at its start when it was running before (not after a vm stop)")
    .option("--json", "print one JSON document")
    .action(run(async (_g, client, name: string, on: string, o: { json?: boolean }) => {
      if (on !== "on" && on !== "off") invalid(`"${on}": say on or off`);
      const { vm: v } = await client.setVmAutostart({ name, autostart: on === "on" });
      if (o.json) printJson(vmJson(v)); else console.log(`vm ${name} autostart ${v?.spec?.autostart === false ? "off" : "on"}`);
    }));

  vm.command("delete <name>").description("delete a VM with its disks, seed ISO, snapshots and GPU allocations")
    .option("--force", "the VM's node is down: remove the VM's record now; the node deletes the VM when it comes back")
    .action(run(async (g, client, name: string, o: { force?: boolean }) => { await client.deleteVm({ name, force: Boolean(o.force) }, slow(g)); console.log(`vm ${name} deleted`); }));

  vm.command("console <name>").description("attach to the serial console (Ctrl-] detaches)")
    .option("--until <text>", "detach once the output contains this text (scripts, tests)")
    .option("--send <text>", "type this text once attached (\\n for Enter)")
    .action(run(async (_g, client, name: string, o: { until?: string; send?: string }) => {
      await consoleSession(client, name, o);
    }));

  vm.command("logs <name>").description("the serial console log").option("-f, --follow", "keep printing new output").option("--tail <bytes>", "only the last BYTES")
    .action(run(async (_g, client, name: string, o: { follow?: boolean; tail?: string }) => {
      for await (const c of client.logs({ name, follow: Boolean(o.follow), tailBytes: BigInt(int(o.tail, "--tail")) }, { timeoutMs: o.follow ? 0 : 60_000 })) process.stdout.write(c.data);
    }));

  vm.command("metrics <name>").description("CPU, memory, network and disk figures").option("--json", "print one JSON document")
    .action(run(async (_g, client, name: string, o: { json?: boolean }) => {
      const m = await client.getMetrics({ name });
      const j = {
        name: m.name, state: m.state, vcpus: m.vcpus, cpuSeconds: m.cpuSeconds, cpuPercent: Number(m.cpuPercent.toFixed(2)),
        memoryBytes: m.memoryBytes, memoryUsedBytes: m.memoryUsedBytes, netRxBytes: m.netRxBytes, netTxBytes: m.netTxBytes,
        diskReadBytes: m.diskReadBytes, diskWriteBytes: m.diskWriteBytes, diskCapacityBytes: m.diskCapacityBytes, diskAllocationBytes: m.diskAllocationBytes,
      };
      if (o.json) return printJson(j);
      console.log(table([["state", m.state], ["vcpus", m.vcpus], ["cpu", `${m.cpuSeconds.toFixed(2)} s (${m.cpuPercent.toFixed(1)} %)`],
        ["memory", bytes(m.memoryBytes)], ["net rx/tx", `${bytes(m.netRxBytes)} / ${bytes(m.netTxBytes)}`],
        ["disk read/write", `${bytes(m.diskReadBytes)} / ${bytes(m.diskWriteBytes)}`], ["disk", `${bytes(m.diskAllocationBytes)} of ${bytes(m.diskCapacityBytes)}`]]));
    }));

  outputOptions(vm.command("gpus").description("the node's GPUs and who holds them"))
    .action(run(async (_g, client, o: { output?: string; json?: boolean }) => {
      const { gpus } = await client.listGpus({});
      if (outputFormat(o) === "json") return printJson(gpus.map(({ $typeName: _t, ...x }) => x));
      if (!gpus.length) return console.log("no GPUs on this node");
      console.log(table([["ID", "PCI", "MODEL", "MIG", "ASSIGNED"], ...gpus.map((x) => [x.id, x.pciAddress, x.model, x.migModel ? `${x.migModel} (${x.migSlicesUsed}/7 slices)` : "-", x.assignedTo.join(",") || "-"])]));
    }));

  vm.command("vnc <name>").description("a short-lived URL for a noVNC client").option("--json", "print one JSON document")
    .action(run(async (_g, client, name: string, o: { json?: boolean }) => {
      const t = await client.getVncToken({ name });
      if (o.json) printJson({ url: t.url, expiresAt: new Date(Number(t.expiresAtMs)).toISOString() }); else console.log(t.url);
    }));

  const snap = vm.command("snapshot").description("internal qcow2 snapshots of a VM");
  snap.command("create <vm> [snapshot]").description("take a snapshot (name defaults to the time)").option("--description <text>", "what it is for").option("--json", "print one JSON document")
    .action(run(async (g, client, vmName: string, name: string | undefined, o: { description?: string; json?: boolean }) => {
      const { snapshot } = await client.createSnapshot({ vm: vmName, name: name ?? "", description: o.description ?? "" }, slow(g));
      if (o.json) printJson({ name: snapshot?.name, description: snapshot?.description, vmState: snapshot?.vmState }); else console.log(`snapshot ${snapshot?.name} of ${vmName} created`);
    }));
  outputOptions(snap.command("list <vm>").description("a VM's snapshots"))
    .action(run(async (_g, client, vmName: string, o: { output?: string; json?: boolean }) => {
      const { snapshots } = await client.listSnapshots({ name: vmName });
      const rows = snapshots.map((s) => ({ name: s.name, createdAt: new Date(Number(s.createdAtMs)).toISOString(), vmState: s.vmState, description: s.description }));
      if (outputFormat(o) === "json") return printJson(rows);
      console.log(table([["NAME", "CREATED", "STATE", "DESCRIPTION"], ...rows.map((r) => [r.name, r.createdAt, r.vmState, r.description])]));
    }));
  snap.command("restore <vm> <snapshot>").description("revert the VM to a snapshot")
    .action(run(async (g, client, vmName: string, name: string) => {
      const { vm: v } = await client.restoreSnapshot({ vm: vmName, name }, slow(g));
      console.log(`vm ${vmName} restored to ${name} (${v?.status})`);
    }));
  snap.command("delete <vm> <snapshot>").description("delete a snapshot")
    .action(run(async (g, client, vmName: string, name: string) => { await client.deleteSnapshot({ vm: vmName, name }, slow(g)); console.log(`snapshot ${name} of ${vmName} deleted`); }));
}

const DETACH = 0x1d; // Ctrl-]

async function consoleSession(client: VmClient, name: string, o: { until?: string; send?: string }): Promise<void> {
  const tty = process.stdin.isTTY === true;
  const queue: Uint8Array[] = [];
  let wake: (() => void) | undefined;
  let detached = false;
  const push = (b?: Uint8Array) => { if (b) queue.push(b); wake?.(); };
  async function* input() {
    yield { name, data: new Uint8Array() };
    if (o.send) yield { name: "", data: Buffer.from(o.send.replace(/\\n/g, "\n")) };
    while (!detached) {
      while (queue.length) yield { name: "", data: queue.shift()! };
      if (detached) break;
      await new Promise<void>((r) => { wake = r; });
    }
  }
  const detach = () => { detached = true; push(); };
  if (tty) {
    process.stdin.setRawMode(true);
    process.stderr.write(`connected to ${name} (Ctrl-] to detach)\r\n`);
  }
  const onData = (b: Buffer) => {
    const i = b.indexOf(DETACH);
    if (i >= 0) { if (i > 0) push(b.subarray(0, i)); detach(); } else push(b);
  };
  process.stdin.on("data", onData);
  // Piped stdin that ends does not end the session: the console stays until --until, Ctrl-] or the VM stops.
  process.stdin.resume();
  let seen = "";
  const ac = new AbortController();
  try {
    const out = client.console(input(), { timeoutMs: 0, signal: ac.signal });
    for await (const c of out) {
      process.stdout.write(c.data);
      if (o.until) {
        seen = (seen + Buffer.from(c.data).toString("latin1")).slice(-Math.max(4096, o.until.length * 2));
        if (seen.includes(o.until)) { detach(); ac.abort(); break; }
      }
      if (detached) { ac.abort(); break; }
    }
  } catch (err) {
    if (!detached) throw err;
  } finally {
    process.stdin.off("data", onData);
    if (tty) { process.stdin.setRawMode(false); process.stderr.write("\r\ndetached\r\n"); }
    process.stdin.pause();
    process.stdin.destroy();
  }
}
