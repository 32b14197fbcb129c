/**
 * The node's local metadata store: one LevelDB under <dataDir>/meta. LevelDB's
 * own LOCK file doubles as the data dir's lock, so a second agent pointed at a
 * directory in use is refused before it can touch anything; a pid file lets
 * the refusal say who holds it.
 */
import { randomUUID } from "node:crypto";
import { chmod, mkdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { ClassicLevel } from "classic-level";
import { ThocError } from "../errors/index.js";

export type Sublevel<V> = ReturnType<ClassicLevel<string, string>["sublevel"]> & { __v?: V };

export class LocalStore {
  private constructor(
    readonly dataDir: string,
    readonly db: ClassicLevel<string, string>,
    readonly nodeId: string,
    /** How many times this data dir has been started, this start included. */
    readonly generation: number,
  ) {}

  static async open(dataDir: string): Promise<LocalStore> {
    const dir = path.resolve(dataDir);
    try {
      await makeDirs(path.join(dir, "meta"));
    } catch (err) {
      throw new ThocError("failed_precondition", `data dir ${dir}: cannot create it: ${(err as Error).message}`, { dataDir: dir }, { cause: err });
    }
    const db = new ClassicLevel<string, string>(path.join(dir, "meta"), { valueEncoding: "utf8" });
    try {
      await db.open();
    } catch (err) {
      const cause = (err as { cause?: { message?: string } }).cause?.message ?? (err as Error).message;
      if (/lock/i.test(cause)) {
        const pid = await readFile(path.join(dir, "agent.pid"), "utf8").catch(() => "");
        throw new ThocError("failed_precondition",
          `data dir ${dir} is in use by another agent${pid.trim() ? ` (pid ${pid.trim()})` : ""}: stop it, or give this one its own --data-dir`,
          { dataDir: dir }, { cause: err });
      }
      throw new ThocError("failed_precondition", `data dir ${dir}: cannot open the metadata store: ${cause}`, { dataDir: dir }, { cause: err });
    }
    await writeFile(path.join(dir, "agent.pid"), `${process.pid}\n`, { mode: 0o600 });
    let nodeId = await db.get("node/id");
    if (!nodeId) {
      nodeId = randomUUID();
      await db.put("node/id", nodeId, { sync: true });
    }
    const generation = Number((await db.get("node/generation")) ?? "0") + 1;
    await db.put("node/generation", String(generation), { sync: true });
    return new LocalStore(dir, db, nodeId, generation);
  }

  /** A key space of its own for one subsystem, values JSON-encoded. */
  json<V>(name: string) {
    return this.db.sublevel<string, V>(name, { valueEncoding: "json" });
  }

  /** A key space of its own for one subsystem, raw bytes. */
  bytes(name: string) {
    return this.db.sublevel<string, Uint8Array>(name, { valueEncoding: "view" });
  }

  async close(): Promise<void> {
    await rm(path.join(this.dataDir, "agent.pid"), { force: true });
    await this.db.close();
  }
}

/**
 * mkdir -p, one component at a time: only the directories it creates get
 * 0700 (set explicitly, whatever the umask); one that exists keeps its mode
 * (the unit's 0750 /var/lib/thoc). Node's recursive mkdir is not used: under
 * /proc it never returns.
 */
export async function makeDirs(dir: string): Promise<void> {
  const missing: string[] = [];
  for (let d = path.resolve(dir); ; d = path.dirname(d)) {
    try {
      await stat(d);
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT" || path.dirname(d) === d) throw err;
      missing.unshift(d);
    }
  }
  for (const d of missing) {
    await mkdir(d, { mode: 0o700 }).catch((err: NodeJS.ErrnoException) => { if (err.code !== "EEXIST") throw err; });
    await chmod(d, 0o700);
  }
}
