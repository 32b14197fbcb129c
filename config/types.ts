/**
 * Option kinds. Each option knows its default, its one-line reason, how to
 * parse a string (env, flag) or a YAML value, and how to say what it expected.
 */
export type Preset = "lan" | "local" | "test";

export interface Opt<V> {
  readonly kind: string;
  /** Default for the `lan` preset (production). May depend on other options via `derive` in resolve.ts. */
  readonly default: V;
  /** Override for the `local` preset (--dev, agents on one machine: fast timers that hold at load 10 on 2 cores). */
  readonly local?: V;
  /** Override for the `test` preset (the test suite's agents: faster failure detection); without it, `local`'s. */
  readonly test?: V;
  /** One line: why this default. */
  readonly doc: string;
  /** What a valid value looks like, used in error messages. */
  readonly expected: string;
  /** Secrets are never printed: dumps show "<redacted>". */
  readonly secret?: boolean;
  /** Overrides the derived THOC_* variable name. */
  readonly env?: string;
  /** The commander flag that sets it, e.g. "--grpc-port". */
  readonly flag?: string;
  parse(raw: unknown): V | undefined;
}

export type OptTree = { readonly [k: string]: Opt<unknown> | OptTree };

/** The value type of an option tree: Opt<V> becomes V, sections recurse. */
export type Resolve<T> = T extends Opt<infer V> ? V : { readonly [K in keyof T]: Resolve<T[K]> };

export function isOpt(x: unknown): x is Opt<unknown> {
  return typeof x === "object" && x !== null && "parse" in x && "doc" in x;
}

type Extra<V> = { local?: V; test?: V; secret?: boolean; env?: string; flag?: string };

/** An option's default under a preset: `test` falls back to `local`, which falls back to the `lan` default. */
export function presetDefault<V>(o: Opt<V>, preset: Preset): V {
  if (preset === "test" && o.test !== undefined) return o.test;
  return preset !== "lan" && o.local !== undefined ? o.local : o.default;
}

export function str(def: string, doc: string, extra: Extra<string> & { pattern?: RegExp; check?: (s: string) => boolean; expected?: string } = {}): Opt<string> {
  return {
    kind: "string", default: def, doc, expected: extra.expected ?? "a string", ...extra,
    parse(raw) {
      if (typeof raw === "number") raw = String(raw);
      if (typeof raw !== "string") return undefined;
      if (extra.pattern && !extra.pattern.test(raw)) return undefined;
      if (extra.check && !extra.check(raw)) return undefined;
      return raw;
    },
  };
}

export function int(def: number, doc: string, extra: Extra<number> & { min?: number; max?: number } = {}): Opt<number> {
  const min = extra.min ?? 0, max = extra.max ?? Number.MAX_SAFE_INTEGER;
  return {
    kind: "int", default: def, doc, expected: `an integer from ${min} to ${max}`, ...extra,
    parse(raw) {
      const n = typeof raw === "number" ? raw : typeof raw === "string" && /^-?\d+$/.test(raw.trim()) ? Number(raw) : NaN;
      return Number.isInteger(n) && n >= min && n <= max ? n : undefined;
    },
  };
}

export function num(def: number, doc: string, extra: Extra<number> & { min?: number; max?: number } = {}): Opt<number> {
  const min = extra.min ?? 0, max = extra.max ?? Number.MAX_VALUE;
  return {
    kind: "number", default: def, doc, expected: `a number from ${min} to ${max}`, ...extra,
    parse(raw) {
      const n = typeof raw === "number" ? raw : typeof raw === "string" && raw.trim() !== "" ? Number(raw) : NaN;
      return Number.isFinite(n) && n >= min && n <= max ? n : undefined;
    },
  };
}

export const port = (def: number, doc: string, extra: Extra<number> = {}) => int(def, doc, { min: 0, max: 65535, ...extra });

export function bool(def: boolean, doc: string, extra: Extra<boolean> = {}): Opt<boolean> {
  return {
    kind: "bool", default: def, doc, expected: "true or false", ...extra,
    parse(raw) {
      if (typeof raw === "boolean") return raw;
      if (typeof raw === "string") {
        const s = raw.trim().toLowerCase();
        if (["true", "1", "yes", "on"].includes(s)) return true;
        if (["false", "0", "no", "off"].includes(s)) return false;
      }
      return undefined;
    },
  };
}

export function oneOf<T extends string>(values: readonly T[], def: T, doc: string, extra: Extra<T> = {}): Opt<T> {
  return {
    kind: "enum", default: def, doc, expected: `one of ${values.join(", ")}`, ...extra,
    parse(raw) {
      return typeof raw === "string" && (values as readonly string[]).includes(raw) ? (raw as T) : undefined;
    },
  };
}

/** A list: YAML sequence, or a comma-separated string from env/flags. */
export function list(def: string[], doc: string, extra: Extra<string[]> & { item?: RegExp | ((s: string) => boolean); expected?: string } = {}): Opt<string[]> {
  return {
    kind: "list", default: def, doc, expected: extra.expected ?? "a list of strings", ...extra,
    parse(raw) {
      const items = Array.isArray(raw) ? raw : typeof raw === "string" ? raw.split(",").map((s) => s.trim()).filter(Boolean) : undefined;
      if (!items) return undefined;
      const ok = (i: string) => !extra.item || (typeof extra.item === "function" ? extra.item(i) : extra.item.test(i));
      if (!items.every((i) => typeof i === "string" && ok(i))) return undefined;
      return items as string[];
    },
  };
}

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** Milliseconds. Accepts 250ms, 1.5s, 2m, 1h or a bare number of milliseconds. */
export function duration(defMs: number, doc: string, extra: Extra<number> & { min?: number } = {}): Opt<number> {
  return {
    kind: "duration", default: defMs, doc, expected: "a duration like 500ms, 2s or 5m", ...extra,
    parse(raw) {
      let ms: number | undefined;
      if (typeof raw === "number") ms = raw;
      else if (typeof raw === "string") {
        const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/.exec(raw);
        if (m) ms = Number(m[1]) * UNITS[m[2] ?? "ms"]!;
      }
      if (ms === undefined || !Number.isFinite(ms) || ms < (extra.min ?? 0)) return undefined;
      return Math.round(ms);
    },
  };
}

export function formatDuration(ms: number): string {
  if (ms % 3_600_000 === 0 && ms >= 3_600_000) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0 && ms >= 60_000) return `${ms / 60_000}m`;
  if (ms % 1000 === 0 && ms >= 1000) return `${ms / 1000}s`;
  return `${ms}ms`;
}
