import { test } from "node:test";
import assert from "node:assert/strict";
import type { PeerCertificate } from "node:tls";
import { callerFromCertificate, describeCaller, roleAtLeast } from "./identity.js";

const cert = (subject: Record<string, string | string[]>): PeerCertificate =>
  ({ subject, serialNumber: "0A1B", fingerprint256: "AB:CD" }) as unknown as PeerCertificate;

test("a node certificate names a node, an operator certificate an operator with its role", () => {
  assert.deepEqual(callerFromCertificate(cert({ CN: "n-123", O: "thoc", OU: "node" })), { kind: "node", nodeId: "n-123", serial: "0a1b", fingerprint: "abcd" });
  assert.deepEqual(callerFromCertificate(cert({ CN: "alice", O: "thoc", OU: "operator" })), { kind: "operator", name: "alice", role: "operator", serial: "0a1b", fingerprint: "abcd" });
});

test("a certificate that is not THOC's, or is ambiguous, is anonymous", () => {
  const subjects: Record<string, string | string[]>[] = [
    { CN: "alice", O: "acme", OU: "admin" }, // another organisation
    { CN: "alice", O: "thoc", OU: "root" }, // no such role
    { CN: "alice", O: "thoc" }, // no OU
    { CN: "alice", O: "thoc", OU: ["viewer", "admin"] }, // two OUs: never pick one
    { O: "thoc", OU: "node" }, // no CN
  ];
  for (const s of subjects) assert.deepEqual(callerFromCertificate(cert(s)), { kind: "anonymous", transport: "tls" }, JSON.stringify(s));
});

test("roles nest: admin > operator > viewer", () => {
  assert.ok(roleAtLeast("admin", "viewer") && roleAtLeast("operator", "operator"));
  assert.ok(!roleAtLeast("viewer", "operator") && !roleAtLeast("operator", "admin"));
  assert.equal(describeCaller({ kind: "local", uid: 0, gid: 0, pid: 7 }), "local uid 0 gid 0 pid 7");
});
