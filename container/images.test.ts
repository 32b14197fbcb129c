/**
 * Container images in the object store's reserved bucket (the --dev store:
 * real LevelDB, real body files): import checks the archive, its size and
 * SHA-256 before the image exists; ensure() loads an image into an engine
 * once, however many creates ask at the same time. The engine here is a
 * recording stand-in (real podman is the engine's own test); the archives
 * are real tars, and podman's own `save` output when podman is installed.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import type { Readable } from "node:stream";
import { gzipSync } from "node:zlib";
import { openDevStore, type DevStore } from "../objectstore/testutil.js";
import type { ContainerEngine } from "../engine/index.js";
import { ThocError } from "../errors/index.js";
import { ArchiveScanner } from "./archive.js";
import { CONTAINER_IMAGE_BUCKET, ContainerImageStore, imageEnsurer } from "./images.js";
import { containerImageHandlers } from "./images-rpc.js";

let dir: string;
let dev: DevStore;
let store: ContainerImageStore;
before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "thoc-ctimg-"));
  dev = await openDevStore({ dir });
  store = new ContainerImageStore(dev.blobs);
});
after(async () => { await dev.dispose().catch(() => {}); });

const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");
const code = (c: string, re?: RegExp) => (e: { code?: string; message: string }) => {
  assert.equal(e.code, c, e.message);
  if (re) assert.match(e.message, re);
  return true;
};
async function* chunks(b: Buffer, size = 7000): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < b.length; i += size) yield b.subarray(i, i + size);
}

/** A docker-save archive made with tar(1): manifest.json (last, as docker writes it), the config, one layer, a long-named file. */
async function dockerArchive(tag: string, format: "gnu" | "pax" = "gnu", salt = "1"): Promise<{ file: Buffer; id: string }> {
  const d = await mkdtemp(path.join(dir, "img-"));
  const config = Buffer.from(JSON.stringify({ architecture: "amd64", os: "linux", config: { Cmd: ["/bin/sh"] }, salt }));
  const id = sha(config);
  await writeFile(path.join(d, `${id}.json`), config);
  const long = `${"l".repeat(120)}/layer.tar`;
  await mkdir(path.join(d, "l".repeat(120)));
  await writeFile(path.join(d, long), Buffer.alloc(30_000, 7));
  await writeFile(path.join(d, "manifest.json"), JSON.stringify([{ Config: `${id}.json`, RepoTags: [tag], Layers: [long] }]));
  const out = path.join(d, "out.tar");
  execFileSync("tar", ["-cf", out, `--format=${format}`, "-C", d, `${id}.json`, long, "manifest.json"]);
  return { file: await readFile(out), id: `sha256:${id}` };
}

/** A recording engine: loadImage drains the archive and then knows its refs; imageId answers for what was loaded. */
function fakeEngine(loadMs = 50) {
  const images = new Map<string, string>();
  const loads: { bytes: number; sha256: string }[] = [];
  const e = {
    loads, images,
    async loadImage(archive: Readable): Promise<string[]> {
      const h = createHash("sha256");
      let bytes = 0;
      for await (const c of archive) { h.update(c as Buffer); bytes += (c as Buffer).length; }
      await new Promise((r) => setTimeout(r, loadMs));
      loads.push({ bytes, sha256: h.digest("hex") });
      return ["localhost/bb:1"];
    },
    async imageId(ref: string) { return images.get(ref); },
    async pullImage(ref: string) { if (ref.startsWith("nope")) throw new ThocError("not_found", "manifest unknown"); images.set(ref, "sha256:pulled"); },
    async removeImage(ref: string) { for (const [k, v] of images) if (v === ref) images.delete(k); },
  };
  return e as unknown as typeof e & ContainerEngine;
}

let bb: { file: Buffer; id: string };
test("import: the archive and its record land in the reserved bucket; refs and image id read from the archive; bb is bb:latest", async () => {
  bb = await dockerArchive("localhost/bb:1");
  const rec = await store.import("bb", chunks(bb.file), { size: bb.file.length, sha256: sha(bb.file) });
  assert.deepEqual({ name: rec.name, size: rec.size, sha256: rec.sha256, refs: rec.refs, imageId: rec.imageId, format: rec.format },
    { name: "bb:latest", size: bb.file.length, sha256: sha(bb.file), refs: ["localhost/bb:1"], imageId: bb.id, format: "docker" });
  assert.equal((await dev.blobs.headBucket(CONTAINER_IMAGE_BUCKET)).owner, "thoc-system");
  assert.equal((await dev.blobs.headObject(CONTAINER_IMAGE_BUCKET, rec.key)).size, bb.file.length);
  assert.deepEqual(await store.get("bb:latest"), rec);
  assert.deepEqual((await store.list()).map((r) => r.name), ["bb:latest"]);
  await assert.rejects(store.import("bb:latest", chunks(bb.file)), code("already_exists", /ct image delete bb:latest\) or import with --replace/));
});

