/**
 * Cluster semantics over a ReplicatedTable (buckets, S3 keys):
 *  - put: applied here, pushed to every live ring node, acknowledged as soon
 *    as a majority of the ring holds it (503 otherwise; the entry still spreads);
 *  - lookup: the local copy when it has the key, else a pull from the live
 *    nodes first (so a bucket created through another node a moment ago is
 *    found), then the local copy again;
 *  - list: a pull from the live nodes, then the local table;
 *  - background: a digest-first full-state exchange with one peer at a time.
 * A majority write and a pull from every live node before a miss is declared
 * give read-your-writes across nodes while a majority is up.
 */
import { ThocError, quorumError } from "../errors/index.js";
import type { HlcClock } from "./hlc.js";
import type { ReplicatedTable, TableEntry } from "./table.js";

export interface TablePeer {
  readonly nodeId: string;
  syncTable(table: string, digest: string, entries: TableEntry[]): Promise<{ digest: string; entries: TableEntry[] }>;
}

export interface ClusterTableOptions {
  hlc: HlcClock;
  /** Active ring members (this node included). */
  ringNodes: () => string[];
  self: string;
  isUp: (nodeId: string) => boolean;
  peer: (nodeId: string) => TablePeer;
  log?: { warn(o: object, m: string): void };
}

export class ClusterTable {
  constructor(readonly table: ReplicatedTable, private readonly o: ClusterTableOptions) {}

  private livePeers(): string[] {
    return this.o.ringNodes().filter((id) => id !== this.o.self && this.o.isUp(id));
  }

  /**
   * Writes (or deletes, value null) a key cluster-wide: resolves as soon as a
   * majority of the ring holds it (the pushes to the other live nodes go on),
   * rejects when every push has answered and there is still no majority.
   */
  async put(key: string, value: string | null): Promise<TableEntry> {
    const e: TableEntry = { key, version: this.o.hlc.now(), deleted: value === null, value: value ?? "" };
    await this.table.merge([e]);
    const ring = this.o.ringNodes();
    const need = Math.floor(Math.max(ring.length, 1) / 2) + 1;
    const peers = this.livePeers();
    let acks = ring.includes(this.o.self) || ring.length === 0 ? 1 : 0;
    if (acks >= need) {
      for (const id of peers) this.o.peer(id).syncTable(this.table.name, "", [e]).catch(() => {});
      return e;
    }
    const errors: string[] = [];
    await new Promise<void>((resolve, reject) => {
      let pending = peers.length;
      const settle = () => {
        if (acks >= need) resolve();
        else if (pending === 0) reject(quorumError(`${this.table.name} ${key}`, acks, need, ring.length, errors.join("; ") || "too few nodes up"));
      };
      settle();
      for (const id of peers) {
        this.o.peer(id).syncTable(this.table.name, "", [e]).then(() => { acks++; }, (err) => { errors.push(`${id}: ${ThocError.from(err).message}`); })
          .finally(() => { pending--; settle(); });
      }
    });
    return e;
  }

  /** Pulls every live peer's table (merging it here); failures are tolerated. */
  async pull(): Promise<number> {
    let ok = 0;
    await Promise.all(this.livePeers().map(async (id) => {
      try {
        const theirs = await this.o.peer(id).syncTable(this.table.name, this.table.digest(), []);
        if (theirs.entries.length) await this.table.merge(theirs.entries);
        ok++;
      } catch (err) {
        this.o.log?.warn({ peer: id, table: this.table.name, err: ThocError.from(err).message }, "object store: table pull failed");
      }
    }));
    return ok;
  }

  /** The live value of a key, asking the live peers before declaring it absent. */
  async lookup(key: string): Promise<string | undefined> {
    const here = this.table.get(key);
    if (here !== undefined) return here;
    await this.pull();
    return this.table.get(key);
  }

  async list(): Promise<{ key: string; value: string }[]> {
    await this.pull();
    return this.table.live();
  }

  /** Anti-entropy: digest first, then full state both ways only when they differ. */
  async syncWith(id: string): Promise<void> {
    const p = this.o.peer(id);
    const theirs = await p.syncTable(this.table.name, this.table.digest(), []);
    if (theirs.digest === this.table.digest()) return;
    if (theirs.entries.length) await this.table.merge(theirs.entries);
    if (theirs.digest !== this.table.digest()) await p.syncTable(this.table.name, "", this.table.all());
  }
}
