/**
 * `npm run bench -- NAME [flags]`: builds, then runs bench/NAME.ts (its
 * flags pass through). Without a name it lists the benchmarks.
 */
import { readdirSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const names = readdirSync(here).filter((f) => f.endsWith(".js") && !["index.js", "common.js"].includes(f)).map((f) => f.slice(0, -3)).sort();
const name = process.argv[2];
if (!name || !names.includes(name)) {
  console.error(`${name ? `no benchmark ${name}; ` : ""}usage: npm run bench -- NAME [flags], NAME one of: ${names.join(", ")} (docs/benchmarks.md)`);
  process.exit(name ? 1 : 0);
}
await import(`./${name}.js`);
