import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { configurationMarkdown } from "./docs.js";

test("docs/configuration.md is generated from the current schema", async () => {
  const committed = await readFile(new URL("../../docs/configuration.md", import.meta.url), "utf8");
  assert.equal(committed, configurationMarkdown(), "run: node dist/config/docs.js > docs/configuration.md");
});
