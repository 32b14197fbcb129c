/**
 * The durable HintStore: one DurableReplicaStore per target node, in the same
 * LevelDB (sublevel "hint-<target>") and under <dir>/<target>/ for bodies.
 * Targets are remembered in the "hint-targets" sublevel, written in the same
 * batch as every hint, so the hints of a node survive a restart of this one.
 */
import { readdir } from "node:fs/promises";
import path from "node:path";
import type { ThocError } from "../../errors/index.js";
import type { LocalStore } from "../../store/index.js";
import { DurableReplicaStore } from "./durable-store.js";
import type { HintStore } from "./hints.js";

export interface DurableHintStoreOptions {
  store: LocalStore;
  /** Parent directory of the per-target body directories. */
  dir: string;
  inlineMax?: number;
  onDataLoss?: (e: ThocError) => void;
  /** objectstore.directWrites (durable-store.ts). */
  directWrites?: boolean;
}

/**
 * A node id as a sublevel name (bytes 0x22..0x7e, no "!") and a directory
 * name: kept as is when plain, else hex after "~" (which no plain name starts with).
 */
function safeName(target: string): string {
  return /^[A-Za-z0-9_-][A-Za-z0-9._-]*$/.test(target) ? target : `~${Buffer.from(target, "utf8").toString("hex")}`;
}

function fromSafeName(name: string): string | undefined {
  if (/^[A-Za-z0-9_-][A-Za-z0-9._-]*$/.test(name)) return name;
  if (/^~([0-9a-f]{2})+$/.test(name)) return Buffer.from(name.slice(1), "hex").toString("utf8");
  return undefined;
}

const registryOf = (store: LocalStore) => store.json<string>("hint-targets");

export class DurableHintStore implements HintStore {
  private readonly stores = new Map<string, { store: DurableReplicaStore; ready: Promise<void> }>();
  private readonly registry: ReturnType<typeof registryOf>;

  private constructor(private readonly o: DurableHintStoreOptions) {
    this.registry = registryOf(o.store);
  }

  /** Opens the hint stores of every known target (and sweeps leftovers of unknown ones). */
  static async open(o: DurableHintStoreOptions): Promise<DurableHintStore> {
    const h = new DurableHintStore(o);
    const known = new Set(await h.registry.keys().all());
    // A directory without a registry entry: a crash during a target's first hint; opening it sweeps the files.
    for (const d of await readdir(o.dir).catch(() => [] as string[])) {
      const t = fromSafeName(d);
      if (t !== undefined) known.add(t);
    }
    for (const t of known) h.for(t);
    await Promise.all([...h.stores.values()].map((s) => s.ready));
    return h;
  }

  for(target: string): DurableReplicaStore {
    let s = this.stores.get(target);
    if (!s) {
      const name = safeName(target);
      s = DurableReplicaStore.opening(
        { store: this.o.store, dir: path.join(this.o.dir, name), name: `hint-${name}`, inlineMax: this.o.inlineMax, onDataLoss: this.o.onDataLoss, directWrites: this.o.directWrites },
        () => [{ type: "put", sublevel: this.registry, key: target, value: "" }],
      );
      this.stores.set(target, s);
    }
    return s.store;
  }

  async targets(): Promise<string[]> {
    const out: string[] = [];
    for (const t of await this.registry.keys().all()) if (!(await this.for(t).empty())) out.push(t);
    return out;
  }

  /** Pending hints, for one target or all. */
  async count(target?: string): Promise<number> {
    const ts = target !== undefined ? [target] : await this.registry.keys().all();
    let n = 0;
    for (const t of ts) n += (await this.for(t).stats()).records;
    return n;
  }

  async close(): Promise<void> {
    await Promise.all([...this.stores.values()].map((s) => s.store.close()));
  }
}
