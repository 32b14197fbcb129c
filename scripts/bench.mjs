#!/usr/bin/env node
// Runs one compiled benchmark (dist/bench/<name>.js) with the arguments after its name.
// Usage: npm run bench -- <name> [args...]   (npm run bench alone lists the names)
import { readdirSync } from "node:fs";
import path from "node:path";
import { spawnSync } from "node:child_process";

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..");
const dir = path.join(root, "dist", "bench");
// common.js is shared code, not a benchmark.
const names = readdirSync(dir).filter((f) => f.endsWith(".js") && f !== "common.js").map((f) => f.slice(0, -3)).sort();
const [name, ...args] = process.argv.slice(2);
if (!name || !names.includes(name)) {
  console.error(`${name ? `no benchmark named ${name}` : "name a benchmark"}: npm run bench -- <name> [args]; one of ${names.join(", ")}`);
  process.exit(2);
}
const r = spawnSync(process.execPath, [path.join(dir, `${name}.js`), ...args], { stdio: "inherit", cwd: root });
process.exit(r.status ?? 1);
