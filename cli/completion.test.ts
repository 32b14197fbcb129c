/**
 * Completion scripts, run in the real shells: the script the installed CLI
 * prints is sourced into bash, and its function is called with COMP_WORDS as
 * bash would on <TAB>; zsh checks the zsh script's syntax and runs its
 * function with zsh's completion builtins stubbed to print what they were given.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { Command, Option } from "commander";
import { CLI } from "../test/harness.js";
import { bashScript, zshScript } from "./completion.js";

const script = (shell: string) => execFileSync(process.execPath, [CLI, "completion", shell], { encoding: "utf8" });

/** What bash offers for the words typed so far (the last one is the word under the cursor, "" after a space). */
function bashComplete(file: string, words: string[]): string[] {
  const r = spawnSync("bash", ["--norc", "-c", `source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$((\${#COMP_WORDS[@]} - 1)); _thoc_node; printf '%s\\n' "\${COMPREPLY[@]}"`, "bash", file, ...words], { encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stderr, "", "the completion function writes nothing on stderr");
  return r.stdout.split("\n").filter(Boolean);
}

function withFile<T>(text: string, fn: (file: string) => T): T {
  const dir = mkdtempSync(path.join(tmpdir(), "thoc-completion-"));
  try {
    const file = path.join(dir, "script");
    writeFileSync(file, text);
    return fn(file);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test("bash: the installed CLI's script completes subcommands, options, option values and skips option values", () => {
  withFile(script("bash"), (f) => {
    assert.equal(spawnSync("bash", ["-n", f]).status, 0, "bash -n accepts it");
    assert.deepEqual(bashComplete(f, ["thoc-node", "vm", "cr"]), ["create"]);
    const opts = bashComplete(f, ["thoc-node", "vm", "create", "--"]);
    for (const o of ["--image", "--vcpus", "--ssh-key", "--no-start", "--json", "--addr", "--timeout", "--help"]) assert.ok(opts.includes(o), `vm create -- offers ${o}: ${opts.join(" ")}`);
    assert.ok(!opts.includes("--version"), "--version is the program's alone");
    assert.ok(!opts.includes("--follow"), "no option of another command");
    assert.deepEqual(bashComplete(f, ["thoc-node", "vm", "create", "web", "--im"]), ["--image"]);
    // A global option's value is not a command: `vm` after `--addr HOST` still leads to vm's subcommands.
    assert.deepEqual(bashComplete(f, ["thoc-node", "--addr", "10.0.0.5:7400", "vm", "li"]), ["list"]);
    assert.deepEqual(bashComplete(f, ["thoc-node", "vm", "list", "--output", ""]), ["json", "table", "wide"]);
    assert.deepEqual(bashComplete(f, ["thoc-node", "members", "-o", "w"]), ["wide"]);
    // A file-valued option: nothing from us, so bash's default (file names) applies.
    assert.deepEqual(bashComplete(f, ["thoc-node", "image", "import", "deb", "--kernel", ""]), []);
    assert.deepEqual(bashComplete(f, ["thoc-node", "vm", "snapshot", "re"]), ["restore"]);
    const top = bashComplete(f, ["thoc-node", ""]);
    for (const c of ["agent", "status", "vm", "ct", "image", "s3", "members", "ring", "events", "leader", "config", "completion"]) assert.ok(top.includes(c), `top level offers ${c}`);
    assert.deepEqual(bashComplete(f, ["thoc-node", "config", ""]), ["validate", "help"]);
    assert.deepEqual(bashComplete(f, ["thoc-node", "s3", "key", "l"]), ["list"]);
    assert.deepEqual(bashComplete(f, ["thoc-node", "ct", "image", "i"]), ["import"]);
    assert.deepEqual(bashComplete(f, ["thoc-node", "ct", "create", "web", "--restart", ""]), ["no", "on-failure", "always"]);
    // A repeatable option's value is skipped too: --port 8080:80 then an option.
    assert.deepEqual(bashComplete(f, ["thoc-node", "ct", "create", "web", "--port", "8080:80", "--vol"]), ["--volume"]);
    const ctExec = bashComplete(f, ["thoc-node", "ct", "exec", "web", "-"]);
    for (const o of ["-i", "--interactive", "-t", "--tty", "-e", "--env", "-w", "--workdir"]) assert.ok(ctExec.includes(o), `ct exec offers ${o}: ${ctExec.join(" ")}`);
  });
});

test("the scripts are generated from the command tree: a new command and option complete with no list edited", () => {
  const p = new Command("thoc-node").option("--addr <a>", "where");
  const frob = p.command("frob").description("frobnicate things");
  frob.command("twiddle").addOption(new Option("--mode <m>", "how").choices(["fast", "slow"])).option("--zap <n>", "zap count");
  withFile(bashScript(p), (f) => {
    assert.deepEqual(bashComplete(f, ["thoc-node", "fr"]), ["frob"]);
    assert.deepEqual(bashComplete(f, ["thoc-node", "frob", "tw"]), ["twiddle"]);
    assert.deepEqual(bashComplete(f, ["thoc-node", "frob", "twiddle", "--"]).sort(), ["--addr", "--help", "--mode", "--zap"]);
    assert.deepEqual(bashComplete(f, ["thoc-node", "frob", "twiddle", "--mode", ""]), ["fast", "slow"]);
  });
  const z = zshScript(p);
  assert.match(z, /'frob:frobnicate things'/);
  assert.match(z, /'--zap:zap count'/);
});

const zsh = spawnSync("zsh", ["--version"]).status === 0;

test("zsh: the installed CLI's script parses and its function completes like bash's", { skip: zsh ? false : "zsh is not installed (packaging/apt-packages-test.txt lists it)" }, () => {
  withFile(script("zsh"), (f) => {
    const n = spawnSync("zsh", ["-n", f], { encoding: "utf8" });
    assert.equal(n.status, 0, `zsh -n: ${n.stderr}`);
    // _describe/compadd/_files stubbed: they print the candidates the function hands them.
    const run = (words: string[]) => {
      const r = spawnSync("zsh", ["-f", "-c", `source "$1"; shift
        _describe() { print -rl -- "\${(@P)4}"; }; compadd() { print -rl -- "\${(@P)2}"; }; _files() { print -r -- '<files>'; }
        words=("$@"); CURRENT=$#words; PREFIX=$words[CURRENT]
        _thoc_node | while IFS= read -r l; do [[ $l == "$PREFIX"* || $l == '<files>' ]] && print -r -- "\${l%%:*}"; done; :`, "zsh", f, ...words], { encoding: "utf8" });
      assert.equal(r.status, 0, r.stderr);
      return r.stdout.split("\n").filter(Boolean);
    };
    assert.deepEqual(run(["thoc-node", "vm", "cr"]), ["create"]);
    assert.ok(run(["thoc-node", "vm", "create", "--"]).includes("--image"));
    assert.deepEqual(run(["thoc-node", "--addr", "10.0.0.5:7400", "vm", "li"]), ["list"]);
    assert.deepEqual(run(["thoc-node", "vm", "list", "-o", ""]), ["json", "table", "wide"]);
    assert.deepEqual(run(["thoc-node", "image", "import", "x", "--initrd", ""]), ["<files>"]);
  });
});

test("completion for another shell is bad input (exit 2) naming the shells there are", () => {
  const r = spawnSync(process.execPath, [CLI, "completion", "fish"], { encoding: "utf8" });
  assert.equal(r.status, 2);
  assert.equal(r.stdout, "");
  assert.match(r.stderr, /^thoc-node: completion: no script for shell "fish": use bash or zsh\n$/);
});
