/**
 * Issue 13 item 9 (hostile input) and item 7's file modes, against real
 * agent processes: the configuration refused before anything binds, modes
 * under the data dir whatever the umask, /readyz false while S3 cannot serve,
 * bounded shutdown when libvirt never answers, and RSS under a gossip TCP flood.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { chmod, lstat, mkdtemp, readdir, rm } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import * as s3 from "@aws-sdk/client-s3";
import { AgentProcess, Cluster, loopbackBlock, newClusterKey, runCli, sleep, waitFor } from "./harness.js";
import { S3_ENV, s3client } from "./objectstore-util.js";

async function tmp(prefix: string): Promise<string> {
  return mkdtemp(path.join(tmpdir(), prefix));
}

/** Runs `thoc-node agent ARGS` (local timers, test hypervisor) to its exit. */
function agentRun(args: string[], env: Record<string, string> = {}, timeoutMs = 15_000) {
  return runCli(["agent", ...args, "--log-level", "warn"], timeoutMs, { THOC_PRESET: "test", ...env });
}

/** A self-signed ECDSA certificate and its key (openssl writes the key 0600). */
function selfSigned(dir: string): { cert: string; key: string } {
  const cert = path.join(dir, "node.crt"), key = path.join(dir, "node.key");
  execFileSync("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
    "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=thoc hardening test"], { stdio: "ignore" });
  return { cert, key };
}

