import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { Registry } from "prom-client";
import { registerDataDirMetrics } from "./metrics.js";

test("data dir filesystem metrics: size and available bytes from statfs; NaN (not 0 free) when statfs fails", async () => {
  const dir = mkdtempSync(path.join(tmpdir(), "thoc-metrics-"));
  try {
    const reg = new Registry();
    registerDataDirMetrics(reg, dir);
    const text = await reg.metrics();
    const size = Number(/^thoc_data_dir_filesystem_size_bytes (\d+)$/m.exec(text)?.[1]);
    const avail = Number(/^thoc_data_dir_filesystem_avail_bytes (\d+)$/m.exec(text)?.[1]);
    assert.ok(size > 0 && avail > 0 && avail <= size, text);

    // A data dir that cannot be read (removed, or a broken mount) is NaN, unknown: a "disk full" alert must not fire on it.
    const gone = new Registry();
    registerDataDirMetrics(gone, path.join(dir, "missing"));
    const none = await gone.metrics();
    // prom-client writes "Nan"; Prometheus parses the value case-insensitively (Go's ParseFloat).
    assert.match(none, /^thoc_data_dir_filesystem_size_bytes nan$/im);
    assert.match(none, /^thoc_data_dir_filesystem_avail_bytes nan$/im);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