test("import refuses a wrong SHA-256, a short body, a file that is no image archive and a bad name; nothing is kept", async () => {
  const keys = async () => (await dev.blobs.listObjects({ bucket: CONTAINER_IMAGE_BUCKET, maxKeys: 1000 })).objects.map((o) => o.key).sort();
  const before = await keys();
  await assert.rejects(store.import("x1", chunks(bb.file), { sha256: "0".repeat(64) }), code("invalid_argument", /SHA-256 is [0-9a-f]{64}, not the 0{64} given.*nothing was kept/));
  await assert.rejects(store.import("x2", chunks(bb.file), { size: bb.file.length + 1 }), code("invalid_argument", /bytes arrived, not the \d+ announced/));
  await assert.rejects(store.import("x3", chunks(Buffer.from("hello, not a tar".repeat(100)))), code("invalid_argument", /not a container image archive \(not a tar file\)/));
  const d = await mkdtemp(path.join(dir, "notimg-"));
  await writeFile(path.join(d, "hello.txt"), "hi");
  const plainTar = execFileSync("tar", ["-cf", "-", "-C", d, "hello.txt"]);
  await assert.rejects(store.import("x4", chunks(plainTar)), code("invalid_argument", /no manifest\.json or oci-layout \+ index\.json inside/));
  await assert.rejects(store.import("x5", chunks(Buffer.alloc(0))), code("invalid_argument", /it is empty/));
  await assert.rejects(store.import("Web/App", chunks(bb.file)), code("invalid_argument", /use NAME\[:TAG\]/));
  assert.deepEqual(await keys(), before, "no archive or record left behind");
  assert.deepEqual((await store.list()).map((r) => r.name), ["bb:latest"]);
});

test("--replace swaps the archive in one step and drops the old one; pax headers and gzip are read too", async () => {
  const v2 = await dockerArchive("localhost/bb:1", "pax", "2");
  const old = (await store.get("bb"))!;
  const rec = await store.import("bb", chunks(gzipSync(v2.file)), { replace: true });
  assert.equal(rec.imageId, v2.id);
  assert.notEqual(rec.key, old.key);
  await assert.rejects(dev.blobs.headObject(CONTAINER_IMAGE_BUCKET, old.key), code("not_found"));
  // And back, for the tests below.
  await store.import("bb", chunks(bb.file), { replace: true });
});

test("ensure: concurrent creates load the archive into the engine once; later ones find it loaded; a changed image is loaded again", async () => {
  const engine = fakeEngine();
  const loaded = await Promise.all(Array.from({ length: 8 }, () => store.ensure(engine, "bb")));
  assert.equal(engine.loads.length, 1, "one load for eight ensures");
  assert.deepEqual(engine.loads[0], { bytes: bb.file.length, sha256: sha(bb.file) }, "the whole archive, byte for byte");
  for (const l of loaded) assert.equal(l?.ref, "localhost/bb:1");
  engine.images.set("localhost/bb:1", bb.id);
  assert.equal((await store.ensure(engine, "bb:latest"))?.ref, "localhost/bb:1");
  assert.equal(engine.loads.length, 1, "already loaded: not again");
  // The engine's localhost/bb:1 is some other image (another archive with the same tag): this one is loaded over it.
  engine.images.set("localhost/bb:1", "sha256:" + "e".repeat(64));
  await store.ensure(engine, "bb");
  assert.equal(engine.loads.length, 2);
  // A second engine (another node) loads its own copy.
  const other = fakeEngine();
  await store.ensure(other, "bb");
  assert.equal(other.loads.length, 1);
  assert.equal(await store.ensure(engine, "nginx:1.27"), undefined, "not imported: the caller pulls");
  assert.equal(await store.ensure(engine, "docker.io/library/nginx:1.27"), undefined);
});

