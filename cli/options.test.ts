/**
 * The CLI's option handling through the real binary, with no agent: every
 * global option is honoured before and after the subcommand (each has an
 * effect the error message shows), and --output's bad values are exit 2.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { CLI, loopbackBlock } from "../test/harness.js";

let dir = "";
let silent: net.Server;
let silentAddr = "";
const refused = `${loopbackBlock()}.99:7400`;

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "thoc-cli-opts-"));
  // Accepts connections and never answers: a call to it ends only at its deadline.
  silent = net.createServer(() => {});
  await new Promise<void>((r) => silent.listen(0, "127.0.0.1", r));
  silentAddr = `127.0.0.1:${(silent.address() as net.AddressInfo).port}`;
});
after(async () => {
  silent.close();
  await rm(dir, { recursive: true, force: true });
});

interface Run { code: number | null; stderr: string; stdout: string; ms: number }

function cli(args: string[]): Promise<Run> {
  // No THOC_* connection settings or profile of the machine's: only the flags under test decide.
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: dir, XDG_CONFIG_HOME: dir };
  const t0 = Date.now();
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [CLI, ...args], { env, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "", stderr = "";
    p.stdout.on("data", (b: Buffer) => (stdout += b));
    p.stderr.on("data", (b: Buffer) => (stderr += b));
    p.on("close", (code) => resolve({ code, stdout, stderr, ms: Date.now() - t0 }));
  });
}

/** Each global option, what it is set to, and how the answer shows it was taken. */
const GLOBALS: { opt: string[]; expect: (r: Run) => void }[] = [
  { opt: ["--addr", refused], expect: (r) => assert.match(r.stderr, new RegExp(`cannot reach the agent at ${refused.replace(/\./g, "\\.")}`)) },
  { opt: ["--socket", "/nonexistent/thoc.sock"], expect: (r) => assert.match(r.stderr, /cannot reach the agent at \/nonexistent\/thoc\.sock/) },
  { opt: ["--tls-ca", "/nonexistent/ca.crt"], expect: (r) => assert.match(r.stderr, /--tls-ca: cannot read \/nonexistent\/ca\.crt/) },
  { opt: ["--tls-cert", "/nonexistent/op.crt"], expect: (r) => assert.match(r.stderr, /--tls-cert and --tls-key go together \(got only --tls-cert/) },
  { opt: ["--tls-key", "/nonexistent/op.key"], expect: (r) => assert.match(r.stderr, /--tls-cert and --tls-key go together \(got only --tls-key/) },
  {
    opt: ["--timeout", "600"],
    expect: (r) => {
      assert.match(r.stderr, /deadline/i);
      // The default is 10 s: ending this soon means the 600 ms was applied.
      assert.ok(r.ms < 6000, `took ${r.ms} ms`);
    },
  },
];

test("every global option works before and after the subcommand (status, vm list)", async () => {
  const cases: { args: string[]; g: (typeof GLOBALS)[number] }[] = [];
  for (const g of GLOBALS) {
    // --timeout needs somewhere to wait; the TLS ones an address to dial (the refused one: they fail before dialling).
    const target = g.opt[0] === "--timeout" ? ["--addr", silentAddr] : g.opt[0]!.startsWith("--tls") ? ["--addr", refused] : [];
    for (const c of [["status"], ["vm", "list"]]) {
      cases.push({ args: [...g.opt, ...target, ...c], g });
      cases.push({ args: [...c, ...g.opt, ...target], g });
    }
  }
  // After a subcommand's own option, and split around the subcommand.
  cases.push({ args: ["vm", "list", "--node", "n1", "--addr", refused], g: GLOBALS[0]! });
  cases.push({ args: ["--addr", silentAddr, "vm", "list", "--node", "n1", "--timeout", "600"], g: GLOBALS[5]! });
  // A few at a time: the machine is shared.
  for (let i = 0; i < cases.length; i += 4) {
    await Promise.all(cases.slice(i, i + 4).map(async ({ args, g }) => {
      const r = await cli(args);
      assert.notEqual(r.code, 0, `thoc-node ${args.join(" ")} cannot succeed here`);
      assert.doesNotMatch(r.stderr, /unknown option/, `thoc-node ${args.join(" ")}`);
      try { g.expect(r); } catch (err) {
        throw new Error(`thoc-node ${args.join(" ")}: ${(err as Error).message}\nstderr: ${r.stderr}`);
      }
    }));
  }
});

test("--output: a value outside json|table|wide, or with --json, is exit 2 naming the allowed values, before any call", async () => {
  const commands = [["vm", "list"], ["members"], ["ring"], ["image", "list"], ["s3", "key", "list"], ["events"], ["leader"], ["status"], ["vm", "gpus"], ["vm", "snapshot", "list", "x"]];
  const runs = await Promise.all(commands.map((c) => cli(["--addr", refused, ...c, "--output", "yaml"])));
  for (const [i, r] of runs.entries()) {
    const c = commands[i]!;
    assert.equal(r.code, 2, `${c.join(" ")}: ${r.stderr}`);
    assert.match(r.stderr, /argument 'yaml' is invalid\. Allowed choices are json, table, wide\./, c.join(" "));
    assert.doesNotMatch(r.stderr, /cannot reach/, "refused before connecting");
  }
  const both = await cli(["--addr", refused, "members", "--json", "-o", "table"]);
  assert.equal(both.code, 2, both.stderr);
  assert.match(both.stderr, /option '--json' cannot be used with option '-o, --output <format>'/);
});
