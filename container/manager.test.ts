/**
 * ContainerManager on MemoryEngine (real LocalStore, real sockets for the
 * mapped ports): lifecycle, volumes, exec, logs, stats, admission, and that a
 * refused or failed create leaves nothing behind.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readdir, readFile, writeFile, stat } from "node:fs/promises";
import net from "node:net";
import path from "node:path";
import { MemoryEngine, type ExecSession } from "../engine/index.js";
import type { HostGpu, Reservation } from "../vm/index.js";
import { fixture, spec, until, type Fixture } from "./testutil.js";

let f: Fixture;
before(async () => { f = await fixture(); });
after(async () => { await f.cleanup(); });

const code = (c: string, re?: RegExp) => (e: { code?: string; message: string }) => {
  assert.equal(e.code, c, e.message);
  if (re) assert.match(e.message, re);
  return true;
};

async function run(s: ExecSession): Promise<{ out: string; code: number }> {
  let out = "";
  s.onOutput((_st, d) => { out += d.toString(); });
  const c = await s.exit;
  return { out, code: c };
}

async function nothingLeft(name: string, volumes: string[] = []): Promise<void> {
  assert.equal(await f.store.json("container").get(name), undefined, "no record");
  assert.equal(await f.engine.inspect(`thoc-${name}`), undefined, "no engine container");
  const dirs = await readdir(path.join(f.dir, "data", "volumes")).catch(() => [] as string[]);
  for (const v of volumes) assert.ok(!dirs.includes(v), `no volume ${v} (have ${dirs.join(",")})`);
}

test("create runs it with its ports, env, labels and volume; stop, start, restart; delete removes it and its volume", async () => {
  f.changes.length = 0;
  const r = await f.m.create(spec({ name: "web", env: { GREETING: "hi" }, ports: [{ containerPort: 80, hostPort: 0 }], volumes: [{ name: "webdata", containerPath: "/data" }], labels: { team: "a" } }));
  assert.equal(r.status, "running");
  assert.equal(r.desiredState, "running");
  assert.equal(r.node, "n1");
  assert.ok(r.engineId);
  const port = r.ports[0]!.hostPort;
  assert.ok(port > 0, "the engine's pick is recorded");
  assert.equal((await fetch(`http://127.0.0.1:${port}/`)).status, 200, "reachable over the mapped port");
  const c = await f.engine.inspect("thoc-web");
  assert.equal(c?.labels["thoc.managed"], "1");
  assert.equal(c?.labels["thoc.name"], "web");
  assert.equal(c?.labels["thoc.uuid"], r.uuid);
  assert.equal(c?.labels["thoc.node-id"], "node-1");
  assert.equal(c?.labels.team, "a");
  assert.deepEqual((await run(await f.m.exec("web", { command: ["sh", "-c", "echo $GREETING"], tty: false, stdin: false }))), { out: "hi\n", code: 0 });
  assert.deepEqual(f.changes.map((x) => `${x.previous?.status ?? ""}>${x.now?.status ?? ""}:${x.by}`), [">creating:user", "creating>running:user"]);

  // The volume is a directory on the node that outlives restarts.
  const vol = path.join(f.dir, "data", "volumes", "webdata");
  await writeFile(path.join(vol, "kept.txt"), "data");
  const stopped = await f.m.stop("web");
  assert.equal(stopped.status, "stopped");
  assert.equal(stopped.desiredState, "stopped");
  await assert.rejects(f.m.exec("web", { command: ["true"], tty: false, stdin: false }), code("failed_precondition", /is stopped: start it first \(thoc-node ct start web\)/));
  const started = await f.m.start("web");
  assert.equal(started.status, "running");
  assert.equal(started.desiredState, "running");
  const restarted = await f.m.restart("web");
  assert.equal(restarted.status, "running");
  assert.ok(restarted.startedAt >= started.startedAt);
  assert.equal(await readFile(path.join(vol, "kept.txt"), "utf8"), "data", "volume data survives stop, start and restart");
  assert.equal((await f.m.get("web")).restartCount, 0, "user restarts are not policy restarts");

  assert.deepEqual(await f.m.delete("web"), ["webdata"]);
  await nothingLeft("web", ["webdata"]);
  await assert.rejects(f.m.get("web"), code("not_found", /no container named web on this node/));
  assert.equal(f.changes.at(-1)?.now, undefined, "the delete is reported");
});

test("delete keeps volumes with keepVolumes, and a volume another container mounts", async () => {
  await f.m.create(spec({ name: "a1", volumes: [{ name: "shared", containerPath: "/s" }, { name: "own", containerPath: "/o" }] }));
  await f.m.create(spec({ name: "a2", volumes: [{ name: "shared", containerPath: "/s" }] }));
  assert.deepEqual(await f.m.delete("a1"), ["own"], "shared is still mounted by a2");
  assert.ok((await stat(path.join(f.dir, "data", "volumes", "shared"))).isDirectory());
  assert.deepEqual(await f.m.delete("a2", { keepVolumes: true }), []);
  assert.ok((await stat(path.join(f.dir, "data", "volumes", "shared"))).isDirectory(), "kept");
  await f.m.create(spec({ name: "a3", volumes: [{ name: "shared", containerPath: "/s" }] }));
  assert.deepEqual(await f.m.delete("a3"), ["shared"]);
});

test("refused and failed creates leave nothing behind: unknown image, host port in use, name taken, a port another container holds", async () => {
  await assert.rejects(f.m.create(spec({ name: "x1", image: "nosuch:1", volumes: [{ name: "x1v", containerPath: "/d" }] })), code("not_found", /image nosuch:1: not on this node and the pull failed.*ct image import/));
  await nothingLeft("x1", ["x1v"]);

  const blocker = net.createServer();
  await new Promise<void>((r) => blocker.listen(0, "127.0.0.1", r));
  const busy = (blocker.address() as net.AddressInfo).port;
  try {
    await assert.rejects(f.m.create(spec({ name: "x2", ports: [{ containerPort: 80, hostPort: busy }], volumes: [{ name: "x2v", containerPath: "/d" }] })), code("resource_exhausted", new RegExp(`${busy}`)));
    await nothingLeft("x2", ["x2v"]);
  } finally { blocker.close(); }

  const held = await f.m.create(spec({ name: "x3", ports: [{ containerPort: 80, hostPort: 0 }] }));
  const port = held.ports[0]!.hostPort;
  await assert.rejects(f.m.create(spec({ name: "x3" })), code("already_exists", /a container named x3 already exists/));
  await assert.rejects(f.m.create(spec({ name: "x4", ports: [{ containerPort: 81, hostPort: port }] })), code("resource_exhausted", new RegExp(`host port ${port}/tcp is already used by container x3 on node n1`)));
  await nothingLeft("x4");
  // A stopped container keeps its host port for its next start.
  await f.m.stop("x3");
  await assert.rejects(f.m.create(spec({ name: "x4", ports: [{ containerPort: 81, hostPort: port }] })), code("resource_exhausted"));
  // A pre-existing volume is not removed by a failed create that mounts it.
  await f.m.create(spec({ name: "x5", volumes: [{ name: "pre", containerPath: "/d" }] }));
  await f.m.delete("x5", { keepVolumes: true });
  await assert.rejects(f.m.create(spec({ name: "x6", image: "nosuch:2", volumes: [{ name: "pre", containerPath: "/d" }] })), code("not_found"));
  assert.ok((await stat(path.join(f.dir, "data", "volumes", "pre"))).isDirectory(), "the failed create did not take the existing volume");
  // An engine that refuses the create itself: the record and new volumes go.
  await f.engine.create({ name: "thoc-x7", image: "localhost/bb:1", env: {}, labels: {}, ports: [], mounts: [], cpus: 0, memoryBytes: 0, devices: [] });
  await assert.rejects(f.m.create(spec({ name: "x7", volumes: [{ name: "x7v", containerPath: "/d" }] })), code("already_exists"));
  assert.equal(await f.store.json("container").get("x7"), undefined);
  assert.ok(!(await readdir(path.join(f.dir, "data", "volumes"))).includes("x7v"));
  await f.engine.remove("thoc-x7", { force: true });
  await f.m.delete("x3");
});

test("ensureImage (the image store's loader) runs first; an image it did not provide is pulled; credentials reach it", async () => {
  const asked: string[] = [];
  const g = await fixture({ ensureImage: async (ref, auth) => { asked.push(`${ref}:${auth?.username ?? "-"}:${auth?.password ?? "-"}`); if (ref === "imported:1") g.engine.addImage("imported:1"); } });
  try {
    assert.equal((await g.m.create(spec({ name: "i1", image: "imported:1" }))).status, "running");
    assert.equal(g.engine.calls.get("pullImage") ?? 0, 0, "loaded, not pulled");
    g.engine.publishImage("ghcr.io/o/x:1");
    await g.m.create(spec({ name: "i2", image: "ghcr.io/o/x:1", registryUser: "bot" }), { registryPassword: "pw" });
    assert.equal(g.engine.calls.get("pullImage"), 1);
    assert.deepEqual(asked, ["imported:1:-:-", "ghcr.io/o/x:1:bot:pw"]);
    assert.ok(!JSON.stringify(await g.store.json("container").get("i2")).includes("pw\""), "the password is not in the record");
  } finally { await g.cleanup(); }
});

test("a create with --no-start, a pulled image, and a retried create with the same request id", async () => {
  f.engine.publishImage("docker.io/library/nginx:1.27");
  const r = await f.m.create(spec({ name: "pulled", image: "docker.io/library/nginx:1.27" }), { noStart: true, requestId: "req-1" });
  assert.equal(r.status, "stopped");
  assert.equal(r.desiredState, "stopped");
  assert.ok(r.imageId.startsWith("sha256:"));
  assert.equal((await f.engine.inspect("thoc-pulled"))?.state, "created");
  const again = await f.m.create(spec({ name: "pulled", image: "docker.io/library/nginx:1.27" }), { noStart: true, requestId: "req-1" });
  assert.equal(again.uuid, r.uuid, "the same container, not an error");
  await assert.rejects(f.m.create(spec({ name: "pulled" }), { requestId: "req-2" }), code("already_exists"));
  await f.m.delete("pulled");
});

test("exec exit codes and a TTY; logs with tail and follow; stats with CPU %", async () => {
  await f.m.create(spec({ name: "ex", command: ["sh", "-c", "echo first; echo second >&2; sleep 0.05; echo third; sleep inf"] }));
  assert.equal((await run(await f.m.exec("ex", { command: ["sh", "-c", "exit 3"], tty: false, stdin: false }))).code, 3);
  assert.equal((await run(await f.m.exec("ex", { command: ["true"], tty: false, stdin: false }))).code, 0);
  const tty = await f.m.exec("ex", { command: ["cat"], tty: true, stdin: true });
  const got = run(tty);
  tty.stdin!.end("ls\n");
  assert.deepEqual(await got, { out: "ls\nls\n", code: 0 });

  const ac = new AbortController();
  const lines: string[] = [];
  const following = (async () => {
    for await (const l of f.m.logs("ex", { follow: true, signal: ac.signal })) {
      lines.push(`${l.stream}:${l.data.toString().trim()}`);
      if (lines.length === 3) ac.abort();
    }
  })();
  await following;
  assert.deepEqual(lines, ["stdout:first", "stderr:second", "stdout:third"]);
  const tail: string[] = [];
  for await (const l of f.m.logs("ex", { follow: false, tail: 1 })) tail.push(l.data.toString().trim());
  assert.deepEqual(tail, ["third"]);

  await new Promise((r) => setTimeout(r, 20));
  const s1 = await f.m.stats("ex");
  assert.ok(s1.cpuSeconds > 0 && s1.memoryBytes > 0 && s1.pids === 1);
  assert.ok(s1.cpuPercent > 0 && s1.cpuPercent <= 100, `cpu% ${s1.cpuPercent}`);
  await f.m.stop("ex");
  await assert.rejects(f.m.logs("nosuch", { follow: false })[Symbol.asyncIterator]().next(), code("not_found"));
  await f.m.delete("ex");
});

test("admission: CPU and memory count VMs' reservations; GPUs come from the ledger VMs share; a node without GPUs says so", async () => {
  const vms: Reservation[] = [{ name: "vm1", vcpus: 3, ramMB: 1024, gpus: [{ vm: "vm1", mode: "passthrough", pciAddress: "0000:3b:00.0" }] }];
  const gpus: HostGpu[] = [
    { id: "GPU-0", pciAddress: "0000:3b:00.0", nodeDevice: "pci_0000_3b_00_0", vendor: "NVIDIA", vendorId: "0x10de", model: "A100", productId: "0x20b0", migModel: "A100-40GB" },
    { id: "GPU-1", pciAddress: "0000:5e:00.0", nodeDevice: "pci_0000_5e_00_0", vendor: "NVIDIA", vendorId: "0x10de", model: "H100", productId: "0x2330", migModel: "H100-80GB" },
  ];
  const g = await fixture({ vm: { gpus: async () => gpus, reservations: async () => vms } });
  try {
    await assert.rejects(g.m.create(spec({ name: "big", cpus: 1.5 })), code("resource_exhausted", /vcpus: 1.5 vCPUs do not fit/));
    assert.equal(await g.store.json("container").get("big"), undefined);
    const small = await g.m.create(spec({ name: "small", cpus: 0.5, memoryMB: 512 }));
    assert.equal(small.status, "running");
    assert.deepEqual(await g.m.reservations(), [{ name: "small", vcpus: 0.5, ramMB: 512, gpus: [], kind: "container" }]);
    await assert.rejects(g.m.create(spec({ name: "g0", gpuDeviceIds: ["GPU-0"] })), code("resource_exhausted", /GPU GPU-0 .* is already assigned to VM vm1/));
    await assert.rejects(g.m.create(spec({ name: "g9", gpuDeviceIds: ["GPU-9"] })), code("not_found", /no GPU "GPU-9" on this node/));
    // GPU-1 is free, but this engine offers no CDI devices: refused, nothing kept.
    await assert.rejects(g.m.create(spec({ name: "g1", gpuDeviceIds: ["GPU-1"] })), code("failed_precondition", /offers no GPUs.*nvidia-ctk cdi generate/));
    assert.equal(await g.store.json("container").get("g1"), undefined);
    assert.deepEqual((await g.m.reservations()).flatMap((r) => r.gpus), [], "no allocation left behind");
  } finally { await g.cleanup(); }

  // An engine with CDI devices: GPU-1 is the second NVIDIA GPU, nvidia.com/gpu=1; the allocation is the container's.
  const h = await fixture({ vm: { gpus: async () => gpus, reservations: async () => vms } }, new MemoryEngine({ gpus: true }));
  try {
    const r = await h.m.create(spec({ name: "g1", gpuDeviceIds: ["GPU-1"], volumes: [{ name: "m", containerPath: "/m" }] }));
    assert.deepEqual(r.gpus, [{ vm: "g1", mode: "passthrough", pciAddress: "0000:5e:00.0" }]);
    const made = h.engine.createdWith("thoc-g1");
    assert.deepEqual(made.devices, ["nvidia.com/gpu=1"]);
    assert.deepEqual(made.mounts, [{ source: path.join(h.dir, "data", "volumes", "m"), target: "/m", readOnly: false }]);
    await assert.rejects(h.m.create(spec({ name: "g2", gpuDeviceIds: ["GPU-1"] })), code("resource_exhausted", /already assigned to container g1/));
    assert.deepEqual((await h.m.reservations()).flatMap((x) => x.gpus.map((a) => a.pciAddress)), ["0000:5e:00.0"], "what VMs' admission will count");
  } finally { await h.cleanup(); }

  await assert.rejects(f.m.create(spec({ name: "nogpu", gpuDeviceIds: ["GPU-0"] })), code("failed_precondition", /node n1 has no GPUs \(thoc-node vm gpus\)/));
  await nothingLeft("nogpu");
});

test("a container is admitted in line with VM admissions (the VM ledger's admission), reading VMs' reservations inside it", async () => {
  let inside = 0, reads = 0;
  const g = await fixture({
    vm: {
      gpus: async () => [],
      reservations: async () => { reads++; assert.equal(inside, 1, "read inside the VM admission"); return []; },
      admission: async <T>(fn: () => Promise<T>) => { inside++; try { await new Promise((r) => setImmediate(r)); return await fn(); } finally { inside--; } },
    },
  });
  try {
    await Promise.all([g.m.create(spec({ name: "l1" })), g.m.create(spec({ name: "l2" }))]);
    assert.equal(reads, 2);
  } finally { await g.cleanup(); }
});

test("concurrent creates of one name: one wins, the other is refused; the engine holds one container", async () => {
  const results = await Promise.allSettled([f.m.create(spec({ name: "race" })), f.m.create(spec({ name: "race" }))]);
  assert.equal(results.filter((r) => r.status === "fulfilled").length, 1);
  assert.equal((await f.engine.list("thoc.name=race")).length, 1);
  await f.m.delete("race");
  await until(async () => (await f.engine.list("thoc.name=race")).length === 0, "engine container gone");
});