test("imageEnsurer: the image id of an imported image (loaded from the bucket), of one the engine has, else of a pulled one; a failed pull names both places", async () => {
  const engine = fakeEngine(0);
  const ensure = imageEnsurer(store, engine);
  // The image id, which the container is created from: the engine knows the image as localhost/bb:1, not bb.
  engine.loadImage = async (a: Readable) => { for await (const _ of a) { /* drained */ } engine.images.set("localhost/bb:1", bb.id); return ["localhost/bb:1"]; };
  assert.equal(await ensure("bb"), bb.id);
  engine.images.set("alpine:3", "sha256:a");
  assert.equal(await ensure("alpine:3"), "sha256:a");
  assert.equal(await ensure("docker.io/library/nginx:1.27"), "sha256:pulled");
  assert.equal(engine.images.get("docker.io/library/nginx:1.27"), "sha256:pulled");
  await assert.rejects(ensure("nope:1"), code("not_found", /image nope:1: manifest unknown \(no imported image nope:1 either: thoc-node ct image list\)/));
});

test("the rpc handlers: import from a stream whose first message names the image, list, delete (the engine's copy goes too)", async () => {
  const engine = fakeEngine(0);
  const h = containerImageHandlers(store, () => engine);
  async function* reqs() {
    yield { name: "web:2", size: BigInt(bb.file.length), sha256: sha(bb.file), data: new Uint8Array(), replace: false };
    for await (const c of chunks(bb.file, 65536)) yield { name: "", size: 0n, sha256: "", data: c, replace: false };
  }
  const img = await h.importContainerImage(reqs() as never, {} as never);
  assert.equal(img.name, "web:2");
  assert.equal(img.size, BigInt(bb.file.length));
  assert.deepEqual(img.refs, ["localhost/bb:1"]);
  const list = await h.listContainerImages({} as never, {} as never);
  assert.deepEqual(list.images?.map((i) => i.name), ["bb:latest", "web:2"]);
  await store.ensure(engine, "web:2");
  engine.images.set("localhost/bb:1", bb.id);
  await h.deleteContainerImage({ name: "web:2" } as never, {} as never);
  assert.equal(engine.images.has("localhost/bb:1"), false, "this node's engine copy removed");
  assert.deepEqual((await store.list()).map((r) => r.name), ["bb:latest"]);
  await assert.rejects(h.deleteContainerImage({ name: "web:2" } as never, {} as never), code("not_found", /not imported \(thoc-node ct image list\)/));
  async function* empty() { /* nothing */ }
  await assert.rejects(h.importContainerImage(empty() as never, {} as never), code("invalid_argument", /no image sent/));
});

const podman = (args: string[]) => spawnSync("podman", ["--cgroup-manager=cgroupfs", "--runtime", "runc", ...args], { encoding: "utf8", timeout: 120_000 });
const havePodman = spawnSync("podman", ["--version"]).status === 0 && spawnSync("test", ["-x", "/bin/busybox"]).status === 0;

test("podman's own docker-archive and oci-archive: the refs and image id it reports", { skip: havePodman ? false : "podman or busybox-static missing" }, async () => {
  const d = await mkdtemp(path.join(dir, "podman-"));
  await writeFile(path.join(d, "busybox"), await readFile("/bin/busybox"));
  await writeFile(path.join(d, "Containerfile"), 'FROM scratch\nCOPY busybox /bin/busybox\nCMD ["/bin/busybox","sh"]\n');
  const tag = `localhost/thoc-h3-test:${process.pid}`;
  const b = podman(["build", "-q", "-t", tag, d]);
  assert.equal(b.status, 0, b.stderr);
  try {
    const id = podman(["image", "inspect", "--format", "{{.Id}}", tag]).stdout.trim();
    for (const format of ["docker-archive", "oci-archive"]) {
      const out = path.join(d, `${format}.tar`);
      const s = podman(["save", "--format", format, "-o", out, tag]);
      assert.equal(s.status, 0, s.stderr);
      const scan = new ArchiveScanner();
      for await (const c of chunks(await readFile(out), 100_000)) scan.write(c);
      const info = await scan.end();
      assert.equal(info.imageId, `sha256:${id}`, format);
      assert.ok(info.refs.some((r) => r === tag || tag.endsWith(r)), `${format}: ${info.refs.join(",")}`);
    }
  } finally {
    podman(["rmi", "-f", tag]);
    await rm(d, { recursive: true, force: true });
  }
});
