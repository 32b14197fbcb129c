/**
 * The voter set of the scheduler election: the only replicated state there is
 * (SPEC 4: no log beyond the voter set), with the checks every message that
 * carries one, or a term, must pass before it may touch persistent state.
 */
import { ThocError } from "../errors/index.js";

export interface VoterConfig {
  /** Raised by every change, and by the no-op re-stamp a new leader commits first. */
  version: number;
  /** The term in which this config was proposed. */
  term: number;
  /** Node ids, sorted; empty means "no config yet" (a node that joined later). */
  voters: string[];
}

/** What a node that never learned a config has: it is up to date with nothing. */
export const NO_CONFIG: VoterConfig = Object.freeze({ version: 0, term: 0, voters: [] as string[] }) as VoterConfig;

/**
 * Terms further ahead than this are a corrupted or hostile message, not a
 * real cluster: accepting one would pin every node at a term it can never
 * leave (terms only grow), so it is refused instead.
 */
export const MAX_TERM_JUMP = 1e9;

export function quorum(voters: number): number { return Math.floor(voters / 2) + 1; }

/**
 * Raft's "at least as up to date" log check applied to the only entry there
 * is: the config proposed in the later term wins, then the higher version.
 */
export function compareConfig(a: Pick<VoterConfig, "term" | "version">, b: Pick<VoterConfig, "term" | "version">): number {
  return a.term !== b.term ? a.term - b.term : a.version - b.version;
}

export function sameConfig(a: VoterConfig, b: VoterConfig): boolean {
  return a.version === b.version && a.term === b.term && a.voters.length === b.voters.length && a.voters.every((v, i) => v === b.voters[i]);
}

export function copyConfig(c: VoterConfig): VoterConfig {
  return { version: c.version, term: c.term, voters: [...c.voters] };
}

export function describeConfig(c: VoterConfig): string {
  return c.voters.length === 0 ? "no voter config" : `version ${c.version} (term ${c.term}): ${c.voters.join(", ")}`;
}

/** Voters sorted and the symmetric difference of two sets (for checkers and messages). */
export function voterDiff(a: readonly string[], b: readonly string[]): string[] {
  const sa = new Set(a), sb = new Set(b);
  return [...a.filter((x) => !sb.has(x)), ...b.filter((x) => !sa.has(x))].sort();
}

export function checkCount(n: unknown, what: string): number {
  if (typeof n !== "number" || !Number.isSafeInteger(n) || n < 0) {
    throw new ThocError("invalid_argument", `${what} must be a non-negative safe integer, got ${String(n)}`, { field: what });
  }
  return n;
}

/** A term from a peer: an integer, not negative, and not absurdly far ahead of ours. */
export function checkTerm(t: unknown, current: number, what: string): number {
  const term = checkCount(t, what);
  if (term > current + MAX_TERM_JUMP) {
    throw new ThocError("invalid_argument", `${what} ${term} is more than ${MAX_TERM_JUMP} ahead of this node's term ${current}: refusing a corrupted or forged message`, { field: what, term, current });
  }
  return term;
}

export function checkId(id: unknown, what: string): string {
  if (typeof id !== "string" || id.trim() === "" || id !== id.trim()) {
    throw new ThocError("invalid_argument", `${what} must be a non-empty node id without surrounding spaces, got ${JSON.stringify(id)}`, { field: what });
  }
  return id;
}

/** A config from a peer or the store, returned as a sorted copy the caller may keep. */
export function checkConfig(c: unknown, what: string, maxTerm?: number): VoterConfig {
  if (!c || typeof c !== "object") throw new ThocError("invalid_argument", `${what} is missing`, { field: what });
  const r = c as Partial<VoterConfig>;
  const version = checkCount(r.version, `${what}.version`);
  const term = checkCount(r.term, `${what}.term`);
  if (maxTerm !== undefined && term > maxTerm) {
    throw new ThocError("invalid_argument", `${what}.term ${term} is after the message's own term ${maxTerm}: a config cannot come from a future term`, { field: what });
  }
  if (!Array.isArray(r.voters)) throw new ThocError("invalid_argument", `${what}.voters must be a list of node ids`, { field: what });
  const voters = r.voters.map((v, i) => checkId(v, `${what}.voters[${i}]`)).sort();
  for (let i = 1; i < voters.length; i++) {
    if (voters[i] === voters[i - 1]) throw new ThocError("invalid_argument", `${what}.voters lists ${voters[i]} twice`, { field: what });
  }
  if ((version === 0) !== (voters.length === 0)) {
    throw new ThocError("invalid_argument", `${what}: version 0 means "no config" and must have no voters, any other version needs at least one`, { field: what });
  }
  return { version, term, voters };
}
