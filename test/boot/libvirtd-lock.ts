/**
 * The boot tests share one libvirtd, and the libvirtd-restart test kills it:
 * files that touch qemu:///system take this lock so the runner's concurrency
 * never overlaps them. An exclusive-create lock file; a holder that died
 * (pid gone) is taken over.
 */
import { open, readFile, rm } from "node:fs/promises";

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
