/**
 * DockerEngine.pullImage with registry credentials, against a real podman and
 * a small registry (the Distribution API's read side, Basic auth) serving the
 * busybox image from an OCI archive. The podman service is a private one told
 * (registries.conf) that the registry speaks plain HTTP.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import path from "node:path";
import type { ThocError } from "../errors/index.js";
import { DockerEngine } from "./docker-engine.js";
import { buildBusyboxImage, startPodmanService, type PodmanService } from "./testutil.js";

const USER = "puller";
const PASSWORD = "pw-Zq81-secret";
let dir: string;
let registry: Server;
let port: number;
let svc: PodmanService;
let engine: DockerEngine;
const seenAuth: string[] = [];

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "thoc-engine-pull-"));
  execFileSync("tar", ["-xf", await buildBusyboxImage("localhost/thoc-test-busybox:pull", "oci"), "-C", dir]);
  const index = JSON.parse(await readFile(path.join(dir, "index.json"), "utf8")) as { manifests: Array<{ digest: string; mediaType: string }> };
  const top = index.manifests[0]!;
  const blob = (digest: string) => readFile(path.join(dir, "blobs", "sha256", digest.replace(/^sha256:/, "")));
  const good = `Basic ${Buffer.from(`${USER}:${PASSWORD}`).toString("base64")}`;
  registry = createServer((req, res) => {
    void (async () => {
      const auth = req.headers.authorization ?? "";
      if (auth) seenAuth.push(auth);
      if (auth !== good) {
        res.writeHead(401, { "WWW-Authenticate": 'Basic realm="thoc-test"', "Content-Type": "application/json" });
        return res.end(JSON.stringify({ errors: [{ code: "UNAUTHORIZED", message: "authentication required" }] }));
      }
      const url = req.url ?? "";
      if (url === "/v2/" || url === "/v2") return res.writeHead(200, { "Content-Type": "application/json" }).end("{}");
      const m = /^\/v2\/thoc\/bb\/(manifests|blobs)\/([^/?]+)$/.exec(url);
      let body: Buffer | undefined, type = "application/octet-stream", digest = "";
      if (m?.[1] === "manifests" && (m[2] === "1" || m[2] === top.digest)) { body = await blob(top.digest); type = top.mediaType; digest = top.digest; }
      else if (m?.[1] === "blobs" && /^sha256:[0-9a-f]{64}$/.test(m[2]!)) { body = await blob(m[2]!).catch(() => undefined); digest = m[2]!; }
      if (!body) return res.writeHead(404, { "Content-Type": "application/json" }).end(JSON.stringify({ errors: [{ code: "MANIFEST_UNKNOWN", message: "unknown" }] }));
      res.writeHead(200, { "Content-Type": type, "Content-Length": body.length, "Docker-Content-Digest": digest });
      res.end(req.method === "HEAD" ? undefined : body);
    })().catch(() => res.destroy());
  });
  port = await new Promise<number>((r) => registry.listen(0, "127.0.0.1", () => r((registry.address() as { port: number }).port)));
  svc = await startPodmanService({ registriesConf: `[[registry]]\nlocation = "127.0.0.1:${port}"\ninsecure = true\n` });
  engine = new DockerEngine({ uri: svc.uri });
});

after(async () => {
  await engine?.removeImage(`127.0.0.1:${port}/thoc/bb:1`).catch(() => undefined);
  await engine?.close();
  await svc?.stop();
  registry?.close();
  await rm(dir, { recursive: true, force: true });
});

test("pullImage: credentials go to the registry; refused ones are permission_denied and never echoed", async () => {
  const ref = `127.0.0.1:${port}/thoc/bb:1`;
  await engine.removeImage(ref).catch(() => undefined);

  const noAuth = await engine.pullImage(ref).then(() => undefined, (e: ThocError) => e);
  assert.equal(noAuth?.code, "permission_denied", noAuth?.message);

  const wrong = await engine.pullImage(ref, { username: USER, password: "wrong-Pw-777" }).then(() => undefined, (e: ThocError) => e);
  assert.equal(wrong?.code, "permission_denied", wrong?.message);
  assert.ok(!wrong!.message.includes("wrong-Pw-777"));
  assert.equal(await engine.imageId(ref), undefined);

  await engine.pullImage(ref, { username: USER, password: PASSWORD });
  assert.match((await engine.imageId(ref)) ?? "", /^(sha256:)?[0-9a-f]{64}$/);
  assert.ok(seenAuth.includes(`Basic ${Buffer.from(`${USER}:${PASSWORD}`).toString("base64")}`), "the registry got the credentials");
  await engine.removeImage(ref);
});
