/**
 * A real network partition: 5 agents, each in its own network namespace,
 * routed through a router namespace where iptables drops traffic between
 * {n1,n2,n3} and {n4,n5}. After the heal the views must re-merge. Needs root
 * (ip netns); skipped with a message when namespaces cannot be created.
 *
 * The agents bind 10.77.x.2, not loopback, so they run as production does
 * (--dev binds only loopback): a cluster key of their own and TLS on gRPC
 * from a test CA, which the CLI verifies.
 */
import { makeCa, issue, nodeSubject, operatorSubject } from "./certs.js";
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { CLI, REPO_ROOT, newClusterKey, waitFor } from "./harness.js";

const tag = `t${process.pid % 100000}`;
const router = `thoc-${tag}-r`;
const ns = (i: number) => `thoc-${tag}-${i}`;
const ip = (i: number) => `10.77.${i}.2`;
const N = 5;

function sh(...args: string[]): string {
  return execFileSync(args[0]!, args.slice(1), { stdio: ["ignore", "pipe", "pipe"] }).toString();
}

let skip: string | false = false;
try {
  sh("ip", "netns", "add", router);
} catch (err) {
  skip = `ip netns add failed (${(err as Error).message.split("\n")[0]}): needs root and iproute2`;
}

const procs: ChildProcess[] = [];
const output: string[] = [];
let root = "";
const clusterKey = newClusterKey();
let tls: { ca: string; cert: string; key: string; adminCert: string; adminKey: string };

/** A test CA, one node certificate for every agent's address, and an admin operator certificate for the CLI. */
async function makeCerts(dir: string): Promise<typeof tls> {
  const ca = makeCa(dir);
  const node = issue(ca, "node", nodeSubject("netns-node"), Array.from({ length: N }, (_, i) => ip(i + 1)));
  const admin = issue(ca, "admin", operatorSubject("netns-admin", "admin"));
  return { ca: ca.cert, cert: node.cert, key: node.key, adminCert: admin.cert, adminKey: admin.key };
}

function spawnAgent(i: number): void {
  const p = spawn("ip", ["netns", "exec", ns(i), process.execPath, CLI, "agent", "--config", "/dev/null", "--name", `n${i}`, "--bind", ip(i),
    "--data-dir", path.join(root, `n${i}`), "--join", `${ip(1)}:7946`, "--join", `${ip(4)}:7946`], {
    cwd: REPO_ROOT, stdio: ["ignore", "pipe", "pipe"],
    env: {
      ...process.env, THOC_PRESET: "test", THOC_CLUSTER_KEYS: clusterKey, THOC_HYPERVISOR_URI: "test:///default",
      THOC_TLS_CERT_FILE: tls.cert, THOC_TLS_KEY_FILE: tls.key, THOC_TLS_CA_FILE: tls.ca,
    },
  });
  output[i] = "";
  p.stdout!.on("data", (b: Buffer) => { output[i] += b; if (output[i]!.length > 1e6) output[i] = output[i]!.slice(-5e5); });
  p.stderr!.on("data", (b: Buffer) => { output[i] += b; });
  procs[i] = p;
}

function membersOf(i: number): { name: string; state: string }[] {
  const out = execFileSync("ip", ["netns", "exec", ns(i), process.execPath, CLI, "--addr", `${ip(i)}:7400`, "--tls-ca", tls.ca, "--tls-cert", tls.adminCert, "--tls-key", tls.adminKey, "members", "--json"],
    { cwd: REPO_ROOT, stdio: ["ignore", "pipe", "pipe"], timeout: 15_000 }).toString();
  return JSON.parse(out) as { name: string; state: string }[];
}

function view(i: number): Record<string, string> {
  return Object.fromEntries(membersOf(i).map((m) => [m.name, m.state]));
}

