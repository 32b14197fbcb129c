/**
 * VM benchmark (node dist/bench/vm.js):
 *  1. create-to-running on qemu:///system (TCG, busybox kernel image, 1 GB
 *     overlay): VmService.CreateVm through a real agent, beside `virsh define`
 *     + `virsh start` of the same domain XML in the same run (the physical
 *     baseline: what libvirt itself needs). Target: ratio <= 1.1.
 *  2. create/delete throughput of 50 VMs on the test driver (test:///default)
 *     through a --dev agent's gRPC API, beside raw define/start/destroy/undefine
 *     through the same libvirt binding in-process.
 * Needs libvirtd (bash test/boot/setup-libvirt.sh) for part 1; skips it with a note otherwise.
 */
import { execFileSync } from "node:child_process";
import { chmod, writeFile } from "node:fs/promises";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { LibvirtHypervisor } from "../hypervisor/index.js";
import { VmService } from "../proto/index.js";
import { createClient, credentials } from "../rpc/index.js";
import { buildInitramfs, hostKernel } from "../test/boot/initramfs.js";
import { startCluster, type Cluster } from "../test/harness.js";

const RUNS = Number(process.env.THOC_BENCH_VM_RUNS ?? 5);
const N = Number(process.env.THOC_BENCH_VM_COUNT ?? 50);
const settle = () => new Promise((r) => setTimeout(r, 1000));
const median = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]!; };
const virsh = (...a: string[]) => execFileSync("virsh", ["-c", "qemu:///system", ...a], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });

async function bootPath(): Promise<void> {
  try { virsh("version"); } catch {
    console.log("create-to-running: skipped (libvirtd not running: bash test/boot/setup-libvirt.sh)");
    return;
  }
  const c: Cluster = await startCluster(1, { args: ["--hypervisor-uri", "qemu:///system", "--log-level", "warn"], env: { THOC_VM_DOMAIN_TYPE: "qemu" } });
  const a = c.agents[0]!;
  await chmod(c.root, 0o755);
  const client = createClient(VmService, a.clientAddress, { credentials: credentials.createInsecure(), defaultTimeoutMs: 120_000 });
  try {
    const initrd = await buildInitramfs(c.root);
    const r = await a.cli(["image", "import", "bench-bb", "--kernel", hostKernel(), "--initrd", initrd, "--cmdline", "console=ttyS0 quiet"]);
    if (r.code !== 0) throw new Error(r.stderr);
    const ours: number[] = [], base: number[] = [], cli: number[] = [], raw: number[] = [];
    const hv = new LibvirtHypervisor("qemu:///system");
    await hv.open();
    for (let i = 0; i < RUNS; i++) {
      const name = `bench${process.pid}-${i}`;
      let t = performance.now();
      await client.createVm({ spec: { name, image: "bench-bb", vcpus: 1, ramMb: 128, diskGb: 1, network: { mode: "none" } } });
      ours.push(performance.now() - t);
      // The same XML, under another name and uuid, with its own overlay made beforehand (untimed).
      const xml = virsh("dumpxml", "--inactive", `thoc-${name}`);
      // Every measurement starts with no other guest running (two TCG guests booting share 2 cores).
      await client.deleteVm({ name });
      await settle();
      const vname = `virsh${process.pid}-${i}`;
      const disk = path.join(c.root, `${vname}.qcow2`);
      execFileSync("qemu-img", ["create", "-q", "-f", "qcow2", disk, "1G"]);
      const file = path.join(c.root, `${vname}.xml`);
      await writeFile(file, xml.replace(/<name>[^<]+<\/name>/, `<name>${vname}</name>`).replace(/<uuid>[^<]+<\/uuid>/, "")
        .replace(/<source file='[^']*disk.qcow2'\/>/, `<source file='${disk}'/>`).replace(/<log file='[^']*'/, `<log file='${path.join(c.root, vname + ".log")}'`));
      t = performance.now();
      virsh("define", file);
      virsh("start", vname);
      base.push(performance.now() - t);
      virsh("destroy", vname);
      virsh("undefine", vname);
      await settle();
      // The floor: the same two libvirt calls through the agent's binding, no process start.
      const xml2 = (await import("node:fs/promises")).readFile(file, "utf8");
      const rawXml = (await xml2).replace(`<name>${vname}</name>`, `<name>${vname}r</name>`);
      t = performance.now();
      await hv.define(rawXml);
      await hv.start(`${vname}r`);
      raw.push(performance.now() - t);
      await hv.destroy(`${vname}r`);
      await hv.undefine(`${vname}r`);
      await settle();
      // The operator's path, CLI process start included.
      t = performance.now();
      const rc = await a.cli(["vm", "create", name, "--image", "bench-bb", "--ram", "128", "--disk", "1", "--network", "none"], 120_000);
      if (rc.code !== 0) throw new Error(rc.stderr);
      cli.push(performance.now() - t);
      await client.deleteVm({ name });
      await settle();
    }
    await hv.close();
    const o = median(ours), b = median(base);
    console.log(`create-to-running, qemu:///system TCG, median of ${RUNS}:`);
    console.log(`  VmService.CreateVm (validate, verify image, overlay, define, start) ${o.toFixed(0)} ms`);
    console.log(`  virsh define + virsh start of the same XML (baseline)             ${b.toFixed(0)} ms`);
    console.log(`  virDomainDefineXML + virDomainCreate in-process (libvirt floor)    ${median(raw).toFixed(0)} ms`);
    console.log(`  ratio to virsh ${(o / b).toFixed(2)}x, to the floor ${(o / median(raw)).toFixed(2)}x   (thoc-node vm create CLI, process start included: ${median(cli).toFixed(0)} ms)`);
    console.log(`  all runs: ours ${ours.map((x) => x.toFixed(0)).join(" ")}; virsh ${base.map((x) => x.toFixed(0)).join(" ")}; floor ${raw.map((x) => x.toFixed(0)).join(" ")}`);
  } finally {
    client.close();
    await c.stop();
  }
}

