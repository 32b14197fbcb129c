/**
 * Named volumes: directories under <dataDir>/volumes/<name>, bound into
 * containers. A volume outlives the container's restarts and is deleted with
 * the container unless kept (--keep-volumes) or another container mounts it.
 */
import { mkdir, rm, stat } from "node:fs/promises";
import path from "node:path";
import { ThocError } from "../errors/index.js";
import { VOLUME_NAME_RE } from "./spec.js";

export class Volumes {
  constructor(readonly dir: string) {}

  /** The host directory of a volume; the name rule already excludes "..", this is the second lock. */
  pathOf(name: string): string {
    const p = path.resolve(this.dir, name);
    if (!VOLUME_NAME_RE.test(name) || path.dirname(p) !== path.resolve(this.dir)) throw new ThocError("invalid_argument", `volume name "${name}" is not a plain name`, { field: "volumes.name" });
    return p;
  }

  async exists(name: string): Promise<boolean> {
    return stat(this.pathOf(name)).then((s) => s.isDirectory(), () => false);
  }

  /** Makes the volumes that do not exist yet; returns those it made (a failed create removes exactly these). */
  async ensure(names: readonly string[]): Promise<string[]> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    const made: string[] = [];
    try {
      for (const n of new Set(names)) {
        if (await this.exists(n)) continue;
        // 0755: the container's root writes; the data dir above stays closed to other host users.
        await mkdir(this.pathOf(n), { mode: 0o755 });
        made.push(n);
      }
    } catch (err) {
      await this.remove(made);
      throw ThocError.from(err);
    }
    return made;
  }

  async remove(names: readonly string[]): Promise<string[]> {
    const gone: string[] = [];
    for (const n of names) {
      await rm(this.pathOf(n), { recursive: true, force: true });
      gone.push(n);
    }
    return gone;
  }
}
