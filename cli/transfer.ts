/**
 * Reading a local file for an import (`image import`, `ct image import`):
 * its SHA-256 first, then its bytes as the stream's chunks, both counted on
 * a progress display when there is one.
 */
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import type { Progress } from "./progress.js";

const CHUNK = 1 << 20;

/** The file's bytes in 1 MiB chunks; each is counted once the consumer asks for the next (gRPC's flow control took it). */
export async function* fileChunks(file: string, progress?: Progress): AsyncGenerator<Buffer> {
  for await (const c of createReadStream(file, { highWaterMark: CHUNK })) {
    yield c as Buffer;
    progress?.add((c as Buffer).length);
  }
}

/** The file's SHA-256 (hex). */
export async function sha256File(file: string, progress?: Progress): Promise<string> {
  const h = createHash("sha256");
  for await (const c of fileChunks(file, progress)) h.update(c);
  return h.digest("hex");
}
