/**
 * The S3 protocol suites (objects, listings, multipart, bad input) against
 * the store an agent runs with --dev: a ring of one over the durable replica
 * store, real LevelDB and real files.
 */
import { s3Suite } from "../s3/testutil.js";
import { openDevStore } from "../testutil.js";

s3Suite("S3 over the --dev store (ring of one, durable)", async () => {
  const d = await openDevStore();
  return { store: d.blobs, dispose: () => d.dispose() };
});
