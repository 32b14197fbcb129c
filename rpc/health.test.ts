import { test, after } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { EchoService } from "../proto/gen/thoc/test/v1/echo_pb.js";
import { RpcServer, type ImplOf } from "./index.js";

// Clients built from the packages' own .proto files (protobufjs), so the hand-encoded health messages
// and the lazily loaded reflection are checked against what grpcurl and other tools send and expect.
const modules = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../node_modules");
type Any = any; 
const hpkg = grpc.loadPackageDefinition(protoLoader.loadSync(path.join(modules, "grpc-health-check/proto/health/v1/health.proto"), { enums: String })) as Any;
const rdir = path.join(modules, "@grpc/reflection/build/proto");
const rpkg = grpc.loadPackageDefinition(protoLoader.loadSync(path.join(rdir, "grpc/reflection/v1alpha/reflection.proto"), { includeDirs: [rdir] })) as Any;

const impl: ImplOf<typeof EchoService> = {
  async echo(req) { return { text: req.text }; },
  async *count() { /* not called */ },
  async collect() { return { text: "" }; },
  async *chat() { /* not called */ },
};
const server = new RpcServer().add(EchoService, impl);
const port = await server.listen("127.0.0.1", 0);
const health = new hpkg.grpc.health.v1.Health(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
after(async () => { health.close(); await server.shutdown(1000); });

const check = (service: string) => new Promise<Any>((resolve, reject) => health.Check({ service }, (e: Error | null, r: Any) => (e ? reject(e) : resolve(r))));

test("Check: the status set for a service, NOT_FOUND for one never named", async () => {
  assert.equal((await check("")).status, "NOT_SERVING");
  assert.equal((await check("thoc.test.v1.EchoService")).status, "NOT_SERVING");
  server.setAllServing("SERVING");
  assert.equal((await check("")).status, "SERVING");
  assert.equal((await check("thoc.test.v1.EchoService")).status, "SERVING");
  await assert.rejects(check("no.such.Service"), (e: grpc.ServiceError) => e.code === grpc.status.NOT_FOUND && /no\.such\.Service/.test(e.details));
});

test("Watch: the current status (SERVICE_UNKNOWN for an unknown service), then every change until cancelled", async () => {
  const seen: string[] = [];
  const call = health.Watch({ service: "later.Service" });
  const got = (n: number) => new Promise<void>((resolve) => { const t = setInterval(() => { if (seen.length >= n) { clearInterval(t); resolve(); } }, 5); });
  call.on("data", (r: Any) => seen.push(r.status));
  call.on("error", () => { /* the cancel below */ });
  await got(1);
  server.setServing("later.Service", "SERVING");
  await got(2);
  server.setServing("later.Service", "NOT_SERVING");
  await got(3);
  assert.deepEqual(seen, ["SERVICE_UNKNOWN", "SERVING", "NOT_SERVING"]);
  call.cancel();
});

test("List: every service's status", async () => {
  server.setAllServing("SERVING");
  const res = await new Promise<Any>((resolve, reject) => health.List({}, (e: Error | null, r: Any) => (e ? reject(e) : resolve(r))));
  assert.equal(res.statuses[""].status, "SERVING");
  assert.equal(res.statuses["thoc.test.v1.EchoService"].status, "SERVING");
});

test("reflection (v1alpha, loaded at the first call) lists the services, health included, and serves their files", async () => {
  const refl = new rpkg.grpc.reflection.v1alpha.ServerReflection(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  try {
    const ask = (req: object) => new Promise<Any>((resolve, reject) => {
      const call = refl.ServerReflectionInfo();
      call.on("data", (r: Any) => { resolve(r); call.end(); });
      call.on("error", reject);
      call.write(req);
    });
    const names = (await ask({ listServices: "" })).listServicesResponse.service.map((s: Any) => s.name);
    assert.ok(names.includes("thoc.test.v1.EchoService") && names.includes("grpc.health.v1.Health"), names.join(","));
    const files = (await ask({ fileContainingSymbol: "thoc.test.v1.EchoService" })).fileDescriptorResponse.fileDescriptorProto as Buffer[];
    assert.ok(files.some((b) => b.includes(Buffer.from("thoc/test/v1/echo.proto"))));
  } finally { refl.close(); }
});
