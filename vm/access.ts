/**
 * What QEMU may reach in the data dir: the VM files, and nothing else.
 *
 * On qemu:///system QEMU runs as libvirt's DAC user (qemu.conf `user`/`group`,
 * libvirt-qemu on Debian). libvirt's dynamic_ownership (the default) chowns a
 * domain's disks, kernel and initrd to that user while the domain runs and
 * gives them back on stop (remember_owner), but it changes no directory: QEMU
 * must search every directory above its files, and libvirt checks that as
 * QEMU's uid:gid before it starts the domain ("Cannot access storage file ...
 * (as uid:64055, gid:64055): Permission denied"). So (docs/vms.md):
 *
 *   <dataDir>                               0710 root:<QEMU's group>   QEMU may search it, not list it
 *   vms/, images/, vms/<vm>/, images/<img>/  0710 root:<QEMU's group>
 *   disk.qcow2                               0660 root:<QEMU's group>
 *   seed.iso, kernel, initrd, disk (images)  0640 root:<QEMU's group>
 *   everything else (meta/, replicas/, pki/, audit.log, image.json, ...)  0700/0600 root, unchanged
 *
 * The group bits on the files serve a libvirt with dynamic_ownership off; with
 * it on (the default) they change nothing. Where no QEMU runs as another user
 * (the test driver, the in-memory hypervisor, a QEMU that runs as root or as
 * the agent's own user) there is no group to give and every file stays the
 * agent's own: 0700/0600 from its umask.
 */
import { spawnSync } from "node:child_process";
import { statSync } from "node:fs";
import { chmod, chown, mkdir, readdir, stat } from "node:fs/promises";
import path from "node:path";
import { configError } from "../config/index.js";

/** Files QEMU opens, by name, and their mode; the rest of a VM's or image's directory is the agent's. */
const QEMU_FILES: Record<string, number> = { "disk.qcow2": 0o660, "seed.iso": 0o640, disk: 0o640, kernel: 0o640, initrd: 0o640 };

const oct = (m: number) => (m & 0o7777).toString(8).padStart(4, "0");

export class QemuAccess {
  private who?: { uid: number; gid: number };

  /** QEMU's uid and gid when it runs as a user other than root and the agent's, else undefined. */
  get identity(): { uid: number; gid: number } | undefined { return this.who; }

  /** From libvirt's DAC label (HostCapabilities.qemu); undefined, root or ourselves: nobody else needs access. */
  setIdentity(q: { uid: number; gid: number } | undefined): void {
    this.who = q && q.uid !== 0 && q.uid !== process.getuid?.() ? { ...q } : undefined;
  }

  /** mkdir -p, then 0710 root:<QEMU's group>; without a QEMU identity, 0700 from the agent's umask. */
  async dir(dir: string): Promise<void> {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    if (this.who) await this.own(dir, 0o710);
  }

  /** A file QEMU opens (see QEMU_FILES; others are left alone): root:<QEMU's group> with its mode. */
  async file(file: string): Promise<void> {
    const mode = QEMU_FILES[path.basename(file)];
    if (this.who && mode !== undefined) await this.own(file, mode);
  }

  private async own(p: string, mode: number): Promise<void> {
    await chown(p, -1, this.who!.gid);
    await chmod(p, mode);
  }

  /** True when QEMU's uid:gid can search dir (and so every directory above it): asked of the kernel, so ACLs count. */
  canTraverse(dir: string): boolean {
    const w = this.who;
    if (!w) return true;
    const r = spawnSync("test", ["-x", dir], { uid: w.uid, gid: w.gid, stdio: "ignore" });
    if (!r.error) return r.status === 0;
    // Not root (cannot switch to QEMU's uid): judge by the mode bits.
    return modeAllows(dir, w);
  }

  /**
   * Makes the data dir searchable by QEMU, or says why it cannot be (a
   * configError on dataDir: exit 2). The data dir, and any directory the
   * agent creates on the way to it, become 0710 root:<QEMU's group> when QEMU
   * cannot search them; a parent the agent did not create is never changed:
   * the message names it and the fix. Returns what it changed, for the log.
   */
  async prepareDataDir(dataDir: string): Promise<string[]> {
    const w = this.who;
    if (!w) return [];
    const created: string[] = [];
    for (let d = dataDir; ; d = path.dirname(d)) {
      if (await stat(d).then(() => true, () => false)) break;
      created.unshift(d);
      if (d === path.dirname(d)) break;
    }
    await mkdir(dataDir, { recursive: true, mode: 0o700 });
    const changed: string[] = [];
    for (const d of created.length ? created : [dataDir]) {
      if (this.canTraverse(d)) continue;
      const st = await stat(d);
      const mode = (st.mode & 0o700) | 0o010;
      try {
        await chown(d, -1, w.gid);
        await chmod(d, mode);
      } catch (err) {
        throw configError("dataDir", `QEMU runs as uid ${w.uid} gid ${w.gid} (libvirt's DAC label) and cannot search ${d} (mode ${oct(st.mode)}, owner ${st.uid}:${st.gid}), and the agent could not change it (${(err as NodeJS.ErrnoException).code ?? err}): run chgrp ${w.gid} ${d} && chmod ${oct(mode)} ${d}`);
      }
      changed.push(`${d}: ${oct(st.mode)} ${st.uid}:${st.gid} -> ${oct(mode)} ${st.uid}:${w.gid}`);
    }
    if (!this.canTraverse(dataDir)) {
      const chain: string[] = [];
      for (let d = dataDir; ; d = path.dirname(d)) { chain.unshift(d); if (d === path.dirname(d)) break; }
      const blocker = chain.find((d) => !this.canTraverse(d)) ?? dataDir;
      const st = await stat(blocker);
      throw configError("dataDir", `QEMU runs as uid ${w.uid} gid ${w.gid} (libvirt's DAC label) and cannot search ${blocker} (mode ${oct(st.mode)}, owner ${st.uid}:${st.gid}), a parent of the data dir ${dataDir}, so no VM could start: put dataDir under directories every user may search (the default /var/lib/thoc), or let it through (chmod o+x ${blocker})`);
    }
    return changed;
  }

  /**
   * Brings vms/ and images/ (and what is in them) to the layout above: for
   * data dirs from before it (0755/0644 root:root) and for files made while
   * libvirt had not yet said who QEMU is. A file owned by someone else (a
   * running VM's disk, which libvirt lent to QEMU) is left alone.
   */
  async normalize(...trees: string[]): Promise<void> {
    if (!this.who) return;
    const me = process.getuid?.();
    for (const tree of trees) {
      await this.dir(tree);
      for (const e of await readdir(tree, { withFileTypes: true })) {
        if (!e.isDirectory()) continue;
        const sub = path.join(tree, e.name);
        await this.own(sub, 0o710);
        for (const f of await readdir(sub, { withFileTypes: true })) {
          const file = path.join(sub, f.name);
          if (!f.isFile() || QEMU_FILES[f.name] === undefined) continue;
          const st = await stat(file).catch(() => undefined);
          if (st && st.uid === me) await this.file(file);
        }
      }
    }
  }
}

function modeAllows(dir: string, w: { uid: number; gid: number }): boolean {
  for (let d = dir; ; d = path.dirname(d)) {
    let st;
    try { st = statSync(d); } catch { return false; }
    const bit = st.uid === w.uid ? 0o100 : st.gid === w.gid ? 0o010 : 0o001;
    if (!(st.mode & bit)) return false;
    if (d === path.dirname(d)) return true;
  }
}
