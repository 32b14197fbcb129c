/**
 * MemoryEngine as the container subsystem's tests use it: the state machine,
 * host ports (real sockets with `http`), exec exit codes and TTY echo, logs
 * follow, events, image archives read as a real engine reads them.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtemp, rm, writeFile, mkdir } from "node:fs/promises";
import { createReadStream } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { MemoryEngine } from "./memory.js";
import { openEngine } from "./open.js";
import type { EngineCreate, EngineEvent, ExecSession } from "./types.js";

const spec = (over: Partial<EngineCreate> = {}): EngineCreate => ({
  name: "thoc-a", image: "bb:1", env: { GREETING: "hello" }, labels: { "thoc.managed": "1" }, ports: [], mounts: [], cpus: 0, memoryBytes: 0, devices: [], ...over,
});

const code = (c: string, re?: RegExp) => (e: { code?: string; message: string }) => {
  assert.equal(e.code, c, e.message);
  if (re) assert.match(e.message, re);
  return true;
};

async function collect(s: ExecSession): Promise<{ out: string; err: string; code: number }> {
  let out = "", err = "";
  s.onOutput((stream, d) => { if (stream === "stdout") out += d.toString(); else err += d.toString(); });
  const c = await s.exit;
  return { out, err, code: c };
}

test("create, start, stop, remove: states, labels filter, name and image refusals", async () => {
  const e = new MemoryEngine();
  e.addImage("localhost/bb:1");
  const id = await e.create(spec());
  assert.equal((await e.inspect(id))?.state, "created");
  assert.equal((await e.inspect("thoc-a"))?.id, id, "inspect by name");
  await assert.rejects(e.create(spec()), code("already_exists"));
  await assert.rejects(e.create(spec({ name: "thoc-b", image: "nope:1" })), code("not_found", /no such image/));
  await e.start(id);
  assert.equal((await e.inspect(id))?.state, "running");
  assert.deepEqual((await e.list("thoc.managed=1")).map((c) => c.id), [id]);
  assert.deepEqual(await e.list("thoc.managed=2"), []);
  await assert.rejects(e.remove(id, { force: false }), code("failed_precondition", /running/));
  await e.stop(id, 100);
  const c = await e.inspect(id);
  assert.equal(c?.state, "exited");
  assert.equal(c?.exitCode, 143);
  await e.remove(id, { force: false });
  assert.equal(await e.inspect(id), undefined);
  await assert.rejects(e.start(id), code("not_found"));
});

test("the main process: exit codes, env, logs with tail and follow, events", async () => {
  const e = new MemoryEngine();
  e.addImage("bb:1");
  const ac = new AbortController();
  const seen: EngineEvent[] = [];
  const watching = (async () => { for await (const ev of e.events(ac.signal)) seen.push(ev); })();
  const id = await e.create(spec({ command: ["sh", "-c", "echo $GREETING; echo oops >&2; exit 3"] }));
  await e.start(id);
  await new Promise((r) => setTimeout(r, 20));
  const c = await e.inspect(id);
  assert.equal(c?.state, "exited");
  assert.equal(c?.exitCode, 3);
  const logs: string[] = [];
  for await (const l of e.logs(id, { follow: true })) logs.push(`${l.stream}:${l.data.toString().trim()}`);
  assert.deepEqual(logs, ["stdout:hello", "stderr:oops"], "follow on an exited container ends");
  const tail: string[] = [];
  for await (const l of e.logs(id, { follow: false, tail: 1 })) tail.push(l.data.toString().trim());
  assert.deepEqual(tail, ["oops"]);

  // Follow a running one: new lines arrive, the stream ends when the process does.
  const id2 = await e.create(spec({ name: "thoc-f", command: ["sh", "-c", "echo one; sleep 0.05; echo two; exit 0"] }));
  await e.start(id2);
  const followed: string[] = [];
  for await (const l of e.logs(id2, { follow: true })) followed.push(l.data.toString().trim());
  assert.deepEqual(followed, ["one", "two"]);
  ac.abort();
  await watching;
  assert.deepEqual(seen.filter((x) => x.id === id).map((x) => `${x.action}${x.exitCode === undefined ? "" : `:${x.exitCode}`}`), ["create", "start", "die:3"]);
});

test("exec: exit codes, stdin, a TTY that echoes and resizes; exec into a stopped container is refused", async () => {
  const e = new MemoryEngine();
  e.addImage("bb:1");
  const id = await e.create(spec());
  await e.start(id);
  assert.deepEqual(await collect(await e.exec(id, { command: ["sh", "-c", "echo $GREETING $EXTRA"], tty: false, stdin: false, env: { EXTRA: "there" } })), { out: "hello there\n", err: "", code: 0 });
  assert.equal((await collect(await e.exec(id, { command: ["sh", "-c", "exit 3"], tty: false, stdin: false }))).code, 3);
  const nf = await collect(await e.exec(id, { command: ["nosuch"], tty: false, stdin: false }));
  assert.equal(nf.code, 127);
  assert.match(nf.err, /nosuch: not found/);

  const cat = await e.exec(id, { command: ["cat"], tty: false, stdin: true });
  const got = collect(cat);
  cat.stdin!.write("abc");
  cat.stdin!.end();
  assert.deepEqual(await got, { out: "abc", err: "", code: 0 });

  const tty = await e.exec(id, { command: ["sh", "-c", "cat; stty size"], tty: true, stdin: true, rows: 10, cols: 20 });
  const t = collect(tty);
  tty.stdin!.write("hi");
  await tty.resize(40, 132);
  tty.stdin!.end();
  const r = await t;
  assert.equal(r.out, "hihi40 132\n", "typed input echoed by the terminal, then cat's copy, then the new size");
  assert.equal(r.err, "");

  await e.stop(id, 10);
  await assert.rejects(e.exec(id, { command: ["true"], tty: false, stdin: false }), code("failed_precondition", /not running/));
});

test("host ports: a port another container or process holds is refused; 0 picks one; with http the port answers", async () => {
  const e = new MemoryEngine({ http: true });
  e.addImage("bb:1");
  const blocker = net.createServer();
  await new Promise<void>((r) => blocker.listen(0, "127.0.0.1", r));
  const busy = (blocker.address() as net.AddressInfo).port;
  try {
    const a = await e.create(spec({ ports: [{ containerPort: 80, hostPort: 0, protocol: "tcp", hostIp: "" }] }));
    await e.start(a);
    const port = (await e.inspect(a))!.ports[0]!.hostPort;
    assert.ok(port > 0);
    e.setHttpStatus(a, "/bad", 503);
    assert.equal((await fetch(`http://127.0.0.1:${port}/healthz`)).status, 200);
    assert.equal((await fetch(`http://127.0.0.1:${port}/bad`)).status, 503);
    const b = await e.create(spec({ name: "thoc-b", ports: [{ containerPort: 80, hostPort: port, protocol: "tcp", hostIp: "" }] }));
    await assert.rejects(e.start(b), code("resource_exhausted", new RegExp(`${port}`)));
    const c = await e.create(spec({ name: "thoc-c", ports: [{ containerPort: 80, hostPort: busy, protocol: "tcp", hostIp: "" }] }));
    await assert.rejects(e.start(c), code("resource_exhausted", new RegExp(`host port ${busy} is already in use`)));
    assert.equal((await e.inspect(c))?.state, "created", "a refused start leaves it created");
    await e.stop(a, 10);
    await assert.rejects(fetch(`http://127.0.0.1:${port}/healthz`), "a stopped container's port is closed");
    await e.close();
  } finally {
    blocker.close();
  }
});

test("images: a docker-save archive's RepoTags and an OCI archive's ref names; pulls only from the registry; in-use images stay", async () => {
  const dir = await mkdtemp(path.join(tmpdir(), "thoc-mem-"));
  try {
    const e = new MemoryEngine();
    await mkdir(path.join(dir, "save"));
    await writeFile(path.join(dir, "save", "manifest.json"), JSON.stringify([{ Config: "c.json", RepoTags: ["localhost/bb:1"], Layers: [] }]));
    execFileSync("tar", ["cf", path.join(dir, "save.tar"), "-C", path.join(dir, "save"), "manifest.json"]);
    assert.deepEqual(await e.loadImage(createReadStream(path.join(dir, "save.tar"))), ["localhost/bb:1"]);
    assert.ok(await e.imageId("bb:1"), "a short name finds localhost/ as podman does");
    await mkdir(path.join(dir, "oci"));
    await writeFile(path.join(dir, "oci", "index.json"), JSON.stringify({ manifests: [{ annotations: { "org.opencontainers.image.ref.name": "web:2" } }] }));
    execFileSync("tar", ["cf", path.join(dir, "oci.tar"), "-C", path.join(dir, "oci"), "./index.json"]);
    assert.deepEqual(await e.loadImage(createReadStream(path.join(dir, "oci.tar"))), ["web:2"]);
    await writeFile(path.join(dir, "junk"), "not a tar at all");
    await assert.rejects(e.loadImage(createReadStream(path.join(dir, "junk"))), code("invalid_argument", /not a docker-save or OCI/));

    await assert.rejects(e.pullImage("docker.io/library/nginx:1"), code("not_found", /manifest unknown/));
    e.publishImage("docker.io/library/nginx:1");
    await e.pullImage("docker.io/library/nginx:1", { username: "u", password: "p" });
    assert.ok(await e.imageId("docker.io/library/nginx:1"));

    const id = await e.create(spec({ image: "web:2" }));
    await assert.rejects(e.removeImage("web:2"), code("failed_precondition", /in use/));
    await e.remove(id, { force: true });
    await e.removeImage("web:2");
    assert.equal(await e.imageId("web:2"), undefined);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("an engine that goes away: calls and open event streams fail unavailable, naming the URI; openEngine for other URIs says where it looked", async () => {
  const e = new MemoryEngine();
  const ac = new AbortController();
  const it = e.events(ac.signal)[Symbol.asyncIterator]();
  const next = it.next();
  e.setAvailable(false);
  await assert.rejects(next, code("unavailable", /no container engine at memory:/));
  await assert.rejects(e.info(), code("unavailable"));
  e.setAvailable(true);
  assert.equal((await e.info()).engine, "memory");
  const other = openEngine("unix:///nonexistent/podman.sock");
  await assert.rejects(other.info(), code("unavailable", /unix:\/\/\/nonexistent\/podman\.sock/));
  await assert.rejects(other.create(spec()), code("unavailable"));
  await assert.rejects(openEngine("unix://relative.sock").info(), code("unavailable", /^no container engine at unix:\/\/relative\.sock: .*must be absolute/));
  assert.ok(openEngine("memory:") instanceof MemoryEngine);
});
