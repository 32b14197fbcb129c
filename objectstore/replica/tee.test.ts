import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { Tee } from "./tee.js";
import { ThocError } from "../../errors/index.js";

async function* counted(n: number, pulled: { n: number }) {
  for (let i = 0; i < n; i++) { pulled.n++; yield Buffer.from([i]); }
}

test("every branch gets every chunk; the slowest branch paces the source; a detached one stops holding it back", async () => {
  const pulled = { n: 0 };
  const tee = new Tee(counted(100, pulled), 4);
  const fast = tee.branch();
  const slow = tee.branch();
  const gone = tee.branch();
  const fastIt = fast[Symbol.asyncIterator]();
  for (let i = 0; i < 4; i++) await fastIt.next();
  // The fast branch is 4 ahead of the others: the source is not read further.
  const stuck = fastIt.next();
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(pulled.n, 4);
  gone.detach();
  const slowIt = slow[Symbol.asyncIterator]();
  assert.equal((await slowIt.next()).value![0], 0);
  assert.equal((await stuck).value![0], 4, "one chunk consumed by the slow branch lets the fast one go on");
  const drain = async (it: AsyncIterator<Uint8Array>) => { const out: number[] = []; for (let r = await it.next(); !r.done; r = await it.next()) out.push(r.value[0]!); return out; };
  const [restSlow, restFast] = await Promise.all([drain(slowIt), drain(fastIt)]);
  assert.deepEqual(restSlow, Array.from({ length: 99 }, (_, i) => i + 1));
  assert.deepEqual(restFast, Array.from({ length: 95 }, (_, i) => i + 5));
  const exp = tee.expected();
  assert.equal(exp.size, 100);
  assert.equal(exp.sha256, createHash("sha256").update(Buffer.from(Array.from({ length: 100 }, (_, i) => i))).digest("hex"));
});

test("a failing source fails every branch, and expected() refuses an unfinished body", async () => {
  const tee = new Tee((async function* () { yield Buffer.from("a"); throw new ThocError("aborted", "client went away"); })());
  const a = tee.branch();
  const b = tee.branch();
  assert.throws(() => tee.expected(), (e: ThocError) => e.code === "data_loss");
  for (const br of [a, b]) await assert.rejects(async () => { for await (const _ of br) { /* drain */ } }, /client went away/);
  assert.throws(() => tee.expected(), (e: ThocError) => e.code === "data_loss");
  assert.match(String(tee.sourceError), /client went away/);
});
