/**
 * An imported image into REAL podman (its Docker-compatible service, through
 * the DockerEngine): a busybox archive kept in the --dev object store is
 * loaded once by concurrent ensures, the id returned is what podman calls the
 * image, and a container created from that id (not from the name it was
 * imported as, which podman does not know) runs.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createReadStream } from "node:fs";
import type { Readable } from "node:stream";
import { DockerEngine, type ContainerEngine } from "../engine/index.js";
import { buildBusyboxImage, ensurePodmanService } from "../engine/testutil.js";
import { openDevStore, type DevStore } from "../objectstore/testutil.js";
import { ContainerImageStore, imageEnsurer } from "./images.js";

const podman = spawnSync("podman", ["--version"]).status === 0 && spawnSync("test", ["-x", "/bin/busybox"]).status === 0;
const skip = podman ? false : "podman or busybox-static missing (apt-get install podman runc busybox-static)";
const TAG = `localhost/thoc-h3-ensure:${process.pid}`;

let dev: DevStore;
let engine: DockerEngine;
before(async () => {
  if (skip) return;
  dev = await openDevStore();
  engine = new DockerEngine({ uri: (await ensurePodmanService()).uri });
});
after(async () => {
  if (skip) return;
  await engine.removeImage(TAG).catch(() => {});
  await engine.close();
  await dev.dispose().catch(() => {});
});

test("concurrent ensures load an imported archive into podman once; a container runs from the id returned", { skip }, async () => {
  const archive = await buildBusyboxImage(TAG);
  const store = new ContainerImageStore(dev.blobs);
  const rec = await store.import("bb", createReadStream(archive));
  assert.deepEqual(rec.refs, [TAG]);
  let loads = 0;
  // The real engine, counting its loads.
  const counted = new Proxy(engine, {
    get(t, k) {
      if (k === "loadImage") return (a: Readable) => { loads++; return t.loadImage(a); };
      const v = Reflect.get(t, k) as unknown;
      return typeof v === "function" ? (v as (...x: unknown[]) => unknown).bind(t) : v;
    },
  }) as ContainerEngine;
  const ensure = imageEnsurer(store, counted);
  const ids = await Promise.all(Array.from({ length: 5 }, () => ensure("bb")));
  assert.equal(loads, 1, "one load for five creates");
  assert.equal(new Set(ids).size, 1);
  assert.equal(ids[0]!.replace(/^sha256:/, ""), rec.imageId.replace(/^sha256:/, ""), "podman's id is the archive's config digest");
  assert.equal(await ensure("bb:latest"), ids[0]);
  assert.equal(loads, 1, "loaded already: not again");
  assert.equal(await engine.imageId("bb"), undefined, "podman knows it by the archive's tag, not the imported name");

  const id = await engine.create({ name: `thoc-h3-ensure-${process.pid}`, image: ids[0]!, command: ["echo", "hello from the bucket"], env: {}, labels: {}, ports: [], mounts: [], cpus: 0, memoryBytes: 0, devices: [] });
  try {
    await engine.start(id);
    let out = "";
    for (let i = 0; i < 50 && !out.includes("hello"); i++) {
      out = "";
      for await (const c of engine.logs(id, { follow: false })) out += c.data.toString();
      if (!out.includes("hello")) await new Promise((r) => setTimeout(r, 100));
    }
    assert.match(out, /hello from the bucket/);
  } finally {
    await engine.remove(id, { force: true }).catch(() => {});
  }
});
