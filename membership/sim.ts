/**
 * A simulated cluster (fake clock, in-memory lossy network, real sealing and
 * the real protocol code) for tests and the benchmark.
 */
import { DEV_CLUSTER_KEY, presetDefault, schema, type Preset } from "../config/index.js";
import { FakeClock, seededRandom } from "../core/index.js";
import { Keyring } from "./keyring.js";
import { MemoryNetwork, type MemoryTransport } from "./memory-transport.js";
import { GossipNode } from "./node.js";
import type { GossipTimers } from "./swim.js";
import type { MemberState, NodeMeta } from "./types.js";

export function presetTimers(preset: Preset): GossipTimers {
  const out: Record<string, number> = {};
  for (const [k, o] of Object.entries(schema.gossip)) out[k] = presetDefault(o, preset) as number;
  return out as unknown as GossipTimers;
}

export function testMeta(name: string, addr: string): NodeMeta {
  const host = addr.split(":")[0]!;
  return {
    name, version: "0.1.0", grpc: `${host}:7400`, s3: `${host}:7480`, gossip: addr,
    cpus: 8, memBytes: 32 << 30, memFreeBytes: 16 << 30, diskBytes: 1e12, diskFreeBytes: 5e11, gpus: 0,
  };
}

export interface SimOptions {
  n: number;
  seed?: number;
  preset?: Preset;
  timers?: Partial<GossipTimers>;
  loss?: number;
  latency?: [number, number];
  /** Every node joins through this many seeds (the first nodes). */
  seeds?: number;
}

export interface SimNode { name: string; addr: string; node: GossipNode; transport: MemoryTransport }

export class Sim {
  readonly clock = new FakeClock();
  readonly random: () => number;
  readonly net: MemoryNetwork;
  readonly nodes: SimNode[] = [];
  readonly timers: GossipTimers;
  private readonly seeds: string[];

  constructor(readonly o: SimOptions) {
    this.random = seededRandom(o.seed ?? 1);
    this.net = new MemoryNetwork({ clock: this.clock, random: this.random, loss: 0, latency: o.latency ?? [1, 5] });
    this.timers = { ...presetTimers(o.preset ?? "lan"), ...o.timers };
    this.seeds = Array.from({ length: o.seeds ?? 1 }, (_, i) => Sim.addr(i));
    for (let i = 0; i < o.n; i++) this.add(i);
  }

  static addr(i: number): string { return `10.0.${i >> 8}.${i & 255}:7946`; }

  add(i: number, incarnation = 1): SimNode {
    const addr = Sim.addr(i);
    const name = `n${i}`;
    const transport = this.net.transport(addr);
    const node = new GossipNode({
      id: `id-${i}`, meta: testMeta(name, addr), transport, clock: this.clock,
      keyring: new Keyring([DEV_CLUSTER_KEY], "sim"), timers: this.timers, seeds: this.seeds,
      random: this.random, incarnation,
    });
    const s = { name, addr, node, transport };
    this.nodes[i] = s;
    return s;
  }

  start(): void { for (const n of this.nodes) n.node.start(); }

  /** Runs until fn() holds (checked every stepMs of simulated time) or maxMs passes; returns simulated ms taken. */
  async until(fn: () => boolean, maxMs: number, stepMs = 100): Promise<number> {
    const t0 = this.clock.now();
    while (!fn()) {
      if (this.clock.now() - t0 >= maxMs) throw new Error(`condition not met within ${maxMs} simulated ms`);
      await this.clock.advance(stepMs);
    }
    return this.clock.now() - t0;
  }

  async run(ms: number, stepMs = 1000, each?: () => void): Promise<void> {
    for (let t = 0; t < ms; t += stepMs) {
      await this.clock.advance(Math.min(stepMs, ms - t));
      each?.();
    }
  }

  /** Crashes node i: it stops sending, receiving and running timers. */
  async crash(i: number): Promise<void> {
    const n = this.nodes[i]!;
    n.transport.up = false;
    n.node.swim.stop();
  }

  /** How node `viewer` sees node `target`. */
  state(viewer: number, target: number): MemberState | undefined {
    return this.nodes[viewer]!.node.member(`id-${target}`)?.state;
  }

  live(): SimNode[] { return this.nodes.filter((n) => n.transport.up); }

  /** True when every running node sees every running node alive (and knows exactly them as alive). */
  converged(): boolean {
    const live = this.live();
    return live.every((v) => live.every((t) => v.node.member(t.node.localId)?.state === "alive"));
  }
}