test("bad configuration is exit 2 with one line naming what to fix, before anything is bound or written", { timeout: 120_000 }, async () => {
  const root = await tmp("thoc-cfg-");
  const bind = `${loopbackBlock()}.1`;
  const dataDir = path.join(root, "data");
  const dev = ["--dev", "--bind", bind, "--data-dir", dataDir];
  const prodEnv = { THOC_CLUSTER_KEYS: newClusterKey(), THOC_HYPERVISOR_URI: "test:///default" };
  const { cert, key } = selfSigned(root);
  try {
    const cases: [string, string[], Record<string, string>, RegExp][] = [
      ["--dev off loopback", ["--dev", "--bind", "0.0.0.0", "--data-dir", dataDir], {}, /config: bind: --dev .* binds only loopback/],
      ["a seed on port 99999", [...dev, "--join", "127.0.0.1:99999"], {}, /config: --join: expected a list of HOST:PORT with a port from 1 to 65535/],
      ["an empty --data-dir", ["--dev", "--bind", bind, "--data-dir", ""], {}, /config: --data-dir: expected a directory path, got ""/],
      ["a data dir under /proc", ["--dev", "--bind", bind, "--data-dir", "/proc/thoc-test"], {}, /config: dataDir: \/proc\/thoc-test is under \/proc/],
      ["an unknown preset", [...dev, "--preset", "wan"], {}, /config: --preset: expected one of lan, local, test, got "wan"/],
      ["gossipPort equal to grpcPort", [...dev, "--gossip-port", "7400"], {}, /config: gossipPort: port 7400 is also set for grpcPort/],
      ["vm.vncPort equal to s3Port", dev, { THOC_VM_VNC_PORT: "7480" }, /config: vm.vncPort: port 7480 is also set for s3Port/],
      ["an unreadable tls.certFile", ["--bind", bind, "--data-dir", dataDir], { ...prodEnv, THOC_TLS_CERT_FILE: "/nonexistent.crt", THOC_TLS_KEY_FILE: key, THOC_TLS_CA_FILE: key /* readable; the missing certificate is what is named */ },
        /config: tls.certFile: cannot read \/nonexistent.crt: ENOENT/],
    ];
    for (const [what, args, env, message] of cases) {
      const t0 = Date.now();
      const r = await agentRun(args, env);
      assert.equal(r.code, 2, `${what}: exit ${r.code}\n${r.stderr}`);
      assert.match(r.stderr, message, what);
      assert.ok(Date.now() - t0 < 10_000, `${what}: took ${Date.now() - t0} ms`);
      // Refused before the store opened, a port was bound or S3 credentials were generated.
      assert.ok(!existsSync(dataDir), `${what}: the data dir was created`);
      assert.doesNotMatch(r.stderr, /S3 root credentials|is running/, what);
    }

    // A private key others can read: refused with the chmod that fixes it.
    await chmod(key, 0o640);
    const open = await agentRun(["--bind", bind, "--data-dir", dataDir], { ...prodEnv, THOC_TLS_CERT_FILE: cert, THOC_TLS_KEY_FILE: key, THOC_TLS_CA_FILE: cert });
    assert.equal(open.code, 2, open.stderr);
    assert.match(open.stderr, new RegExp(`config: tls.keyFile: ${key} is a private key readable by group or others \\(mode 0640\\): run chmod 600 ${key}`));
    assert.ok(!existsSync(dataDir));
    await chmod(key, 0o600);

    // An address no interface has: the documented "cannot bind" code, 3.
    const nowhere = await agentRun(["--bind", "192.0.2.77", "--data-dir", dataDir], { ...prodEnv, THOC_TLS_CERT_FILE: cert, THOC_TLS_KEY_FILE: key, THOC_TLS_CA_FILE: cert });
    assert.equal(nowhere.code, 3, nowhere.stderr);
    assert.match(nowhere.stderr, /cannot listen on 192\.0\.2\.77:\d+: no such local address; check --bind/);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});

/** Every path under dir with its mode, QEMU's vms/ and images/ trees left out. */
async function modes(dir: string, rel = ""): Promise<[string, number, boolean][]> {
  const out: [string, number, boolean][] = [];
  for (const e of await readdir(path.join(dir, rel))) {
    const r = path.join(rel, e);
    if (r === "vms" || r === "images") continue;
    const st = await lstat(path.join(dir, r));
    // The CLI's local socket (the harness puts it in the data dir) holds no data: it is 0660 to group
    // thoc when that group exists (e.g. while test/deb.test.ts has the package installed), which
    // test/authz.test.ts covers.
    if (st.isSocket()) continue;
    out.push([r, st.mode & 0o777, st.isDirectory()]);
    if (st.isDirectory()) out.push(...await modes(dir, r));
  }
  return out;
}

test("with umask 022 the agent's data dir holds only 0700 directories and 0600 files; an existing data dir keeps its mode", { timeout: 120_000 }, async () => {
  const root = await tmp("thoc-modes-");
  const block = loopbackBlock();
  const wrap = ["sh", "-c", 'umask 022; exec "$0" "$@"'];
  // dev: the agent creates the data dir; prod: the harness makes it 0750 first, as the systemd unit does.
  const agents = [
    new AgentProcess("m1", `${block}.2`, path.join(root, "made-by-agent", "m1"), { dev: true, wrap, env: S3_ENV }),
    new AgentProcess("m2", `${block}.3`, path.join(root, "m2"), { dev: false, wrap, env: S3_ENV }),
  ];
  try {
    await Promise.all(agents.map((a) => a.start()));
    for (const a of agents) {
      // Object data, bucket and key records on disk, so every kind of file the agent writes is there.
      const c = s3client(a);
      await c.send(new s3.CreateBucketCommand({ Bucket: "modes" }));
      await c.send(new s3.PutObjectCommand({ Bucket: "modes", Key: "big", Body: Buffer.alloc(256 << 10, 1) }));
      c.destroy();
    }
    await sleep(500);
    assert.equal((await lstat(path.join(root, "made-by-agent"))).mode & 0o777, 0o700, "a parent the agent created");
    assert.equal((await lstat(agents[0]!.dataDir)).mode & 0o777, 0o700, "the data dir the agent created");
    assert.equal((await lstat(agents[1]!.dataDir)).mode & 0o777, 0o750, "an existing data dir keeps its mode");
    for (const a of agents) {
      const all = await modes(a.dataDir);
      assert.ok(all.some(([p]) => p.startsWith("replicas")) && all.some(([p]) => p.startsWith("meta")), JSON.stringify(all));
      // Certificates (pki/*.crt) are public by nature and stay 0644; every key and every other file is 0600.
      const wrong = all.filter(([p, m, dir]) => m !== (dir ? 0o700 : 0o600) && !(p.endsWith(".crt") && m === 0o644)).map(([p, m]) => `${p} ${m.toString(8)}`);
      assert.deepEqual(wrong, [], `${a.name}: modes other than 0700/0600`);
      // The test driver runs no QEMU, so nobody else needs the VM tree either (on qemu:///system it is
      // 0710 root:<QEMU's group>: test/boot/vm-prod.test.ts).
      assert.equal((await lstat(path.join(a.dataDir, "vms"))).mode & 0o777, 0o700);
    }
  } finally {
    await Promise.all(agents.map((a) => a.kill("SIGKILL")));
    await rm(root, { recursive: true, force: true });
  }
});

test("/readyz is 503 while a joining node's S3 cannot serve (no ring yet), 200 once it can", { timeout: 120_000 }, async () => {
  const root = await tmp("thoc-ready-");
  const c = new Cluster(root, loopbackBlock(), { env: S3_ENV });
  const seed = c.add();
  const joiner = c.add();
  try {
    // The seed is not running: the joiner never gets the ring.
    joiner.spawn();
    await waitFor("admin HTTP", async () => (await fetch(`${joiner.httpUrl}/healthz`)).ok, 30_000);
    await sleep(3000);
    const r = await fetch(`${joiner.httpUrl}/readyz`);
    const body = await r.json() as { ready: boolean; subsystems: Record<string, { status: string; detail?: string }> };
    assert.equal(r.status, 503, JSON.stringify(body));
    assert.equal(body.subsystems.objectstore?.status, "starting");
    assert.match(body.subsystems.objectstore?.detail ?? "", /joining: waiting for the ring/);
    const client = s3client(joiner);
    const err = await client.send(new s3.CreateBucketCommand({ Bucket: "early" })).then(() => undefined, (e: s3.S3ServiceException) => e);
    client.destroy();
    assert.equal(err?.$metadata.httpStatusCode, 503, "S3 answers 503 while not ready");
    // The seed comes up: the joiner gets the ring and is ready.
    await seed.start();
    await joiner.waitReady(30_000);
  } finally {
    await c.stop();
  }
});

/** A "libvirtd" that accepts connections and never answers: every libvirt call on it blocks a pool thread. */
async function silentLibvirtd(sock: string): Promise<{ conns: net.Socket[]; close(): void }> {
  const conns: net.Socket[] = [];
  const server = net.createServer((s) => { conns.push(s); s.on("error", () => {}); });
  await new Promise<void>((r) => server.listen(sock, r));
  return { conns, close() { for (const s of conns) s.destroy(); server.close(); } };
}

test("shutdown is bounded whatever libvirt does: two signals, or one, end the agent although a libvirt call never returns", { timeout: 180_000 }, async () => {
  const root = await tmp("thoc-stop-");
  const block = loopbackBlock();
  const sock = path.join(root, "libvirt-sock");
  const fake = await silentLibvirtd(sock);
  const uri = `qemu+unix:///system?socket=${sock}`;
  try {
    const runs: [string, NodeJS.Signals[], string, number][] = [
      // test:///default: the event loop thread runs as in every dev agent.
      ["test driver, SIGTERM twice", ["SIGTERM", "SIGTERM"], "test:///default", 5000],
      ["silent libvirtd, SIGTERM twice", ["SIGTERM", "SIGTERM"], uri, 5000],
      ["silent libvirtd, SIGTERM then SIGINT", ["SIGTERM", "SIGINT"], uri, 5000],
      // One signal: the orderly stop cannot finish exit() either; the hard deadline (shutdownTimeout 3 s + 3 s) ends it.
      ["silent libvirtd, one SIGTERM", ["SIGTERM"], uri, 9000],
    ];
    for (const [i, [what, signals, hv, boundMs]] of runs.entries()) {
      const a = new AgentProcess(`s${i}`, `${block}.${i + 2}`, path.join(root, `s${i}`), { dev: true, args: ["--hypervisor-uri", hv] });
      const seen = fake.conns.length;
      a.spawn();
      await waitFor(`${what}: admin HTTP`, async () => (await fetch(`${a.httpUrl}/healthz`)).ok, 30_000);
      if (hv === uri) await waitFor(`${what}: libvirt connection`, () => fake.conns.length > seen, 30_000, 50);
      await sleep(300);
      const t0 = Date.now();
      for (const s of signals) { a.proc!.kill(s); await sleep(100); }
      const exited = await Promise.race([a.waitExit().then(() => true), sleep(boundMs + 5000).then(() => false)]);
      const ms = Date.now() - t0;
      if (!exited) a.proc!.kill("SIGKILL");
      assert.ok(exited, `${what}: still running after ${ms} ms`);
      assert.ok(ms <= boundMs, `${what}: exited after ${ms} ms, bound ${boundMs} ms`);
    }
  } finally {
    fake.close();
    await rm(root, { recursive: true, force: true });
  }
});

/** The agent's resident set, from /proc. */
function rssMB(pid: number): number {
  return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))![1]) / 1024;
}

