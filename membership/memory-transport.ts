/**
 * An in-memory network for simulations: per-datagram latency and uniform
 * loss from a seeded PRNG, partitions, crashed nodes, and "slow" nodes whose
 * traffic is held back as if their CPU were starved. Streams share latency
 * and partitions but are reliable (TCP retransmits), as on a real network.
 */
import type { Clock, Transport } from "./types.js";

type Handlers = Parameters<Transport["listen"]>[0];

export interface NetworkOptions {
  clock: Clock;
  random: () => number;
  /** One-way latency range, ms. */
  latency?: [number, number];
  /** Probability that a datagram is lost. */
  loss?: number;
}

export class MemoryNetwork {
  loss: number;
  latency: [number, number];
  readonly nodes = new Map<string, MemoryTransport>();
  /** Partition groups: addresses in different groups cannot reach each other. */
  private group = new Map<string, number>();
  /** Extra processing delay per address (a CPU-starved node), ms range. */
  readonly slow = new Map<string, [number, number]>();
  packets = 0;
  lost = 0;
  bytes = 0;

  constructor(readonly o: NetworkOptions) {
    this.loss = o.loss ?? 0;
    this.latency = o.latency ?? [1, 5];
  }

  transport(address: string): MemoryTransport {
    const t = new MemoryTransport(this, address);
    this.nodes.set(address, t);
    return t;
  }

  partition(groups: string[][]): void {
    this.group = new Map();
    groups.forEach((g, i) => g.forEach((a) => this.group.set(a, i)));
  }

  heal(): void { this.group = new Map(); }

  reachable(a: string, b: string): boolean {
    const ga = this.group.get(a), gb = this.group.get(b);
    return ga === undefined || gb === undefined || ga === gb;
  }

  delay(from: string, to: string): number {
    const [lo, hi] = this.latency;
    let d = lo + (hi - lo) * this.o.random();
    for (const a of [from, to]) {
      const s = this.slow.get(a);
      if (s) d += s[0] + (s[1] - s[0]) * this.o.random();
    }
    return d;
  }

  /** A stream leg: like a datagram, plus TCP's retransmission timeout (200 ms, doubling) for every loss. */
  streamDelay(from: string, to: string): number {
    let d = this.delay(from, to);
    for (let rto = 200; this.o.random() < this.loss && rto < 60_000; rto *= 2) d += rto;
    return d;
  }

  deliverPacket(from: string, to: string, data: Uint8Array): void {
    this.packets++;
    this.bytes += data.length;
    if (this.o.random() < this.loss || !this.reachable(from, to)) { this.lost++; return; }
    const copy = Uint8Array.from(data);
    this.o.clock.after(this.delay(from, to), () => {
      const dst = this.nodes.get(to);
      if (dst?.up && this.reachable(from, to)) dst.handlers?.packet(copy, from);
    });
  }

  request(from: string, to: string, data: Uint8Array, timeoutMs: number): Promise<Uint8Array> {
    this.bytes += data.length;
    return new Promise((resolve, reject) => {
      let done = false;
      const timer = this.o.clock.after(timeoutMs, () => { if (!done) { done = true; reject(new Error("timeout")); } });
      const fail = (e: Error) => { if (!done) { done = true; timer.cancel(); reject(e); } };
      this.o.clock.after(this.streamDelay(from, to), () => {
        const dst = this.nodes.get(to);
        if (!dst?.up || !dst.handlers || !this.reachable(from, to)) return fail(new Error("connection refused"));
        dst.handlers.request(Uint8Array.from(data), from).then((resp) => {
          this.bytes += resp.length;
          this.o.clock.after(this.streamDelay(to, from), () => {
            if (done) return;
            if (!this.reachable(from, to)) return fail(new Error("connection reset"));
            done = true;
            timer.cancel();
            resolve(resp);
          });
        }, (e: Error) => fail(e));
      });
    });
  }
}

export class MemoryTransport implements Transport {
  handlers?: Handlers;
  /** False once the node crashed or closed: it neither sends nor receives. */
  up = true;
  constructor(private readonly net: MemoryNetwork, readonly address: string) {}

  sendPacket(to: string, data: Uint8Array): void {
    if (this.up) this.net.deliverPacket(this.address, to, data);
  }

  request(to: string, data: Uint8Array, timeoutMs: number): Promise<Uint8Array> {
    if (!this.up) return Promise.reject(new Error("closed"));
    return this.net.request(this.address, to, data, timeoutMs);
  }

  listen(h: Handlers): void { this.handlers = h; }

  async close(): Promise<void> { this.up = false; }
}
