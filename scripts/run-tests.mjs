#!/usr/bin/env node
// Runs every compiled test (dist/**/*.test.js) with Node's built-in runner.
// Usage: node scripts/run-tests.mjs [substring ...]  (filters test files by path)
import { readFileSync, readdirSync, statSync } from "node:fs";
import path from "node:path";
import { run } from "node:test";
import { spec } from "node:test/reporters";

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..");
const dist = path.join(root, "dist");
const files = [];
const walk = (d) => {
  for (const e of readdirSync(d)) {
    const p = path.join(d, e);
    if (statSync(p).isDirectory()) walk(p);
    else if (e.endsWith(".test.js")) files.push(p);
  }
};
walk(dist);
const filters = process.argv.slice(2);
const matched = files.filter((f) => filters.length === 0 || filters.some((s) => f.includes(s)));
if (matched.length === 0) {
  console.error("no test files matched");
  process.exit(1);
}
// run() starts files in the order given (`node --test` would sort them), so the known slow ones go first, longest first
// (scripts/slow-tests.txt: "<seconds> <path under dist without .test.js>"), then the rest
// alphabetically: no long file is left to run alone at the end while the other slot idles.
const seconds = new Map();
for (const line of readFileSync(path.join(root, "scripts", "slow-tests.txt"), "utf8").split("\n")) {
  const m = /^\s*([0-9.]+)\s+(\S+)\s*$/.exec(line);
  if (m) seconds.set(m[2], Number(m[1]));
}
const known = (f) => seconds.get(path.relative(dist, f).split(path.sep).join("/").replace(/\.test\.js$/, "")) ?? -1;
const selected = matched.sort((a, b) => known(b) - known(a) || (a < b ? -1 : a > b ? 1 : 0));
const concurrency = Number(process.env.THOC_TEST_CONCURRENCY ?? 2);
process.chdir(root);
// What `node --test --test-reporter=spec` does: each file in its own process, a failure (not a todo) fails the run.
const stream = run({ files: selected, concurrency });
stream.on("test:fail", (d) => { if (d.todo === undefined || d.todo === false) process.exitCode = 1; });
// new: Node 20 exports the reporter class, Node 24 a function that returns one.
stream.compose(new spec()).pipe(process.stdout);