async function throughput(): Promise<void> {
  const c = await startCluster(1, { args: ["--log-level", "warn"] });
  const a = c.agents[0]!;
  const client = createClient(VmService, a.clientAddress, { credentials: credentials.createInsecure(), defaultTimeoutMs: 60_000 });
  try {
    const img = path.join(c.root, "b.qcow2");
    execFileSync("qemu-img", ["create", "-q", "-f", "qcow2", img, "1G"]);
    if ((await a.cli(["image", "import", "bench", img])).code !== 0) throw new Error("image import failed");
    for (const conc of [1, 8]) {
      const names = Array.from({ length: N }, (_, i) => `t${conc}-${i}`);
      const pool = async (fn: (n: string) => Promise<unknown>) => {
        const q = [...names];
        await Promise.all(Array.from({ length: conc }, async () => { for (let n = q.shift(); n; n = q.shift()) await fn(n); }));
      };
      let t = performance.now();
      await pool((name) => client.createVm({ spec: { name, image: "bench", vcpus: 1, ramMb: 64, diskGb: 1 } }));
      const create = performance.now() - t;
      t = performance.now();
      await pool((name) => client.deleteVm({ name }));
      const del = performance.now() - t;
      console.log(`test driver, ${N} VMs, concurrency ${conc}: create ${(N / (create / 1000)).toFixed(1)} VMs/s (${(create / N).toFixed(1)} ms each), delete ${(N / (del / 1000)).toFixed(1)} VMs/s (${(del / N).toFixed(1)} ms each)`);
    }
  } finally {
    client.close();
    await c.stop();
  }
  // Baseline: the libvirt calls alone, in-process, no validation, disks, ISO, store or gRPC.
  const hv = new LibvirtHypervisor("test:///default");
  await hv.open();
  const t = performance.now();
  for (let i = 0; i < N; i++) {
    const name = `raw-${i}`;
    await hv.define(`<domain type='test'><name>${name}</name><memory unit='KiB'>65536</memory><vcpu>1</vcpu><os><type>hvm</type></os></domain>`);
    await hv.start(name);
  }
  const mid = performance.now();
  for (let i = 0; i < N; i++) { await hv.destroy(`raw-${i}`); await hv.undefine(`raw-${i}`); }
  const end = performance.now();
  await hv.close();
  console.log(`baseline, raw libvirt define+start / destroy+undefine in-process: ${(N / ((mid - t) / 1000)).toFixed(0)} / ${(N / ((end - mid) / 1000)).toFixed(0)} VMs/s`);
}

console.log(`thoc-node VM benchmark, ${new Date().toISOString()}`);
await bootPath();
await throughput();
