/**
 * A 3-member etcd cluster on loopback for the scheduler benchmark's failover
 * baseline: Debian's etcd-server (3.4), driven through its v3 HTTP gateway
 * (/v3/maintenance/status, /v3/kv/put), members SIGKILLed and restarted on
 * their data dirs. `apt-get install etcd-server` provides /usr/bin/etcd.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";

export const ETCD = "/usr/bin/etcd";
export const etcdMissing = (): string | false => (existsSync(ETCD) ? false : `${ETCD} not found (apt-get install etcd-server)`);

interface Member { name: string; client: string; peer: string; proc?: ChildProcess; exited?: Promise<unknown>; log: string }

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export class EtcdCluster {
  readonly members: Member[] = [];
  private dir = "";

  /** heartbeat / election in ms (etcd's defaults: 100 / 1000). */
  constructor(private readonly heartbeatMs: number, private readonly electionMs: number) {
    // Away from etcd's customary 2379/2380 and from other runs of this benchmark.
    const base = 31000 + (process.pid % 400) * 10;
    for (let i = 0; i < 3; i++) this.members.push({ name: `e${i + 1}`, client: `http://127.0.0.1:${base + i}`, peer: `http://127.0.0.1:${base + 5 + i}`, log: "" });
  }

  async start(): Promise<void> {
    this.dir = await mkdtemp(path.join(tmpdir(), "thoc-bench-etcd-"));
    for (const m of this.members) this.spawn(m);
    for (const m of this.members) await this.waitHealthy(m);
  }

  private spawn(m: Member): void {
    const initial = this.members.map((x) => `${x.name}=${x.peer}`).join(",");
    const p = spawn(ETCD, [
      "--name", m.name, "--data-dir", path.join(this.dir, m.name),
      "--listen-client-urls", m.client, "--advertise-client-urls", m.client,
      "--listen-peer-urls", m.peer, "--initial-advertise-peer-urls", m.peer,
      "--initial-cluster", initial, "--initial-cluster-state", "new", "--initial-cluster-token", `bench-${process.pid}`,
      "--heartbeat-interval", String(this.heartbeatMs), "--election-timeout", String(this.electionMs),
      "--logger", "zap", "--log-level", "error",
    ], { stdio: ["ignore", "ignore", "pipe"] });
    m.log = "";
    p.stderr!.on("data", (b: Buffer) => { m.log = (m.log + b.toString()).slice(-4000); });
    m.proc = p;
    m.exited = once(p, "exit");
  }

  private async call(m: Member, api: string, body: unknown, timeoutMs: number): Promise<Record<string, unknown>> {
    const r = await fetch(`${m.client}${api}`, { method: "POST", body: JSON.stringify(body), signal: AbortSignal.timeout(timeoutMs) });
    const j = await r.json() as Record<string, unknown>;
    if (!r.ok || j.error) throw new Error(`${m.name} ${api}: ${r.status} ${JSON.stringify(j)}`);
    return j;
  }

  /** The member id of the leader this member knows, and its own id. */
  async status(m: Member): Promise<{ id: string; leader: string }> {
    const s = await this.call(m, "/v3/maintenance/status", {}, 1000);
    return { id: String((s.header as Record<string, unknown>).member_id), leader: String(s.leader ?? "0") };
  }

  /** The member every running member names as leader, once they agree. */
  async leader(timeoutMs = 30_000): Promise<Member> {
    const t0 = Date.now();
    while (Date.now() - t0 < timeoutMs) {
      try {
        const st = await Promise.all(this.members.map((m) => this.status(m)));
        const lead = st[0]!.leader;
        if (lead !== "0" && st.every((s) => s.leader === lead)) return this.members[st.findIndex((s) => s.id === lead)]!;
      } catch { /* one is (re)starting */ }
      await sleep(50);
    }
    throw new Error(`etcd members never agreed on a leader: ${this.members.map((m) => m.log.slice(-500)).join("\n")}`);
  }

  put(m: Member, key: string, value: string, timeoutMs: number): Promise<unknown> {
    return this.call(m, "/v3/kv/put", { key: Buffer.from(key).toString("base64"), value: Buffer.from(value).toString("base64") }, timeoutMs);
  }

  async kill(m: Member): Promise<void> {
    m.proc?.kill("SIGKILL");
    await m.exited;
  }

  /** Restarts a killed member on its data dir and waits until a put through it succeeds. */
  async restart(m: Member): Promise<void> {
    this.spawn(m);
    await this.waitHealthy(m);
  }

  private async waitHealthy(m: Member): Promise<void> {
    const t0 = Date.now();
    while (Date.now() - t0 < 30_000) {
      try { await this.put(m, "bench/health", m.name, 1000); return; } catch { await sleep(50); }
    }
    throw new Error(`etcd ${m.name} not healthy after 30 s: ${m.log}`);
  }

  async stop(): Promise<void> {
    for (const m of this.members) if (m.proc && m.proc.exitCode === null && m.proc.signalCode === null) await this.kill(m);
    if (this.dir) await rm(this.dir, { recursive: true, force: true });
  }
}
