/**
 * Agents in network namespaces for real partitions: agent i runs in its own
 * namespace at <base>.i.2, wired by a veth pair to a router namespace
 * (<base>.i.1) that forwards between them; iptables in the router drops
 * traffic between the sides of a partition. The test process reaches every
 * agent through one more veth pair (root namespace <base>.250.2 ↔ router
 * <base>.250.1), so its clients talk to both sides whatever the partition.
 * Needs root (ip netns, iptables); `netnsUnavailable()` says why not.
 */
import { makeCa, issue, nodeSubject, operatorSubject } from "./certs.js";
import { execFileSync } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { AgentProcess, newClusterKey, type AgentOptions } from "./harness.js";

function sh(...args: string[]): string {
  return execFileSync(args[0]!, args.slice(1), { stdio: ["ignore", "pipe", "pipe"] }).toString();
}

/** Why namespaces cannot be used here (false when they can). */
export function netnsUnavailable(): string | false {
  const probe = `thoc-probe-${process.pid}`;
  try {
    sh("ip", "netns", "add", probe);
    sh("ip", "netns", "exec", probe, "iptables", "-L", "FORWARD", "-n");
  } catch (err) {
    return `network namespaces unavailable (${(err as Error).message.split("\n")[0]}): needs root, iproute2 and iptables`;
  } finally {
    try { sh("ip", "netns", "del", probe); } catch { /* never made */ }
  }
  return false;
}

export interface LabOptions extends AgentOptions {
  /** Agent numbers every other agent joins (default [1]). */
  seeds?: number[];
  /** The agent number that starts without --join (a new cluster's first node); default none. */
  bootstrap?: number;
}

export class NetnsLab {
  readonly agents: AgentProcess[] = [];
  private readonly tag = `t${process.pid % 100000}`;
  /** A /16 per test process, away from membership-netns.test.ts's 10.77. */
  readonly base = `10.${100 + (process.pid % 100)}`;
  private root = "";
  private made: string[] = [];
  private routed = false;

  get router(): string { return `thoc-${this.tag}-r`; }
  ns(i: number): string { return `thoc-${this.tag}-${i}`; }
  ip(i: number): string { return `${this.base}.${i}.2`; }

  /**
   * Makes n namespaces and agents n1..nn (not started); every agent joins the
   * gossip addresses of the agents numbered in `seeds`, except agent
   * `bootstrap`, which starts a new cluster (no --join): the scheduler makes
   * only such a node its first voter, so without one no leader is elected.
   */
  static async create(n: number, opts: LabOptions = {}): Promise<NetnsLab> {
    const lab = new NetnsLab();
    try {
      await lab.setup(n, opts);
    } catch (err) {
      await lab.close();
      throw err;
    }
    return lab;
  }

