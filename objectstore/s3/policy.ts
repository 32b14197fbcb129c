/**
 * Bucket policies: the subset of S3's policy language this store can
 * enforce, parsed and validated once (PutBucketPolicy refuses anything
 * outside it with MalformedPolicy, naming the element, rather than store a
 * rule it would silently ignore) and evaluated per request.
 *
 * Supported: Version 2012-10-17 / 2008-10-17; Statement (object or list);
 * Sid; Effect Allow/Deny; Principal "*", {"AWS": "*" | "<owner>" |
 * "arn:aws:iam::<owner>:root" | "arn:aws:iam::<owner>:user/<access key id>"
 * | [...]}; Action (string or list, * and ? wildcards expanded over
 * POLICY_ACTIONS); Resource "arn:aws:s3:::<this bucket>" or
 * "arn:aws:s3:::<this bucket>/<key pattern>" (* and ?); Condition with
 * IpAddress/NotIpAddress on aws:SourceIp, StringEquals/StringNotEquals/
 * StringLike/StringNotLike on s3:prefix, Bool on aws:SecureTransport.
 */
import { BlockList, isIP } from "node:net";
import { s3err } from "./errors.js";

/** Actions on objects (resource arn:aws:s3:::bucket/key), S3's IAM names; each is what access.ts OPS names for an operation. */
const OBJECT_ACTIONS = [
  "s3:GetObject", "s3:GetObjectVersion", "s3:PutObject", "s3:DeleteObject", "s3:DeleteObjectVersion",
  "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts",
  "s3:GetObjectTagging", "s3:GetObjectVersionTagging", "s3:PutObjectTagging", "s3:PutObjectVersionTagging",
  "s3:DeleteObjectTagging", "s3:DeleteObjectVersionTagging",
  "s3:GetObjectAcl", "s3:GetObjectVersionAcl", "s3:PutObjectAcl", "s3:PutObjectVersionAcl",
  "s3:GetObjectAttributes", "s3:GetObjectVersionAttributes",
] as const;
/** Actions on the bucket itself (resource arn:aws:s3:::bucket). */
const BUCKET_ACTION_NAMES = [
  "s3:ListBucket", "s3:ListBucketVersions", "s3:ListBucketMultipartUploads", "s3:GetBucketLocation",
  "s3:GetBucketTagging", "s3:PutBucketTagging", "s3:GetBucketVersioning", "s3:PutBucketVersioning",
  "s3:GetBucketCORS", "s3:PutBucketCORS", "s3:GetLifecycleConfiguration", "s3:PutLifecycleConfiguration",
  "s3:GetBucketAcl", "s3:PutBucketAcl", "s3:GetEncryptionConfiguration", "s3:PutEncryptionConfiguration",
] as const;
/**
 * The actions a policy can grant or deny: every operation a non-owner can be
 * let in to. The bucket's policy, Block Public Access and DeleteBucket stay
 * the owner's alone, so their actions are refused in a policy rather than
 * accepted and ignored.
 */
export const POLICY_ACTIONS = [...OBJECT_ACTIONS, ...BUCKET_ACTION_NAMES] as const;
export type PolicyAction = (typeof POLICY_ACTIONS)[number];
const BUCKET_ACTIONS: ReadonlySet<PolicyAction> = new Set(BUCKET_ACTION_NAMES);

/** S3 caps a bucket policy at 20 KB. */
export const MAX_POLICY_BYTES = 20 * 1024;

interface Principal { any: boolean; owners: Set<string>; keys: Set<string> }
type Condition =
  | { kind: "ip"; negate: boolean; list: BlockList }
  | { kind: "prefix"; negate: boolean; like: boolean; values: string[] }
  | { kind: "secure"; values: boolean[] };
interface Statement {
  effect: "Allow" | "Deny";
  principal: Principal;
  actions: Set<PolicyAction>;
  resources: RegExp[];
  conditions: Condition[];
  /** An Allow to everyone not narrowed to a set of source addresses (S3's "public"). */
  isPublic: boolean;
}

export interface Policy { statements: Statement[]; /** Some statement grants public access (Block Public Access's sense). */ isPublic: boolean }

