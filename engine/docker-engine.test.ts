/**
 * DockerEngine against a real podman (engine/testutil.ts finds or starts
 * `podman system service`): a busybox image loaded from an archive, a
 * container with a port mapping and bind mounts serving HTTP, exec with and
 * without a TTY, logs, stats, events, stop/remove, and the error mapping.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createReadStream, existsSync } from "node:fs";
import { mkdtemp, mkdir, readFile, rm, statfs, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import type { ThocError } from "../errors/index.js";
import { DockerEngine } from "./docker-engine.js";
import { buildBusyboxImage, ensurePodmanService } from "./testutil.js";
import type { EngineCreate, EngineEvent, ExecSession } from "./types.js";

const RUN = `h1t${process.pid}`;
const TAG = "localhost/thoc-test-busybox:engine";
const OCI_TAG = "localhost/thoc-test-busybox:engine-oci";
let engine: DockerEngine;
let dir: string;
let stopService: () => Promise<void>;

const freePort = () => new Promise<number>((resolve, reject) => {
  const s = createServer();
  s.once("error", reject);
  s.listen(0, "0.0.0.0", () => { const p = (s.address() as { port: number }).port; s.close(() => resolve(p)); });
});

const spec = (over: Partial<EngineCreate>): EngineCreate => ({
  name: `${RUN}-x`, image: TAG, env: {}, labels: { "thoc.test": RUN }, ports: [], mounts: [], cpus: 0, memoryBytes: 0, devices: [], ...over,
});

async function code(p: Promise<unknown>): Promise<ThocError> {
  try {
    await p;
  } catch (e) {
    return e as ThocError;
  }
  assert.fail("expected a failure");
}

/** Collects an exec's output until it exits. */
async function collect(s: ExecSession): Promise<{ out: string; err: string; exit: number }> {
  let out = "", err = "";
  s.onOutput((k, d) => { if (k === "stdout") out += String(d); else err += String(d); });
  const exit = await s.exit;
  return { out, err, exit };
}