  private async setup(n: number, opts: LabOptions): Promise<void> {
    this.root = await mkdtemp(path.join(tmpdir(), "thoc-netns-"));
    const r = this.router;
    sh("ip", "netns", "add", r);
    this.made.push(r);
    sh("ip", "netns", "exec", r, "sysctl", "-qw", "net.ipv4.ip_forward=1");
    sh("ip", "-n", r, "link", "set", "lo", "up");
    const link = (i: number, peerNs: string | undefined, dev: string) => {
      const rdev = `tv${this.tag}${i}`;
      sh("ip", "link", "add", rdev, "netns", r, "type", "veth", "peer", "name", dev, ...(peerNs ? ["netns", peerNs] : []));
      sh("ip", "-n", r, "addr", "add", `${this.base}.${i}.1/24`, "dev", rdev);
      sh("ip", "-n", r, "link", "set", rdev, "up");
      const inNs = peerNs ? ["-n", peerNs] : [];
      sh("ip", ...inNs, "addr", "add", `${this.base}.${i}.2/24`, "dev", dev);
      sh("ip", ...inNs, "link", "set", dev, "up");
    };
    for (let i = 1; i <= n; i++) {
      const ns = this.ns(i);
      sh("ip", "netns", "add", ns);
      this.made.push(ns);
      sh("ip", "-n", ns, "link", "set", "lo", "up");
      link(i, ns, "eth0");
      sh("ip", "-n", ns, "route", "add", "default", "via", `${this.base}.${i}.1`);
    }
    // The test process's way in (its end of the pair lives in the root namespace).
    link(250, undefined, `th${this.tag}`);
    sh("ip", "route", "add", `${this.base}.0.0/16`, "via", `${this.base}.250.1`);
    this.routed = true;
    const seeds = (opts.seeds ?? [1]).map((s) => `${this.ip(s)}:7946`);
    // Off loopback an agent runs as production does (--dev binds only loopback): one cluster key for all, and
    // TLS on gRPC from a test CA, which the CLI (THOC_TLS_CA) and peers verify.
    const tls = await this.certs(n);
    // The CLI calls as an admin operator (rpc/identity.ts subject format); the agents present node certificates.
    Object.assign(process.env, { THOC_TLS_CA: tls.ca, THOC_TLS_CERT: tls.adminCert, THOC_TLS_KEY: tls.adminKey });
    const agentOpts = {
      dev: false, clusterKey: newClusterKey(), ...opts,
      env: { ...opts.env, THOC_TLS_CERT_FILE: tls.cert, THOC_TLS_KEY_FILE: tls.key, THOC_TLS_CA_FILE: tls.ca },
    };
    for (let i = 1; i <= n; i++) {
      const join = i === opts.bootstrap ? [] : seeds;
      this.agents.push(new AgentProcess(`n${i}`, this.ip(i), path.join(this.root, `n${i}`), { ...agentOpts, join, wrap: ["ip", "netns", "exec", this.ns(i)] }));
    }
  }

  /** A test CA, one node certificate valid for every agent's address, and an admin operator certificate for the CLI. */
  private async certs(n: number): Promise<{ ca: string; cert: string; key: string; adminCert: string; adminKey: string }> {
    const ca = makeCa(this.root);
    const node = issue(ca, "node", nodeSubject("netns-node"), Array.from({ length: n }, (_, i) => this.ip(i + 1)));
    const admin = issue(ca, "admin", operatorSubject("netns-admin", "admin"));
    return { ca: ca.cert, cert: node.cert, key: node.key, adminCert: admin.cert, adminKey: admin.key };
  }


  /**
   * Drops all traffic between agents of different sides (agent numbers,
   * 1-based), every rule in one iptables-restore commit: added one by one
   * (a process each) a 2 | 3 split took over a second on a loaded machine,
   * long enough for the majority to elect and reach the minority through
   * the rules not yet in.
   */
  partition(sides: number[][]): void {
    const rules: string[] = [];
    for (const [x, a] of sides.entries()) for (const [y, b] of sides.entries()) {
      if (x === y) continue;
      for (const i of a) for (const j of b) rules.push(`-A FORWARD -s ${this.base}.${i}.0/24 -d ${this.base}.${j}.0/24 -j DROP`);
    }
    execFileSync("ip", ["netns", "exec", this.router, "iptables-restore", "--noflush"], { input: `*filter\n${rules.join("\n")}\nCOMMIT\n`, stdio: ["pipe", "pipe", "pipe"] });
  }

  heal(): void {
    sh("ip", "netns", "exec", this.router, "iptables", "-F", "FORWARD");
  }

  async close(): Promise<void> {
    await Promise.all(this.agents.map((a) => a.kill("SIGKILL")));
    if (this.routed) { try { sh("ip", "route", "del", `${this.base}.0.0/16`); } catch { /* gone */ } }
    // Deleting a namespace deletes its veth ends, and with them their peers.
    for (const ns of this.made.reverse()) { try { sh("ip", "netns", "del", ns); } catch { /* gone */ } }
    try { sh("ip", "link", "del", `th${this.tag}`); } catch { /* went with the router */ }
    if (this.root && !process.env.THOC_TEST_KEEP) await rm(this.root, { recursive: true, force: true });
  }
}