/** Who asks for what: the facts a statement is matched against. */
export interface PolicyRequest {
  /** undefined for an anonymous request. */
  caller?: { owner: string; accessKeyId: string };
  action: PolicyAction;
  bucket: string;
  key?: string;
  /** The TCP peer, IPv4-mapped IPv6 already normalised to IPv4. */
  sourceIp: string;
  secure: boolean;
  /** s3:prefix: the prefix query parameter of a listing ("" when absent, as S3 does for ListBucket). */
  prefix?: string;
}

export type PolicyDecision = "allow" | "deny" | "none";

const bad = (msg: string) => s3err("MalformedPolicy", msg);

/** A glob (* any run, ? one character) as an anchored RegExp. */
export function globRegExp(glob: string, flags = ""): RegExp {
  const body = glob.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, "[\\s\\S]*").replace(/\?/g, "[\\s\\S]");
  return new RegExp(`^${body}$`, flags);
}

const strings = (v: unknown, what: string): string[] => {
  const a = Array.isArray(v) ? v : [v];
  if (a.length === 0 || a.some((x) => typeof x !== "string" || x === "")) throw bad(`${what} must be a non-empty string or a list of them`);
  return a as string[];
};

function parsePrincipal(v: unknown): Principal {
  const p: Principal = { any: false, owners: new Set(), keys: new Set() };
  if (v === "*") { p.any = true; return p; }
  if (!v || typeof v !== "object" || Array.isArray(v)) throw bad("Invalid principal in policy: use \"*\" or {\"AWS\": ...}");
  for (const [k, val] of Object.entries(v as Record<string, unknown>)) {
    if (k !== "AWS") throw bad(`Invalid principal in policy: principal type ${k} is not supported by this store (only AWS)`);
    for (const s of strings(val, "Principal AWS")) {
      let m: RegExpExecArray | null;
      if (s === "*") p.any = true;
      else if ((m = /^arn:aws:iam::([^:/]+):root$/.exec(s))) p.owners.add(m[1]!);
      else if ((m = /^arn:aws:iam::([^:/]+):user\/([^/]+)$/.exec(s))) p.keys.add(`${m[1]}/${m[2]}`);
      else if (/^[A-Za-z0-9._@+=,-]+$/.test(s)) p.owners.add(s);
      else throw bad(`Invalid principal in policy: ${s}`);
    }
  }
  return p;
}

function parseActions(v: unknown): { actions: Set<PolicyAction>; patterns: PolicyAction[][] } {
  const actions = new Set<PolicyAction>(), patterns: PolicyAction[][] = [];
  for (const a of strings(v, "Action")) {
    if (!/^s3:[A-Za-z*?]+$/i.test(a) && a !== "*") throw bad(`Policy has invalid action: ${a}`);
    const re = globRegExp(a, "i");
    const hit = POLICY_ACTIONS.filter((x) => re.test(x));
    if (hit.length === 0) throw bad(`Unsupported Action: ${a} (this store enforces ${POLICY_ACTIONS.join(", ")})`);
    hit.forEach((x) => actions.add(x));
    patterns.push(hit);
  }
  return { actions, patterns };
}

function parseResources(v: unknown, bucket: string): { res: RegExp[]; bucketLevel: boolean; objectLevel: boolean } {
  const res: RegExp[] = [];
  let bucketLevel = false, objectLevel = false;
  const base = `arn:aws:s3:::${bucket}`;
  for (const r of strings(v, "Resource")) {
    if (r === base) bucketLevel = true;
    else if (r.startsWith(base + "/")) objectLevel = true;
    else throw bad(`Policy has invalid resource: ${r} (a resource is arn:aws:s3:::${bucket} or arn:aws:s3:::${bucket}/<key pattern>)`);
    res.push(globRegExp(r));
  }
  return { res, bucketLevel, objectLevel };
}

function parseCidr(s: string, list: BlockList): void {
  const [addr, len, ...rest] = s.split("/");
  const fam = isIP(addr ?? "");
  const max = fam === 4 ? 32 : 128;
  const n = len === undefined ? max : /^\d{1,3}$/.test(len) ? Number(len) : NaN;
  if (!fam || rest.length || !(n >= 0 && n <= max)) throw bad(`Invalid IP address or CIDR in aws:SourceIp: ${s}`);
  list.addSubnet(addr!, n, fam === 4 ? "ipv4" : "ipv6");
}

