/**
 * A small table replicated to every node (buckets, S3 keys): a map of
 * last-writer-wins entries ordered by HLC version, persisted with fsync in the
 * node's LevelDB, exchanged whole between nodes (SyncTable) — these tables
 * hold tens to thousands of entries, so full-state exchange after a digest
 * check is cheaper than anything cleverer. Deletes are kept as tombstones so a
 * node that was away cannot bring an entry back.
 */
import { createHash } from "node:crypto";
import type { LocalStore } from "../store/index.js";
import { compareHlc, decodeHlc } from "./hlc.js";
import { ThocError } from "../errors/index.js";

export interface TableEntry {
  key: string;
  /** HLC timestamp; the newest version of a key wins. */
  version: string;
  deleted: boolean;
  /** JSON, opaque here; "" when deleted. */
  value: string;
}

/** Where a table keeps its entries; MemoryTableBackend for tests. */
export interface TableBackend {
  load(): Promise<TableEntry[]>;
  /** Persists the entries durably (fsync) before resolving. */
  save(entries: TableEntry[]): Promise<void>;
}

export class MemoryTableBackend implements TableBackend {
  readonly saved = new Map<string, TableEntry>();
  async load(): Promise<TableEntry[]> {
    return [...this.saved.values()];
  }
  async save(entries: TableEntry[]): Promise<void> {
    for (const e of entries) this.saved.set(e.key, { ...e });
  }
}

export class LevelTableBackend implements TableBackend {
  constructor(private readonly store: LocalStore, private readonly name: string) {}
  private sub() {
    return this.store.json<TableEntry>(`table-${this.name}`);
  }
  async load(): Promise<TableEntry[]> {
    const out: TableEntry[] = [];
    for await (const [, v] of this.sub().iterator()) out.push(v as TableEntry);
    return out;
  }
  async save(entries: TableEntry[]): Promise<void> {
    if (!entries.length) return;
    const sub = this.sub();
    await this.store.db.batch(entries.map((e) => ({ type: "put" as const, sublevel: sub, key: e.key, value: e })), { sync: true });
  }
}

/** True when `a` should replace `b` (newer version; equal versions tie-break on content, deterministically). */
function wins(a: TableEntry, b: TableEntry | undefined): boolean {
  if (!b) return true;
  const c = compareHlc(a.version, b.version);
  if (c !== 0) return c > 0;
  const ka = `${a.deleted ? 1 : 0}${a.value}`;
  const kb = `${b.deleted ? 1 : 0}${b.value}`;
  return ka > kb;
}

export function validateEntry(e: TableEntry): void {
  if (typeof e.key !== "string" || !e.key || e.key.length > 1024) throw new ThocError("invalid_argument", "table entry: key must be 1–1024 characters");
  decodeHlc(e.version);
  if (e.deleted && e.value !== "") throw new ThocError("invalid_argument", "table entry: a deleted entry has no value");
  if (e.value.length > 64 << 10) throw new ThocError("invalid_argument", "table entry: value over 64 KiB");
}

export class ReplicatedTable {
  private readonly entries = new Map<string, TableEntry>();
  private cachedDigest?: string;
  private chain: Promise<unknown> = Promise.resolve();
  private readonly listeners: ((changed: TableEntry[]) => void)[] = [];

  private constructor(readonly name: string, private readonly backend: TableBackend) {}

  static async open(name: string, backend: TableBackend): Promise<ReplicatedTable> {
    const t = new ReplicatedTable(name, backend);
    for (const e of await backend.load()) if (wins(e, t.entries.get(e.key))) t.entries.set(e.key, e);
    return t;
  }

  /** The entry, deleted ones included. */
  entry(key: string): TableEntry | undefined {
    const e = this.entries.get(key);
    return e && { ...e };
  }

  /** The live value (undefined when absent or deleted). */
  get(key: string): string | undefined {
    const e = this.entries.get(key);
    return e && !e.deleted ? e.value : undefined;
  }

  /** Every entry (deleted included), sorted by key. */
  all(): TableEntry[] {
    return [...this.entries.values()].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0)).map((e) => ({ ...e }));
  }

  /** Live entries, sorted by key. */
  live(): { key: string; value: string }[] {
    return this.all().filter((e) => !e.deleted).map((e) => ({ key: e.key, value: e.value }));
  }

  digest(): string {
    if (this.cachedDigest === undefined) {
      const h = createHash("sha256");
      for (const e of this.all()) h.update(`${e.key}\u0000${e.version}\u0000${e.deleted ? 1 : 0}\u0000${e.value}\n`);
      this.cachedDigest = h.digest("hex");
    }
    return this.cachedDigest;
  }

  /** Calls fn with the entries that changed, after they are on disk. */
  onChange(fn: (changed: TableEntry[]) => void): void {
    this.listeners.push(fn);
  }

  /**
   * Folds entries in (newest version wins), persists the winners before they
   * become visible, and returns them. Invalid entries are refused whole.
   */
  merge(incoming: readonly TableEntry[]): Promise<TableEntry[]> {
    for (const e of incoming) validateEntry(e);
    const run = this.chain.then(async () => {
      const changed = new Map<string, TableEntry>();
      for (const e of incoming) if (wins(e, changed.get(e.key) ?? this.entries.get(e.key))) changed.set(e.key, { key: e.key, version: e.version, deleted: e.deleted, value: e.value });
      const list = [...changed.values()];
      if (!list.length) return [];
      await this.backend.save(list);
      for (const e of list) this.entries.set(e.key, e);
      this.cachedDigest = undefined;
      for (const l of this.listeners) l(list);
      return list;
    });
    this.chain = run.catch(() => undefined);
    return run;
  }
}
