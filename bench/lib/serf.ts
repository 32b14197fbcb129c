/**
 * A 5-member HashiCorp serf cluster on loopback for the membership
 * benchmark's side-by-side rows (`--vs-serf`): Debian's `serf` package
 * (`apt-get install -y serf`, 0.8.x, memberlist underneath), one agent per
 * 127.X.Y.n address, sealed with a key as thoc's gossip is. Every log line is
 * stamped with the time it arrived, since serf's own stamps have 1 s
 * resolution; memberlist's lines are what the figures are read from.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { existsSync } from "node:fs";
import { randomBytes } from "node:crypto";

export const SERF = "/usr/bin/serf";
export const serfMissing = (): string | false => (existsSync(SERF) ? false : `${SERF} not found (apt-get install -y serf)`);

/** What an observer's log says happened to a member, at a time (ms since the epoch). */
export interface SeenEvent { t: number; observer: string; member: string; type: "suspect" | "dead" | "left" | "alive"; inc?: number }

/** serf / memberlist info lines -> events (the accuser logs "Suspect"; every member logs the Event* lines). */
const PATTERNS: [RegExp, SeenEvent["type"]][] = [
  [/memberlist: Suspect (\S+) has failed/, "suspect"],
  [/serf: EventMemberFailed: (\S+)/, "dead"],
  [/serf: EventMemberLeave: (\S+)/, "left"],
  [/serf: EventMemberJoin: (\S+)/, "alive"],
];

interface Agent { name: string; bind: string; proc?: ChildProcess; exited?: Promise<unknown> }

export class SerfCluster {
  readonly agents: Agent[] = [];
  readonly events: SeenEvent[] = [];
  private readonly key = randomBytes(32).toString("base64");

  /** block: a 127.X.Y prefix of its own (agent i binds 127.X.Y.(i+2)); profile: serf's timing profile. */
  constructor(block: string, n: number, private readonly profile: "lan" | "local" = "lan") {
    for (let i = 0; i < n; i++) this.agents.push({ name: `s${i + 1}`, bind: `${block}.${i + 2}` });
  }

  get names(): string[] { return this.agents.map((a) => a.name); }

  pid(i: number): number | undefined { return this.agents[i]!.proc?.pid; }

  /** Spawns agent i (joining the first one), without waiting for anything. */
  spawn(i: number): void {
    const a = this.agents[i]!;
    const seed = this.agents[0]!.bind;
    const p = spawn(SERF, ["agent", `-node=${a.name}`, `-bind=${a.bind}:7946`, `-rpc-addr=${a.bind}:7373`, `-profile=${this.profile}`,
      `-encrypt=${this.key}`, "-log-level=info", ...(i === 0 ? [] : [`-retry-join=${seed}:7946`, "-retry-interval=1s"])],
    { stdio: ["ignore", "pipe", "pipe"] });
    a.proc = p;
    a.exited = once(p, "exit");
    let rest = "";
    const onData = (b: Buffer) => {
      const t = Date.now();
      const lines = (rest + b.toString()).split("\n");
      rest = lines.pop() ?? "";
      for (const l of lines) {
        for (const [re, type] of PATTERNS) {
          const m = re.exec(l);
          if (m && m[1] !== a.name) this.events.push({ t, observer: a.name, member: m[1]!, type });
        }
      }
    };
    p.stdout!.on("data", onData);
    p.stderr!.on("data", onData);
  }

  start(): void { for (let i = 0; i < this.agents.length; i++) this.spawn(i); }

  /** SIGKILL (a crash) or SIGINT (serf's graceful leave; its SIGTERM skips the leave by default). */
  async stopAgent(i: number, how: "crash" | "leave"): Promise<void> {
    const a = this.agents[i]!;
    if (!a.proc || a.proc.exitCode !== null || a.proc.signalCode !== null) return;
    a.proc.kill(how === "crash" ? "SIGKILL" : "SIGINT");
    const t = setTimeout(() => a.proc?.kill("SIGKILL"), 15_000);
    await a.exited;
    clearTimeout(t);
  }

  async stop(): Promise<void> {
    await Promise.all(this.agents.map((_, i) => this.stopAgent(i, "crash")));
  }
}