function parseConditions(v: unknown): Condition[] {
  if (v === undefined) return [];
  if (!v || typeof v !== "object" || Array.isArray(v)) throw bad("Condition must be an object of operators");
  const out: Condition[] = [];
  for (const [op, body] of Object.entries(v as Record<string, unknown>)) {
    if (!body || typeof body !== "object" || Array.isArray(body)) throw bad(`Condition ${op} must be an object of condition keys`);
    for (const [rawKey, val] of Object.entries(body as Record<string, unknown>)) {
      const key = rawKey.toLowerCase();
      const invalidKey = () => bad(`Policy has an invalid condition key: ${rawKey} with ${op} (supported: aws:SourceIp with IpAddress/NotIpAddress, s3:prefix with StringEquals/StringNotEquals/StringLike/StringNotLike, aws:SecureTransport with Bool)`);
      if (op === "IpAddress" || op === "NotIpAddress") {
        if (key !== "aws:sourceip") throw invalidKey();
        const list = new BlockList();
        for (const s of strings(val, "aws:SourceIp")) parseCidr(s, list);
        out.push({ kind: "ip", negate: op === "NotIpAddress", list });
      } else if (["StringEquals", "StringNotEquals", "StringLike", "StringNotLike"].includes(op)) {
        if (key !== "s3:prefix") throw invalidKey();
        const vals = (Array.isArray(val) ? val : [val]) as unknown[];
        if (vals.length === 0 || vals.some((x) => typeof x !== "string")) throw bad(`s3:prefix values must be strings`);
        out.push({ kind: "prefix", negate: op.includes("Not"), like: op.endsWith("Like"), values: vals as string[] });
      } else if (op === "Bool") {
        if (key !== "aws:securetransport") throw invalidKey();
        const vals = (Array.isArray(val) ? val : [val]) as unknown[];
        const bools = vals.map((x) => (x === true || x === "true" ? true : x === false || x === "false" ? false : undefined));
        if (bools.length === 0 || bools.includes(undefined)) throw bad("aws:SecureTransport takes true or false");
        out.push({ kind: "secure", values: bools as boolean[] });
      } else {
        throw bad(`Policy has an invalid condition operator: ${op} (supported: IpAddress, NotIpAddress, StringEquals, StringNotEquals, StringLike, StringNotLike, Bool)`);
      }
    }
  }
  return out;
}

const STATEMENT_FIELDS = new Set(["Sid", "Effect", "Principal", "Action", "Resource", "Condition"]);

/**
 * Parses and validates a policy document for `bucket`; MalformedPolicy with
 * the reason for anything this store could not enforce exactly.
 */
export function parsePolicy(text: string, bucket: string): Policy {
  if (Buffer.byteLength(text) > MAX_POLICY_BYTES) throw bad(`Policies must be less than ${MAX_POLICY_BYTES / 1024} KB`);
  let doc: unknown;
  try { doc = JSON.parse(text); } catch { throw bad("Policies must be valid JSON and the first byte must be '{'"); }
  if (!doc || typeof doc !== "object" || Array.isArray(doc)) throw bad("Policies must be valid JSON and the first byte must be '{'");
  const d = doc as Record<string, unknown>;
  for (const k of Object.keys(d)) if (!["Version", "Id", "Statement"].includes(k)) throw bad(`Policy has invalid element: ${k}`);
  if (d.Version !== undefined && d.Version !== "2012-10-17" && d.Version !== "2008-10-17") throw bad(`The policy language version ${String(d.Version)} is not supported (2012-10-17 or 2008-10-17)`);
  if (d.Id !== undefined && typeof d.Id !== "string") throw bad("Id must be a string");
  if (d.Statement === undefined) throw bad("Missing required field Statement");
  const raw = Array.isArray(d.Statement) ? d.Statement : [d.Statement];
  if (raw.length === 0) throw bad("Could not parse the policy: Statement is empty!");
  const sids = new Set<string>();
  const statements = raw.map((s: unknown): Statement => {
    if (!s || typeof s !== "object" || Array.isArray(s)) throw bad("Each Statement must be an object");
    const st = s as Record<string, unknown>;
    for (const k of Object.keys(st)) {
      if (!STATEMENT_FIELDS.has(k)) throw bad(`${k === "NotPrincipal" || k === "NotAction" || k === "NotResource" ? `${k} is not supported by this store` : `Policy has invalid element: ${k}`}`);
    }
    if (st.Sid !== undefined) {
      if (typeof st.Sid !== "string") throw bad("Sid must be a string");
      if (sids.has(st.Sid)) throw bad("Statement IDs (SID) in a single policy must be unique");
      sids.add(st.Sid);
    }
    if (st.Effect !== "Allow" && st.Effect !== "Deny") throw bad(`Invalid effect: ${String(st.Effect)}`);
    if (st.Principal === undefined) throw bad("Missing required field Principal");
    if (st.Action === undefined) throw bad("Missing required field Action");
    if (st.Resource === undefined) throw bad("Missing required field Resource");
    const principal = parsePrincipal(st.Principal);
    const { actions, patterns } = parseActions(st.Action);
    const { res, bucketLevel, objectLevel } = parseResources(st.Resource, bucket);
    for (const p of patterns) {
      if (!p.some((a) => (BUCKET_ACTIONS.has(a) ? bucketLevel : objectLevel))) throw bad("Action does not apply to any resource(s) in statement");
    }
    const conditions = parseConditions(st.Condition);
    const isPublic = st.Effect === "Allow" && principal.any && !conditions.some((c) => c.kind === "ip" && !c.negate);
    return { effect: st.Effect, principal, actions, resources: res, conditions, isPublic };
  });
  return { statements, isPublic: statements.some((s) => s.isPublic) };
}