async function waitFor<T>(what: string, fn: () => Promise<T | undefined>, ms = 10_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

before(async () => {
  const svc = await ensurePodmanService();
  stopService = () => svc.stop();
  dir = await mkdtemp(path.join(tmpdir(), "thoc-engine-test-"));
  // CDI specs looked for in a dir of the test's own (empty at first), not this host's /etc/cdi.
  await mkdir(path.join(dir, "cdi"));
  engine = new DockerEngine({ uri: svc.uri, cdiDirs: [path.join(dir, "cdi")] });
});

after(async () => {
  for (const c of await engine.list(`thoc.test=${RUN}`).catch(() => [])) await engine.remove(c.id, { force: true }).catch(() => undefined);
  await engine.removeImage(TAG).catch(() => undefined);
  await engine.close();
  await stopService();
  await rm(dir, { recursive: true, force: true });
});

test("info: podman with runc, cgroupfs, port mapping; GPUs when CDI specs exist", async () => {
  const i = await engine.info();
  assert.equal(i.engine, "podman");
  assert.match(i.version, /^\d+\.\d+/);
  assert.match(i.apiVersion, /^1\.\d+$/);
  assert.equal(i.ociRuntime, "runc");
  assert.equal(i.cgroupManager, "cgroupfs");
  // This host's cgroups, seen independently: v2 only, hybrid (v1 + cgroup2 at unified/), or v1.
  const v2 = existsSync("/sys/fs/cgroup/cgroup.controllers");
  const hybrid = !v2 && (await statfs("/sys/fs/cgroup/unified").then((s) => s.type === 0x63677270, () => false));
  assert.equal(i.cgroupVersion, v2 ? "2" : hybrid ? "hybrid" : "1");
  assert.equal(i.portMapping, true);
  assert.equal(i.gpus, false);
  // A CDI spec appears (nvidia-ctk cdi generate): seen at once, though the engine's answers are cached.
  await writeFile(path.join(dir, "cdi", "nvidia.yaml"), "cdiVersion: 0.5.0\nkind: nvidia.com/gpu\ndevices: []\n");
  assert.equal((await engine.info()).gpus, true);
  // ping: the same identity from /_ping's headers alone (what the agent's supervision asks).
  const p = await engine.ping();
  assert.deepEqual({ engine: p.engine, version: p.version, apiVersion: p.apiVersion, uri: p.uri }, { engine: i.engine, version: i.version, apiVersion: i.apiVersion, uri: i.uri });
});

test("loadImage: a docker-save archive and an OCI archive; imageId before and after; removeImage", async () => {
  for (const [tag, format] of [[TAG, "docker"], [OCI_TAG, "oci"]] as const) {
    const archive = await buildBusyboxImage(tag, format);
    if (await engine.imageId(tag)) await engine.removeImage(tag).catch(() => undefined);
    assert.equal(await engine.imageId(tag), undefined, `${tag} absent before the load`);
    const refs = await engine.loadImage(createReadStream(archive));
    assert.ok(refs.includes(tag), `${format}: ${JSON.stringify(refs)}`);
    assert.match((await engine.imageId(tag)) ?? "", /^(sha256:)?[0-9a-f]{64}$/);
  }
  await engine.removeImage(OCI_TAG);
  assert.equal(await engine.imageId(OCI_TAG), undefined);
  assert.equal((await code(engine.removeImage(OCI_TAG))).code, "not_found");
  const bad = await code(engine.loadImage(Readable.from([Buffer.from("not an image archive")])));
  assert.equal(bad.code, "invalid_argument", bad.message);
});

test("a container: port mapping, bind mounts, env, exec, TTY, logs, stats, events, stop, remove", async () => {
  const www = path.join(dir, "www");
  const ro = path.join(dir, "ro");
  await mkdir(www);
  await mkdir(ro);
  await writeFile(path.join(www, "index.html"), "hello from the host\n");
  await writeFile(path.join(ro, "f"), "ro\n");
  const port = await freePort();
  const ac = new AbortController();
  const events: EngineEvent[] = [];
  const pump = (async () => { for await (const e of engine.events(ac.signal)) events.push(e); })();
  const name = `${RUN}-web`;
  const id = await engine.create(spec({
    name, labels: { "thoc.test": RUN, "thoc.name": "web" }, env: { GREETING: "hi there" },
    // The env reaches the process (written through the rw mount), output goes to the log, then httpd serves.
    command: ["sh", "-c", 'echo "$GREETING" > /www/env.txt; echo started-out; echo started-err >&2; exec httpd -f -p 8080 -h /www'],
    ports: [{ containerPort: 8080, hostPort: port, protocol: "tcp", hostIp: "" }],
    mounts: [{ source: www, target: "/www", readOnly: false }, { source: ro, target: "/ro", readOnly: true }],
    memoryBytes: 96 * 2 ** 20, cpus: 0.5,
  }));
  assert.equal((await engine.inspect(id))?.state, "created");
  await engine.start(id);
  const c = await engine.inspect(id);
  assert.equal(c?.state, "running");
  assert.equal(c?.name, name);
  assert.equal(c?.image, TAG);
  assert.equal(c?.labels["thoc.name"], "web");
  assert.ok((c?.startedAtMs ?? 0) > Date.now() - 60_000);
  assert.deepEqual(c?.ports, [{ containerPort: 8080, hostPort: port, protocol: "tcp", hostIp: "" }]);
  assert.deepEqual((await engine.list(`thoc.test=${RUN}`)).map((x) => x.id), [id]);

  const body = await waitFor("HTTP through the mapped port", async () => {
    const r = await fetch(`http://127.0.0.1:${port}/index.html`);
    return r.ok ? r.text() : undefined;
  });
  assert.equal(body, "hello from the host\n");
  assert.equal(await readFile(path.join(www, "env.txt"), "utf8"), "hi there\n");

  // exec without a TTY: stdout and stderr apart, exit codes.
  const ok = await collect(await engine.exec(id, { command: ["sh", "-c", "echo out; echo err >&2"], tty: false, stdin: false }));
  assert.deepEqual(ok, { out: "out\n", err: "err\n", exit: 0 });
  const three = await collect(await engine.exec(id, { command: ["sh", "-c", "echo $X; exit 3"], tty: false, stdin: false, env: { X: "from-exec" } }));
  assert.deepEqual(three, { out: "from-exec\n", err: "", exit: 3 });
  const rofail = await collect(await engine.exec(id, { command: ["sh", "-c", "echo x > /ro/f"], tty: false, stdin: false }));
  assert.notEqual(rofail.exit, 0, "the read-only mount refuses a write");
  assert.equal(await readFile(path.join(ro, "f"), "utf8"), "ro\n");
  // stdin without a TTY: half-close ends cat's input.
  const cat = await engine.exec(id, { command: ["cat"], tty: false, stdin: true });
  cat.stdin!.end("piped\n");
  assert.deepEqual(await collect(cat), { out: "piped\n", err: "", exit: 0 });

  // exec with a TTY: input echoed back, the window size set, exit code of the shell.
  const tty = await engine.exec(id, { command: ["sh"], tty: true, stdin: true, rows: 30, cols: 90 });
  let screen = "";
  tty.onOutput((k, d) => { assert.equal(k, "stdout"); screen += String(d); });
  tty.stdin!.write("echo typed-$((6*7))\n");
  await waitFor("the TTY's echo", async () => (screen.includes("typed-42") ? true : undefined));
    // ash wraps the echoed line at the width it guessed before the resize arrived: compare without line breaks.
  assert.ok(screen.replace(/[\r\n]/g, "").includes("echo typed-$((6*7))"), `the TTY echoes the input line: ${JSON.stringify(screen)}`);
  tty.stdin!.write("stty size\n");
  await waitFor("stty size", async () => (/\r\n30 90\r\n/.test(screen) ? true : undefined));
  await tty.resize(40, 100);
  tty.stdin!.write("stty size; exit 5\n");
  assert.equal(await tty.exit, 5);
  assert.match(screen, /\r\n30 90\r\n[^]*\r\n40 100\r\n/, "the size asked at exec, then the resize");

  // logs: what the process wrote, apart by stream; follow sees new lines and stops on abort.
  const past: string[] = [];
  for await (const l of engine.logs(id, { follow: false })) past.push(`${l.stream}:${String(l.data).trim()}`);
  assert.deepEqual(past.sort(), ["stderr:started-err", "stdout:started-out"]);
  const lac = new AbortController();
  const followed: string[] = [];
  const follow = (async () => { for await (const l of engine.logs(id, { follow: true, tail: 0, signal: lac.signal })) { followed.push(String(l.data)); if (followed.join("").includes("later")) lac.abort(); } })();
  // httpd in the foreground logs nothing by default: have a second process write to PID 1's stdout.
  await new Promise((r) => setTimeout(r, 300));
  await collect(await engine.exec(id, { command: ["sh", "-c", "echo later > /proc/1/fd/1"], tty: false, stdin: false }));
  await Promise.race([follow, new Promise((_, rej) => setTimeout(() => rej(new Error("logs follow saw no new line")), 10_000))]);
  assert.ok(followed.join("").includes("later"));
  assert.ok(!followed.join("").includes("started-out"), "tail 0 starts at the end");

  const st = await engine.stats(id);
  assert.ok(st.cpuSeconds > 0 && st.cpuSeconds < 60, `cpu ${st.cpuSeconds}`);
  assert.ok(st.memoryBytes > 0, `memory ${st.memoryBytes}`);
  assert.equal(st.memoryLimitBytes, 96 * 2 ** 20, "the memory limit asked");
  assert.ok(st.pids >= 1);
  assert.ok(st.netRxBytes > 0 && st.netTxBytes > 0, `net ${st.netRxBytes}/${st.netTxBytes}`);
  assert.ok(Math.abs(st.timestampMs - Date.now()) < 60_000);

  const t0 = Date.now();
  await engine.stop(id, 1000);
  const stopped = await engine.inspect(id);
  assert.equal(stopped?.state, "exited");
  assert.equal(stopped?.exitCode, 137, "httpd as PID 1 ignores SIGTERM: killed after the timeout");
  assert.ok(Date.now() - t0 < 8000);
  assert.ok((stopped?.finishedAtMs ?? 0) >= (stopped?.startedAtMs ?? Infinity));
  assert.deepEqual(stopped?.ports.map((p) => p.hostPort), [port], "ports of a stopped container: as asked");

  const ex = await code(engine.exec(id, { command: ["true"], tty: false, stdin: false }));
  assert.equal(ex.code, "failed_precondition", ex.message);

  await waitFor("start and die events", async () => (events.some((e) => e.id === id && e.action === "die") ? true : undefined));
  const mine = events.filter((e) => e.id === id);
  assert.ok(mine.some((e) => e.action === "start" && e.name === name), JSON.stringify(mine));
  assert.equal(mine.find((e) => e.action === "die")?.exitCode, 137);
  ac.abort();
  await pump;

  await engine.remove(id, { force: false });
  assert.equal(await engine.inspect(id), undefined);
  assert.equal((await code(engine.remove(id, { force: false }))).code, "not_found");
});

test("exit codes of the main process; restart", async () => {
  const id = await engine.create(spec({ name: `${RUN}-exit`, command: ["sh", "-c", "exit 7"] }));
  await engine.start(id);
  const c = await waitFor("exit", async () => { const x = await engine.inspect(id); return x?.state === "exited" ? x : undefined; });
  assert.equal(c.exitCode, 7);
  await engine.restart(id, 1000);
  const again = await waitFor("exit after restart", async () => { const x = await engine.inspect(id); return x?.state === "exited" && x.startedAtMs > c.startedAtMs ? x : undefined; });
  assert.equal(again.exitCode, 7);
  await engine.remove(id, { force: true });
});

test("errors: unknown image, name taken, host port in use, no such container, engine down, bad URI, pull", async () => {
  const noimg = await code(engine.create(spec({ name: `${RUN}-noimg`, image: "localhost/thoc-no-such-image:1" })));
  assert.equal(noimg.code, "not_found", noimg.message);

  const id = await engine.create(spec({ name: `${RUN}-dup`, command: ["sleep", "60"] }));
  const dup = await code(engine.create(spec({ name: `${RUN}-dup`, command: ["sleep", "60"] })));
  assert.equal(dup.code, "already_exists", dup.message);
  await engine.start(id);
  const running = await code(engine.remove(id, { force: false }));
  assert.equal(running.code, "failed_precondition", running.message);
  await engine.remove(id, { force: true });
  assert.equal(await engine.inspect(id), undefined);

  // A host port something else listens on: refused at start, the port named.
  const busy: Server = createServer();
  const port = await new Promise<number>((r) => busy.listen(0, "0.0.0.0", () => r((busy.address() as { port: number }).port)));
  try {
    const pid = await engine.create(spec({ name: `${RUN}-busy`, command: ["sleep", "60"], ports: [{ containerPort: 80, hostPort: port, protocol: "tcp", hostIp: "" }] }));
    const inUse = await code(engine.start(pid));
    assert.equal(inUse.code, "resource_exhausted", inUse.message);
    assert.equal(inUse.details.port, port);
    assert.match(inUse.message, new RegExp(`port ${port}`));
    await engine.remove(pid, { force: true });
  } finally {
    busy.close();
  }

  assert.equal(await engine.inspect(`${RUN}-nothing`), undefined);
  for (const call of [() => engine.start(`${RUN}-nothing`), () => engine.stop(`${RUN}-nothing`, 1000), () => engine.stats(`${RUN}-nothing`)]) {
    const e = await code(call());
    assert.equal(e.code, "not_found", e.message);
  }

  const down = new DockerEngine({ uri: `unix://${path.join(dir, "no-engine.sock")}` });
  const un = await code(down.info());
  assert.equal(un.code, "unavailable");
  assert.match(un.message, /podman system service|podman\.socket/);
  const unPing = await code(down.ping());
  assert.equal(unPing.code, "unavailable");
  assert.match(unPing.message, /podman system service|podman\.socket/);
  assert.throws(() => new DockerEngine({ uri: "http://x" }), (e: ThocError) => e.code === "invalid_argument");
  assert.throws(() => new DockerEngine({ uri: "tcp://nohost" }), (e: ThocError) => e.code === "invalid_argument");

  // A registry nobody serves: unavailable, and the password in no message.
  const reg = await freePort();
  const pull = await code(engine.pullImage(`127.0.0.1:${reg}/thoc/none:1`, { username: "u", password: "s3cret-pw" }));
  assert.equal(pull.code, "unavailable", pull.message);
  assert.ok(!pull.message.includes("s3cret-pw"));
  const badRef = await code(engine.pullImage("Bad..Ref:1"));
  assert.equal(badRef.code, "invalid_argument", badRef.message);
});
