/**
 * What the tests on a real libvirtd (qemu:///system, QEMU TCG) share: virsh,
 * a lock, and an agent started on it. The boot tests share one libvirtd and
 * the libvirtd-restart test kills it, so every file that touches
 * qemu:///system takes the lock and the runner's concurrency never overlaps
 * them (an exclusive-create lock file; a holder that died is taken over).
 */
import { execFileSync } from "node:child_process";
import { chmod, mkdtemp, open, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { Cluster, loopbackBlock, type AgentProcess } from "../harness.js";

export const URI = "qemu:///system";
export const virsh = (...a: string[]) => execFileSync("virsh", ["-c", URI, ...a], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });

const LOCK = "/run/thoc-test-libvirtd.lock";

export async function lockLibvirtd(timeoutMs = 600_000): Promise<() => Promise<void>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const fh = await open(LOCK, "wx");
      await fh.writeFile(String(process.pid));
      await fh.close();
      return () => rm(LOCK, { force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      const holder = Number(await readFile(LOCK, "utf8").catch(() => "0"));
      let alive = false;
      try { if (holder > 0) { process.kill(holder, 0); alive = true; } } catch { /* gone */ }
      if (!alive) { await rm(LOCK, { force: true }); continue; }
      if (Date.now() > deadline) throw new Error(`libvirtd test lock ${LOCK} held by pid ${holder} for over ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}

/**
 * A fresh test root that QEMU (libvirt-qemu) can search, as it can /var/lib:
 * mkdtemp makes it 0700, which stands for no real parent of a data dir. What
 * is inside (the data dir) is left to the agent.
 */
export async function systemRoot(prefix = "thoc-system-"): Promise<string> {
  const root = await mkdtemp(path.join(tmpdir(), prefix));
  await chmod(root, 0o755);
  return root;
}

/** Fails with the setup command when libvirtd does not answer on qemu:///system. */
export function checkLibvirtd(): void {
  try { virsh("version"); } catch (err) {
    throw new Error(`libvirtd is not answering on ${URI}: run \`bash test/boot/setup-libvirt.sh\` first (${(err as Error).message.split("\n")[0]})`);
  }
}

/**
 * Takes the lock, checks libvirtd answers, and starts one dev agent on
 * qemu:///system (vm.domainType auto: qemu here, where /dev/kvm runs no guests);
 * release() stops it, undefines the named domains and frees the lock. The
 * agent makes its own data dir searchable by QEMU (vm/access.ts): the test
 * does not open it up.
 */
export async function startSystemAgent(): Promise<{ c: Cluster; a: AgentProcess; release(domains: string[]): Promise<void> }> {
  const unlock = await lockLibvirtd();
  let c: Cluster;
  try {
    checkLibvirtd();
    c = new Cluster(await systemRoot(), loopbackBlock(), { args: ["--hypervisor-uri", URI] });
    await c.add().start().catch(async (err) => { await c.stop(); throw err; });
  } catch (err) {
    await unlock();
    throw err;
  }
  return {
    c, a: c.agents[0]!,
    async release(domains) {
      for (const d of domains) {
        try { virsh("destroy", d); } catch { /* not running */ }
        try { virsh("undefine", d, "--snapshots-metadata"); } catch { /* gone */ }
      }
      await c.stop();
      await unlock();
    },
  };
}
