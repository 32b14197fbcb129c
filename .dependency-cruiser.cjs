/**
 * The architecture, checked by `npm run check:arch` (CI runs it before the tests).
 * docs/architecture.md explains it; in words:
 *
 * - Layers, each importing only those below it:
 *     errors/  ->  config/ rpc/ store/ (and the generated proto/)  ->  core/  ->  cluster/
 *     ->  the subsystems membership/ objectstore/ vm/ hypervisor/ engine/ container/ scheduler/
 *     ->  agent/ (the composition root)  ->  cli/  ->  bin/
 *   So the foundation imports neither core/ nor anything above it; core/ and
 *   cluster/ import no subsystem, agent/ or cli/ (core/ not cluster/ either); a
 *   subsystem imports neither agent/ nor cli/; only bin/ imports cli/.
 * - A folder is any directory with an index.ts (nested ones too: objectstore/s3,
 *   objectstore/replica...). Its index.ts is its face: a file outside the folder
 *   imports the index.ts and nothing else in it. Files inside a folder, unit
 *   tests (x.test.ts next to the code) included, may import their own folder's
 *   files, but a nested folder's only through its face. test/ and bench/ use
 *   faces like everyone else. The generated code under proto/gen/ is reached
 *   through proto/index.ts by the same rule.
 *   A folder may also have a test face, testutil.ts (fixtures, shared suites):
 *   test code (x.test.ts, test/, other testutil.ts) may import it from
 *   anywhere; production code never imports a testutil.ts.
 *   One exception: proto/gen/thoc/test/ (the Echo service rpc/'s tests run) is
 *   kept out of proto/index.ts so the agent can never serve it; test files, and
 *   only they, import it directly.
 * - No import circles between files.
 *
 * Type-only imports count (tsPreCompilationDeps), and so do dynamic import()s.
 */
const fs = require("node:fs");
const path = require("node:path");

const SUBSYSTEMS = "membership|objectstore|vm|hypervisor|engine|container|scheduler";
/** Test code: unit tests, the multi-agent tests and their helpers in test/, and the test faces. */
const TEST_CODE = "(\\.test\\.ts$|^test/|(^|/)testutil\\.ts$)";
const TEST_PROTO = "^proto/gen/thoc/test/";
const SKIP = new Set(["node_modules", "dist", ".git"]);

/** Every directory (relative to the repository, "/"-separated) that has an index.ts. */
function folders(dir = "", out = []) {
  for (const e of fs.readdirSync(path.join(__dirname, dir), { withFileTypes: true })) {
    if (!e.isDirectory() || SKIP.has(e.name) || e.name.startsWith(".")) continue;
    const rel = dir ? `${dir}/${e.name}` : e.name;
    if (fs.existsSync(path.join(__dirname, rel, "index.ts"))) out.push(rel);
    folders(rel, out);
  }
  return out;
}
const esc = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

module.exports = {
  forbidden: [
    { name: "no-circular", severity: "error", comment: "an import circle between files", from: {}, to: { circular: true } },
    {
      name: "foundation-imports-up", severity: "error",
      comment: "errors/ config/ rpc/ store/ proto/ are the foundation: they import neither core/ nor anything above it",
      from: { path: "^(errors|config|rpc|store|proto)/" },
      to: { path: `^(core|cluster|${SUBSYSTEMS}|agent|cli)/` },
    },
    {
      name: "errors-imports-ours", severity: "error",
      comment: "errors/ is the bottom layer: it imports nothing of ours",
      from: { path: "^errors/" }, to: { path: "^(config|rpc|store|proto)/" },
    },
    {
      name: "core-imports-up", severity: "error",
      comment: "core/ is the seams under cluster/ and the subsystems: it imports none of them, nor agent/ or cli/",
      from: { path: "^core/" }, to: { path: `^(cluster|${SUBSYSTEMS}|agent|cli)/` },
    },
    {
      name: "cluster-imports-up", severity: "error",
      comment: "cluster/ (node-to-node plumbing) imports no subsystem, nor agent/ or cli/",
      from: { path: "^cluster/" }, to: { path: `^(${SUBSYSTEMS}|agent|cli)/` },
    },
    {
      name: "subsystem-imports-up", severity: "error",
      comment: "a subsystem gets what it needs from agent/root.ts as constructor arguments; it imports neither agent/ nor cli/",
      from: { path: `^(${SUBSYSTEMS})/` }, to: { path: "^(agent|cli)/" },
    },
    {
      name: "only-bin-imports-cli", severity: "error",
      comment: "the CLI is the top: only bin/ (and cli/ itself) imports it",
      from: { pathNot: "^(bin|cli)/" }, to: { path: "^cli/" },
    },
    ...folders().map((f) => ({
      name: `face:${f}`, severity: "error",
      comment: `outside ${f}/, import ${f}/index.ts, not the files behind it (test code may also import its testutil.ts)`,
      from: { pathNot: `^${esc(f)}/` },
      to: { path: `^${esc(f)}/`, pathNot: [`^${esc(f)}/index\\.ts$`, ...(f === "proto" ? [TEST_PROTO] : [])] },
    })).flatMap((r) => [
      { ...r, from: { ...r.from, pathNot: [r.from.pathNot, TEST_CODE] } },
      { ...r, name: `${r.name}:tests`, from: { path: TEST_CODE, pathNot: r.from.pathNot }, to: { ...r.to, pathNot: [...r.to.pathNot, "(^|/)testutil\\.ts$"] } },
    ]),
    {
      name: "testutil-only-in-tests", severity: "error",
      comment: "a testutil.ts is a test face: production code never imports one",
      from: { pathNot: TEST_CODE }, to: { path: "(^|/)testutil\\.ts$" },
    },
    {
      name: "test-proto-only-in-tests", severity: "error",
      comment: "the test-only protos (not in proto/index.ts) are for *.test.ts files",
      from: { pathNot: "\\.test\\.ts$" }, to: { path: TEST_PROTO },
    },
  ],
  options: {
    doNotFollow: { path: "node_modules" },
    exclude: { path: "^(dist|node_modules)/" },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: "tsconfig.json" },
    enhancedResolveOptions: { exportsFields: ["exports"], conditionNames: ["import", "require", "node", "default", "types"], extensions: [".ts", ".js", ".mjs", ".cjs", ".d.ts"] },
    reporterOptions: { text: { highlightFocused: true } },
  },
};
