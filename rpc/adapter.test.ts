import { test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { GetReplicaResponseSchema, PutReplicaRequestSchema } from "../proto/index.js";
import { serializer } from "./adapter.js";

test("body chunks framed by hand are byte-identical to protobuf-es's encoding, at every varint length", () => {
  const put = serializer(PutReplicaRequestSchema);
  const get = serializer(GetReplicaResponseSchema);
  for (const n of [0, 1, 127, 128, 16_383, 16_384, 65_536, 2_097_151, 2_097_152]) {
    const data = randomBytes(n);
    const msg = create(PutReplicaRequestSchema, { part: { case: "chunk", value: data } });
    const mine = put(msg);
    assert.ok(Buffer.from(toBinary(PutReplicaRequestSchema, msg)).equals(mine), `chunk of ${n} bytes`);
    const back = fromBinary(PutReplicaRequestSchema, mine);
    assert.equal(back.part.case, "chunk");
    assert.ok(Buffer.from(back.part.value as Uint8Array).equals(data));
    const g = create(GetReplicaResponseSchema, { part: { case: "chunk", value: data } });
    assert.ok(Buffer.from(toBinary(GetReplicaResponseSchema, g)).equals(get(g)), `GetReplica chunk of ${n} bytes`);
  }
  // Plain-object messages (as handlers yield them) take the same path.
  assert.ok(put({ part: { case: "chunk", value: Buffer.from("abc") } }).equals(Buffer.from([0x12, 3, 0x61, 0x62, 0x63])));
});

test("other messages and other oneof cases go through protobuf-es, without a copy", () => {
  const put = serializer(PutReplicaRequestSchema);
  const msg = create(PutReplicaRequestSchema, { part: { case: "trailer", value: { size: 5n, sha256: "ab", meta: "{}" } } });
  assert.ok(Buffer.from(toBinary(PutReplicaRequestSchema, msg)).equals(put(msg)));
  const empty = create(PutReplicaRequestSchema, {});
  assert.equal(put(empty).length, 0);
});
