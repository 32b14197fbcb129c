/** The per-node image cache: formats, checksums on arrival and on use, names, replace, delete. */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { execFileSync } from "node:child_process";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { LocalImageStore } from "./images.js";

let dir: string;
let store: LocalImageStore;
before(async () => { dir = await mkdtemp(path.join(tmpdir(), "thoc-img-")); store = new LocalImageStore(path.join(dir, "images")); });
after(() => rm(dir, { recursive: true, force: true }));

const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");
const code = (c: string, re?: RegExp) => (e: { code?: string; message: string }) => e.code === c && (!re || re.test(e.message));

async function imageFile(format: string, size = "64M"): Promise<Buffer> {
  const f = path.join(dir, `x.${format}`);
  execFileSync("qemu-img", ["create", "-q", "-f", format, f, size]);
  return readFile(f);
}

test("qcow2 and raw disk images: format, virtual size, checksum", async () => {
  const q = await imageFile("qcow2");
  const w = await store.begin("ubuntu-22.04", { sha256: { disk: sha(q) } });
  // Chunks arrive in pieces.
  for (let i = 0; i < q.length; i += 1000) await w.write("disk", q.subarray(i, i + 1000));
  const r = await w.commit();
  assert.equal(r.kind, "disk");
  assert.equal(r.files[0]?.format, "qcow2");
  assert.equal(r.files[0]?.sha256, sha(q));
  assert.equal(r.virtualSize, 64 * 2 ** 20);
  const raw = Buffer.alloc(1 << 20, 1);
  const w2 = await store.begin("debian-12");
  await w2.write("disk", raw);
  assert.equal((await w2.commit()).files[0]?.format, "raw");
  assert.deepEqual((await store.list()).map((i) => i.name), ["debian-12", "ubuntu-22.04"]);
  assert.equal((await store.verify("ubuntu-22.04")).name, "ubuntu-22.04");
});

test("a corrupted upload, an unsupported format, a duplicate and bad names are refused and leave nothing", async () => {
  const q = await imageFile("qcow2");
  const w = await store.begin("bad-sum", { sha256: { disk: "0".repeat(64) } });
  await w.write("disk", q);
  await assert.rejects(w.commit(), code("data_loss", /upload was corrupted/));
  const vmdk = await imageFile("vmdk");
  const w2 = await store.begin("vm-dk");
  await w2.write("disk", vmdk);
  await assert.rejects(w2.commit(), code("invalid_argument", /vmdk disk images are not supported: convert to qcow2/));
  await assert.rejects(store.begin("debian-12"), code("already_exists", /--replace/));
  await assert.rejects(store.begin("../x"), code("invalid_argument"));
  const w3 = await store.begin("both");
  await w3.write("disk", q);
  await w3.write("kernel", Buffer.from("k"));
  await assert.rejects(w3.commit(), code("invalid_argument", /not both/));
  const w4 = await store.begin("nothing");
  await assert.rejects(w4.commit(), code("invalid_argument", /no image data/));
  const names = await readdir(path.join(dir, "images"));
  assert.deepEqual(names.sort(), ["debian-12", "ubuntu-22.04"], "no temp dirs or half images left");
});

test("direct-kernel-boot images; replace; delete; verify catches a changed file", async () => {
  const w = await store.begin("busybox", { cmdline: "console=ttyS0" });
  await w.write("kernel", Buffer.from("kernel-bytes"));
  await w.write("initrd", Buffer.from("initrd-bytes"));
  const r = await w.commit();
  assert.equal(r.kind, "kernel");
  assert.deepEqual(r.files.map((f) => f.part), ["kernel", "initrd"]);
  assert.equal(r.cmdline, "console=ttyS0");
  const w2 = await store.begin("busybox", { cmdline: "console=ttyS0 quiet", replace: true });
  await w2.write("kernel", Buffer.from("kernel-bytes-2"));
  assert.equal((await w2.commit()).cmdline, "console=ttyS0 quiet");
  await writeFile(store.pathOf("busybox", "kernel"), "tampered");
  await assert.rejects(store.verify("busybox"), code("data_loss", /corrupt; import the image again/));
  await store.delete("busybox");
  assert.equal(await store.get("busybox"), undefined);
  await assert.rejects(store.delete("busybox"), code("not_found"));
  await assert.rejects(store.verify("centos-8"), code("not_found", /thoc-node image import centos-8 FILE/));
});
