/** Test helpers shared by container/*.test.ts: a manager over a real LocalStore and a MemoryEngine. */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { MemoryEngine } from "../engine/index.js";
import { LocalStore } from "../store/index.js";
import { ContainerManager, type ContainerManagerOptions } from "./manager.js";
import type { ContainerSpecInput } from "./spec.js";
import { validateContainerSpec } from "./spec.js";
import type { ContainerChange, ContainerRecord, ContainerSpec } from "./types.js";

export interface Fixture {
  dir: string;
  store: LocalStore;
  engine: MemoryEngine;
  m: ContainerManager;
  changes: ContainerChange[];
  /** A manager over the same store and engine (an agent restart). */
  reopen(over?: Partial<ContainerManagerOptions>): Promise<ContainerManager>;
  cleanup(): Promise<void>;
}

export const IMAGE = "localhost/bb:1";

export async function fixture(over: Partial<ContainerManagerOptions> = {}, engine = new MemoryEngine({ http: true })): Promise<Fixture> {
  const dir = await mkdtemp(path.join(tmpdir(), "thoc-ct-"));
  const store = await LocalStore.open(path.join(dir, "data"));
  engine.addImage(IMAGE);
  const changes: ContainerChange[] = [];
  const make = (o: Partial<ContainerManagerOptions>) => new ContainerManager({
    engine, records: store.json<ContainerRecord>("container"), volumesDir: path.join(dir, "data", "volumes"), node: "n1", nodeId: "node-1",
    host: () => ({ cpus: 4, memoryBytes: 8 * 2 ** 30 }), loadFactor: 1, stopTimeoutMs: 100,
    onChange: (c) => changes.push(c), ...over, ...o,
  });
  let m = make({});
  await m.open();
  const f: Fixture = {
    dir, store, engine, m, changes,
    async reopen(o = {}) { f.m.close(); m = make(o); f.m = m; await m.open(); return m; },
    async cleanup() { f.m.close(); await engine.close(); await store.close(); await rm(dir, { recursive: true, force: true }); },
  };
  return f;
}

/** A valid spec with defaults filled in. */
export const spec = (s: ContainerSpecInput): ContainerSpec => validateContainerSpec({ image: IMAGE, ...s });

/** Waits (real time) until cond holds. */
export async function until(cond: () => boolean | Promise<boolean>, what = "condition", ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}
