/**
 * CLI output rules: --json prints exactly one JSON document on stdout; errors
 * are one line on stderr saying what was wrong and what to do, with a non-zero
 * exit code (2 for bad input or config, 1 otherwise).
 */
import { Option, type Command } from "commander";
import { ThocError } from "../errors/index.js";

/** What a listing prints: json (one document), table, or wide (the table with more columns). */
export const OUTPUT_FORMATS = ["json", "table", "wide"] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];

/**
 * -o/--output json|table|wide and --json (its old spelling, kept so scripts
 * keep working) on a listing command. A bad value is commander's usage error
 * naming the allowed values; main.ts makes it exit 2 like any bad input.
 */
export function outputOptions(cmd: Command, json = "print one JSON document"): Command {
  return cmd
    .addOption(new Option("-o, --output <format>", "json, table or wide (wide: the table with more columns)").choices(OUTPUT_FORMATS))
    .addOption(new Option("--json", `same as --output json: ${json}`).conflicts("output"));
}

/** The format a command was asked for (table unless said otherwise). */
export function outputFormat(o: { output?: string; json?: boolean }): OutputFormat {
  return o.json ? "json" : (o.output as OutputFormat | undefined) ?? "table";
}

/** JSON.stringify that prints bigints as numbers when safe, strings otherwise. */
export function toJson(v: unknown): string {
  return JSON.stringify(v, (_k, x) => (typeof x === "bigint" ? (x <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(x) : x.toString()) : x), 2);
}

export function printJson(v: unknown): void {
  process.stdout.write(toJson(v) + "\n");
}

/** A plain text table with aligned columns. */
export function table(rows: (string | number)[][]): string {
  const widths: number[] = [];
  for (const r of rows) r.forEach((c, i) => { widths[i] = Math.max(widths[i] ?? 0, String(c).length); });
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? String(c) : String(c).padEnd(widths[i]!))).join("  ")).join("\n");
}

export function fail(err: unknown, addr?: string): never {
  const e = ThocError.from(err);
  let msg = firstLine(e.message);
  const local = addr?.startsWith("/") ?? false;
  if (e.code === "unavailable" && local && /EACCES/.test(msg)) {
    msg = `cannot open the local socket ${addr}: permission denied (run as root or a member of group thoc, or use --addr with an operator certificate)`;
  } else if (e.code === "unavailable" && addr && /ECONNREFUSED|ENOENT|No connection established|connect/i.test(msg)) {
    msg = `cannot reach the agent at ${addr}: is it running? (set --addr HOST:PORT or THOC_ADDR${local ? ", or --socket PATH" : ""})`;
  } else if (e.code === "unauthenticated") {
    msg = `not authenticated by the agent at ${addr ?? "?"}: ${msg}`;
  } else if (e.code === "permission_denied") {
    msg = `${msg}${local ? "" : " (an admin issues certificates with a role: thoc-node cert issue NAME --role ROLE)"}`;
  }
  process.stderr.write(`thoc-node: ${msg}\n`);
  process.exit(e.code === "invalid_argument" ? 2 : 1);
}

const firstLine = (s: string) => s.split("\n")[0]!;

export function bytes(n: number | bigint): string {
  let v = Number(n);
  for (const u of ["B", "KiB", "MiB", "GiB", "TiB"]) {
    if (v < 1024 || u === "TiB") return `${u === "B" ? v : v.toFixed(1)} ${u}`;
    v /= 1024;
  }
  return `${v}`;
}