test("gossip TCP flood: 30 unauthenticated connections with huge frames cannot grow RSS, and are all cut", { timeout: 120_000 }, async () => {
  const root = await tmp("thoc-flood-");
  const a = new AgentProcess("f1", `${loopbackBlock()}.2`, path.join(root, "f1"), {});
  try {
    await a.start();
    await sleep(1000);
    const before = rssMB(a.proc!.pid!);
    let peak = before;
    const sampler = setInterval(() => { peak = Math.max(peak, rssMB(a.proc!.pid!)); }, 100);
    // Half announce 8 MiB (over the cap), half exactly the cap (1 MiB): each sends all but 100 bytes, then drips.
    const closed = await Promise.all(Array.from({ length: 30 }, (_, i) => new Promise<number>((resolve) => {
      const size = i % 2 ? 8 << 20 : 1 << 20;
      const t0 = Date.now();
      const s = net.connect(7946, a.bind, () => {
        const h = Buffer.alloc(4);
        h.writeUInt32BE(size);
        s.write(h);
        s.write(Buffer.alloc(size - 100, 7));
      });
      const drip = setInterval(() => s.write(Buffer.from([1])), 1000);
      s.on("error", () => {});
      s.on("close", () => { clearInterval(drip); resolve(Date.now() - t0); });
      setTimeout(() => { clearInterval(drip); s.destroy(); resolve(-1); }, 20_000);
    })));
    clearInterval(sampler);
    assert.ok(closed.every((ms) => ms >= 0 && ms < 10_000), `cut after (ms): ${closed.join(", ")}`);
    assert.ok(peak - before < 64, `RSS ${before.toFixed(0)} -> peak ${peak.toFixed(0)} MB`);
    assert.equal((await fetch(`${a.httpUrl}/readyz`)).status, 200, "the agent still serves");
  } finally {
    await a.kill("SIGKILL");
    await rm(root, { recursive: true, force: true });
  }
});