before(async () => {
  if (skip) return;
  root = await mkdtemp(path.join(tmpdir(), "thoc-netns-"));
  tls = await makeCerts(root);
  sh("ip", "netns", "exec", router, "sysctl", "-qw", "net.ipv4.ip_forward=1");
  sh("ip", "-n", router, "link", "set", "lo", "up");
  for (let i = 1; i <= N; i++) {
    sh("ip", "netns", "add", ns(i));
    sh("ip", "-n", ns(i), "link", "set", "lo", "up");
    sh("ip", "link", "add", `tv${tag}${i}`, "netns", router, "type", "veth", "peer", "name", "eth0", "netns", ns(i));
    sh("ip", "-n", router, "addr", "add", `10.77.${i}.1/24`, "dev", `tv${tag}${i}`);
    sh("ip", "-n", router, "link", "set", `tv${tag}${i}`, "up");
    sh("ip", "-n", ns(i), "addr", "add", `${ip(i)}/24`, "dev", "eth0");
    sh("ip", "-n", ns(i), "link", "set", "eth0", "up");
    sh("ip", "-n", ns(i), "route", "add", "default", "via", `10.77.${i}.1`);
  }
  for (let i = 1; i <= N; i++) spawnAgent(i);
});

after(async () => {
  for (const p of procs) p?.kill("SIGKILL");
  await new Promise((r) => setTimeout(r, 300));
  if (skip) return;
  for (let i = 1; i <= N; i++) { try { sh("ip", "netns", "del", ns(i)); } catch { /* gone */ } }
  try { sh("ip", "netns", "del", router); } catch { /* gone */ }
  if (root) await rm(root, { recursive: true, force: true });
});

function dump(): string {
  return output.map((o, i) => (o ? `--- n${i}\n${o.slice(-1500)}` : "")).join("\n");
}

test("netns partition 3 | 2: each side declares the other dead, and views re-merge after the heal", { skip }, async () => {
  const all = ["n1", "n2", "n3", "n4", "n5"];
  const everyoneSees = (want: (viewer: number, name: string) => string) => () => {
    for (let i = 1; i <= N; i++) {
      const v = view(i);
      for (const n of all) if (v[n] !== want(i, n)) return false;
    }
    return true;
  };
  await waitFor("5 alive in every namespace", everyoneSees(() => "alive"), 30_000, 500).catch((e: Error) => { throw new Error(`${e.message}\n${dump()}`); });

  const sideA = [1, 2, 3], sideB = [4, 5];
  for (const a of sideA) for (const b of sideB) {
    sh("ip", "netns", "exec", router, "iptables", "-A", "FORWARD", "-s", `10.77.${a}.0/24`, "-d", `10.77.${b}.0/24`, "-j", "DROP");
    sh("ip", "netns", "exec", router, "iptables", "-A", "FORWARD", "-s", `10.77.${b}.0/24`, "-d", `10.77.${a}.0/24`, "-j", "DROP");
  }
  const side = (i: number) => (sideA.includes(i) ? "A" : "B");
  const nameSide = (n: string) => side(Number(n.slice(1)));
  await waitFor("each side sees the other dead", everyoneSees((i, n) => (nameSide(n) === side(i) ? "alive" : "dead")), 30_000, 500);
  // Stay split for a while: dead members are no longer probed, only the re-join path can bring them back.
  await new Promise((r) => setTimeout(r, 5000));
  assert.ok(everyoneSees((i, n) => (nameSide(n) === side(i) ? "alive" : "dead"))(), "still split");

  sh("ip", "netns", "exec", router, "iptables", "-F", "FORWARD");
  const t0 = Date.now();
  // Dead members are not probed: only the re-join loop (gossip.rejoinInterval, 2 s with the local preset) and the
  // push-pull it starts can merge the views, so ten rounds of it is a bound that means something.
  await waitFor("views re-merged", everyoneSees(() => "alive"), 20_000, 500).catch((e: Error) => { throw new Error(`${e.message}\n${dump()}`); });
  console.log(`  re-merged ${Date.now() - t0} ms after the heal`);
  // And the merged views hold: no member flaps back to suspect or dead.
  await new Promise((r) => setTimeout(r, 3000));
  assert.ok(everyoneSees(() => "alive")(), `views did not stay merged\n${dump()}`);
});
