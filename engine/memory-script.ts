/**
 * The tiny shell MemoryEngine runs as a container's main process and as an
 * exec: enough of sh for tests to script behaviour (exit codes, output on
 * both streams, env, stdin, terminal size) without a real runtime.
 *
 *   echo ARGS [>&2]    a line on stdout (stderr with >&2); $VAR is expanded
 *   exit N             ends with N
 *   sleep N|inf        waits (inf: until killed)
 *   cat                copies stdin to stdout until EOF
 *   env                prints KEY=VALUE lines
 *   stty size          prints "ROWS COLS" of the exec's terminal
 *   true / false       status 0 / 1
 *
 * Statements are separated by ";" or newlines; the script's status is the
 * last statement's (as sh). Anything else: "sh: X: not found", status 127.
 */
import type { Readable } from "node:stream";

export interface ScriptIo {
  env: Record<string, string>;
  out(stream: "stdout" | "stderr", data: Buffer): void;
  stdin?: Readable;
  /** Aborted when the process is killed. */
  signal: AbortSignal;
  size(): { rows: number; cols: number };
  /** Waits ms (MemoryEngine's clock); rejects when the signal aborts. */
  sleep(ms: number): Promise<void>;
}

/** The script of an argv: `sh -c SCRIPT` runs SCRIPT, any other argv is one statement. */
export function scriptOf(argv: string[]): string {
  if ((argv[0] === "sh" || argv[0] === "/bin/sh") && argv[1] === "-c") return argv[2] ?? "";
  return argv.map((a) => (/[\s;'"]/.test(a) ? `'${a.replace(/'/g, "")}'` : a)).join(" ");
}

/** Splits a statement into words: whitespace separates, '...' and "..." quote. */
function words(stmt: string): string[] {
  const out: string[] = [];
  const re = /'([^']*)'|"([^"]*)"|(\S+)/g;
  for (let m = re.exec(stmt); m; m = re.exec(stmt)) out.push(m[1] ?? m[2] ?? m[3]!);
  return out;
}

const expand = (s: string, env: Record<string, string>, status: number) =>
  s.replace(/\$\?|\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?/g, (m, k: string | undefined) => (m === "$?" ? String(status) : env[k!] ?? ""));

class Exit { constructor(readonly code: number) {} }

/** Runs a script; resolves with its exit status (143 when killed). */
export async function runScript(script: string, io: ScriptIo): Promise<number> {
  let status = 0;
  try {
    for (const stmt of script.split(/[;\n]/).map((s) => s.trim()).filter(Boolean)) {
      if (io.signal.aborted) return 143;
      status = await statement(stmt, io, status);
    }
    return status;
  } catch (err) {
    if (err instanceof Exit) return err.code;
    if (io.signal.aborted) return 143;
    throw err;
  }
}

async function statement(stmt: string, io: ScriptIo, status: number): Promise<number> {
  const w = words(stmt).map((x) => expand(x, io.env, status));
  const [cmd, ...args] = w;
  switch (cmd) {
    case "echo": {
      const toErr = args.at(-1) === ">&2";
      const text = (toErr ? args.slice(0, -1) : args).join(" ");
      io.out(toErr ? "stderr" : "stdout", Buffer.from(`${text}\n`));
      return 0;
    }
    case "exit": throw new Exit(Number(args[0] ?? status) & 255);
    case "true": return 0;
    case "false": return 1;
    case "sleep": {
      if (args[0] === "inf" || args[0] === "infinity") await new Promise((_, reject) => io.signal.addEventListener("abort", () => reject(new Exit(143)), { once: true }));
      else await io.sleep(Number(args[0] ?? 0) * 1000);
      return 0;
    }
    case "env":
      io.out("stdout", Buffer.from(Object.entries(io.env).map(([k, v]) => `${k}=${v}\n`).join("")));
      return 0;
    case "stty": {
      const { rows, cols } = io.size();
      io.out("stdout", Buffer.from(`${rows} ${cols}\n`));
      return 0;
    }
    case "cat": {
      if (!io.stdin) return 0;
      for await (const chunk of io.stdin) {
        if (io.signal.aborted) throw new Exit(143);
        io.out("stdout", Buffer.from(chunk as Buffer));
      }
      return 0;
    }
    default:
      io.out("stderr", Buffer.from(`sh: ${cmd}: not found\n`));
      return 127;
  }
}