function principalMatches(p: Principal, caller: PolicyRequest["caller"]): boolean {
  if (p.any) return true;
  if (!caller) return false;
  return p.owners.has(caller.owner) || p.keys.has(`${caller.owner}/${caller.accessKeyId}`);
}

function conditionHolds(c: Condition, r: PolicyRequest): boolean {
  switch (c.kind) {
    case "ip": {
      const fam = isIP(r.sourceIp);
      const inside = fam !== 0 && c.list.check(r.sourceIp, fam === 4 ? "ipv4" : "ipv6");
      return c.negate ? !inside : inside;
    }
    case "prefix": {
      // As in IAM: a key the request does not carry fails a positive operator and satisfies a negated one.
      if (r.prefix === undefined) return c.negate;
      const hit = c.values.some((v) => (c.like ? globRegExp(v).test(r.prefix!) : v === r.prefix));
      return c.negate ? !hit : hit;
    }
    case "secure": return c.values.includes(r.secure);
  }
}

function statementMatches(s: Statement, r: PolicyRequest): boolean {
  if (!s.actions.has(r.action) || !principalMatches(s.principal, r.caller)) return false;
  const arn = `arn:aws:s3:::${r.bucket}${r.key !== undefined ? "/" + r.key : ""}`;
  if (!s.resources.some((re) => re.test(arn))) return false;
  return s.conditions.every((c) => conditionHolds(c, r));
}

/**
 * "deny" when any matching statement denies (an explicit Deny wins), else
 * "allow" when one allows, else "none". With `ownerOnly` (Block Public
 * Access's RestrictPublicBuckets on a public policy) Allows count only for
 * the bucket's owner.
 */
export function evaluatePolicy(p: Policy, r: PolicyRequest, opts: { bucketOwner: string; ownerOnly?: boolean }): PolicyDecision {
  let allowed = false;
  for (const s of p.statements) {
    if (!statementMatches(s, r)) continue;
    if (s.effect === "Deny") return "deny";
    if (!opts.ownerOnly || r.caller?.owner === opts.bucketOwner) allowed = true;
  }
  return allowed ? "allow" : "none";
}

/** A TCP peer address as policies compare it: "::ffff:10.0.0.1" is 10.0.0.1. */
export const normaliseIp = (a: string | undefined): string => (a ?? "").replace(/^::ffff:(\d+\.\d+\.\d+\.\d+)$/i, "$1");

const cache = new Map<string, Policy>();
/** parsePolicy for stored (already validated) text, memoised: a policy is parsed once, not per request. */
export function storedPolicy(text: string, bucket: string): Policy {
  const id = bucket + "\n" + text;
  let p = cache.get(id);
  if (!p) {
    p = parsePolicy(text, bucket);
    if (cache.size >= 256) cache.delete(cache.keys().next().value!);
    cache.set(id, p);
  }
  return p;
}
