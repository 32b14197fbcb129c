import { test } from "node:test";
import assert from "node:assert/strict";
import { status } from "@grpc/grpc-js";
import { ThocError, quorumError } from "./index.js";

test("ThocError.from keeps ThocErrors and maps system errors", () => {
  const e = new ThocError("not_found", "no such vm");
  assert.equal(ThocError.from(e), e);
  const sys = Object.assign(new Error("listen EADDRINUSE"), { code: "EADDRINUSE" });
  assert.equal(ThocError.from(sys).code, "failed_precondition");
  assert.equal(ThocError.from("boom").code, "internal");
  assert.equal(ThocError.from(new Error("x"), "unavailable").code, "unavailable");
});

test("gRPC ServiceErrors keep their status both ways", () => {
  const grpcErr = Object.assign(new Error("5 NOT_FOUND: gone"), { code: status.NOT_FOUND, details: "gone", metadata: {} });
  const e = ThocError.from(grpcErr);
  assert.equal(e.code, "not_found");
  assert.equal(e.message, "gone");
  assert.equal(e.grpcStatus, status.NOT_FOUND);
});

test("every code maps to the gRPC status of the same name in grpc-js", () => {
  const codes = ["invalid_argument", "not_found", "already_exists", "failed_precondition", "resource_exhausted", "unavailable", "permission_denied",
    "unauthenticated", "deadline_exceeded", "aborted", "cancelled", "unimplemented", "data_loss", "internal"] as const;
  for (const c of codes) {
    const st = status[c.toUpperCase() as keyof typeof status];
    assert.equal(new ThocError(c, "x").grpcStatus, st, c);
    assert.equal(ThocError.from(Object.assign(new Error("x"), { code: st, metadata: {} })).code, c);
  }
});

test("quorum errors carry counts", () => {
  const e = quorumError("put", 1, 2, 3);
  assert.equal(e.code, "unavailable");
  assert.deepEqual(e.details, { got: 1, needed: 2, replicas: 3 });
  assert.match(e.message, /1 of 2 needed/);
});
