import { test } from "node:test";
import assert from "node:assert/strict";
import type { DescService } from "@bufbuild/protobuf";
import * as proto from "../proto/index.js";
import type { Caller } from "../rpc/index.js";
import { ROLE_TABLE, checkCall, missingRoles } from "./roles.js";

/** Every service the generated code declares (the agent can only serve these), from the descriptors. */
const services = (Object.values(proto) as unknown[]).filter((v): v is DescService =>
  typeof v === "object" && v !== null && (v as { kind?: string }).kind === "service");
const paths = services.flatMap((s) => s.methods.map((m) => `/${s.typeName}/${m.name}`));

test("every method of every service in proto/ has a role in the table", () => {
  // The enumeration itself works: it found the services the agent serves (a vacuous pass is a failure).
  for (const s of ["NodeService", "VmService", "ImageService", "KeyService", "ClusterService", "ObjectStoreService", "EventService"]) {
    assert.ok(services.some((d) => d.typeName === `thoc.node.v1.${s}`), `descriptor enumeration missed ${s}`);
  }
  assert.ok(paths.length >= 39, `only ${paths.length} methods found`);
  assert.deepEqual(missingRoles(paths), [], "methods with no role: add them to agent/roles.ts");
});

test("every entry of the table names a real method (PkiService's arrive with the cluster PKI)", () => {
  const pkiGenerated = services.some((d) => d.typeName === "thoc.node.v1.PkiService");
  const stale = [...ROLE_TABLE.keys()].filter((p) => !paths.includes(p) && (pkiGenerated || !p.startsWith("/thoc.node.v1.PkiService/")));
  assert.deepEqual(stale, []);
});

const op = (role: "viewer" | "operator" | "admin"): Caller => ({ kind: "operator", name: "al", role, serial: "01", fingerprint: "ff" });
const node: Caller = { kind: "node", nodeId: "n1", serial: "02", fingerprint: "ee" };
const local = (uid: number, gid: number, groups: number[] = []): Caller => ({ kind: "local", uid, gid, pid: 42, groups });
const anon = (transport: "insecure" | "tls"): Caller => ({ kind: "anonymous", transport });

function outcome(method: string, c: Caller, o: { dev?: boolean; adminGid?: number } = {}): string {
  try { checkCall(method, c, { dev: o.dev ?? false, adminGid: o.adminGid }); return "ok"; } catch (err) { return (err as { code: string }).code; }
}

test("the rules: roles in order, peers only for peer methods, local root or admin group, anonymous peers only over plaintext, --dev admits all", () => {
  const V = "/thoc.node.v1.VmService/ListVms", O = "/thoc.node.v1.VmService/CreateVm", A = "/thoc.node.v1.KeyService/CreateKey";
  const P = "/thoc.node.v1.ObjectStoreService/SyncTable", PUB = "/thoc.node.v1.PkiService/Join";
  const row = (c: Caller, o?: { dev?: boolean; adminGid?: number }) => [V, O, A, P, PUB].map((m) => outcome(m, c, o)).join(" ");
  assert.equal(row(op("viewer")), "ok permission_denied permission_denied permission_denied ok");
  assert.equal(row(op("operator")), "ok ok permission_denied permission_denied ok");
  assert.equal(row(op("admin")), "ok ok ok permission_denied ok");
  // A node routes an operator's VM call to the VM's node (authorized where the operator called): VmService only.
  assert.equal(row(node), "ok ok permission_denied ok ok");
  assert.equal(outcome("/thoc.node.v1.ImageService/DeleteImage", node), "permission_denied");
  assert.equal(outcome("/thoc.node.v1.NodeService/GetNode", node), "permission_denied");
  assert.equal(row(local(0, 0)), "ok ok ok permission_denied ok");
  assert.equal(row(local(1000, 1000)), "permission_denied permission_denied permission_denied permission_denied ok");
  assert.equal(row(local(1000, 1000, [27, 999]), { adminGid: 999 }), "ok ok ok permission_denied ok");
  assert.equal(row(local(1000, 999), { adminGid: 999 }), "ok ok ok permission_denied ok");
  assert.equal(row(anon("insecure")), "unauthenticated unauthenticated unauthenticated ok ok");
  assert.equal(row(anon("tls")), "unauthenticated unauthenticated unauthenticated unauthenticated ok");
  assert.equal(row(anon("insecure"), { dev: true }), "ok ok ok ok ok");
  // A method nobody gave a role is refused to everyone, admins included (outside --dev).
  assert.equal(outcome("/thoc.node.v1.VmService/Unlisted", op("admin")), "permission_denied");
  assert.deepEqual(missingRoles(["/thoc.node.v1.VmService/Unlisted", V]), ["/thoc.node.v1.VmService/Unlisted"]);
});

test("a revoked certificate serial is refused whatever its role (leading zeros as TLS reports them)", () => {
  const revoked = new Set(["1"]);
  const opts = { dev: false, isRevoked: (s: string) => revoked.has(s) };
  assert.throws(() => checkCall("/thoc.node.v1.NodeService/GetNode", op("admin"), opts), (e: { code: string; message: string }) => e.code === "unauthenticated" && /revoked/.test(e.message));
  assert.doesNotThrow(() => checkCall("/thoc.node.v1.NodeService/GetNode", { kind: "operator", name: "al", role: "admin", serial: "03", fingerprint: "ff" }, opts));
  // Public methods stay public; --dev has no certificates to revoke.
  assert.doesNotThrow(() => checkCall("/thoc.node.v1.PkiService/GetCa", op("admin"), opts));
  assert.doesNotThrow(() => checkCall("/thoc.node.v1.NodeService/GetNode", op("admin"), { ...opts, dev: true }));
});
