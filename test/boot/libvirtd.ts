/**
 * What the tests on a real libvirtd (qemu:///system, QEMU TCG) share: virsh,
 * a lock, and an agent started on it. The boot tests share one libvirtd and
 * the libvirtd-restart test kills it, so every file that touches
 * qemu:///system takes the lock and the runner's concurrency never overlaps
 * them (an exclusive-create lock file; a holder that died is taken over).
 */
import { execFileSync } from "node:child_process";
import { chmod, open, readFile, rm } from "node:fs/promises";
import { startCluster, type AgentProcess, type Cluster } from "../harness.js";

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
 * Takes the lock, checks libvirtd answers, and starts one dev agent on
 * qemu:///system with <domain type='qemu'>; release() stops it, undefines
 * the named domains and frees the lock.
 */
export async function startSystemAgent(): Promise<{ c: Cluster; a: AgentProcess; release(domains: string[]): Promise<void> }> {
  const unlock = await lockLibvirtd();
  try { virsh("version"); } catch (err) {
    await unlock();
    throw new Error(`libvirtd is not answering on ${URI}: run \`bash test/boot/setup-libvirt.sh\` first (${(err as Error).message.split("\n")[0]})`);
  }
  const c = await startCluster(1, { args: ["--hypervisor-uri", URI], env: { THOC_VM_DOMAIN_TYPE: "qemu" } });
  // QEMU runs as libvirt-qemu and must reach the image and VM files under the (0700) temp dir and
  // the data dir the agent made (0700, as it makes every directory of its own; vms/ and images/ are 0755).
  await chmod(c.root, 0o755);
  await chmod(c.agents[0]!.dataDir, 0o711);
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
