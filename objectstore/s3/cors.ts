/**
 * A bucket's CORS rules as S3 applies them: the CORSConfiguration document
 * (parsed and validated as PutBucketCors does), which rule a request matches
 * (the first one whose origin, method and requested headers all match), and
 * the Access-Control-* headers that rule answers with. Pure functions: the
 * handlers (ops-cors.ts) and the pipeline hook call them.
 *
 * What S3 does, as recorded against it (LocalStack's AWS-validated snapshots,
 * ceph s3-tests): an AllowedOrigin or AllowedHeader has at most one `*`, which
 * matches any run of characters, the empty one included, and the pattern is
 * anchored at both ends; origins compare case-sensitively (a browser sends
 * them lower-case), header names case-insensitively and come back lower-case
 * in the order requested; a rule that lists `*` among its origins answers
 * `Access-Control-Allow-Origin: *` without Allow-Credentials, any other rule
 * echoes the Origin with `Access-Control-Allow-Credentials: true`.
 */
import type { CorsRule } from "../blob/index.js";
import { s3err } from "./errors.js";
import { list, parseXml } from "./xml.js";

export const CORS_METHODS = ["GET", "PUT", "POST", "DELETE", "HEAD"];
export const MAX_CORS_RULES = 100;
/** S3 caps the document at 64 KB. */
export const MAX_CORS_XML = 64 * 1024;
export const CORS_VARY = "Origin, Access-Control-Request-Headers, Access-Control-Request-Method";

/** `*` matches any run of characters (the empty one too); everything else is literal. No regex: patterns come from clients. */
export function wildcardMatch(pattern: string, value: string): boolean {
  const parts = pattern.split("*");
  if (parts.length === 1) return pattern === value;
  const first = parts[0]!, last = parts[parts.length - 1]!;
  if (value.length < first.length + last.length || !value.startsWith(first) || !value.endsWith(last)) return false;
  // Middle pieces (only when a stored pattern has several `*`; validation allows one) are found left to right.
  let at = first.length;
  const end = value.length - last.length;
  for (const piece of parts.slice(1, -1)) {
    const i = value.indexOf(piece, at);
    if (i < 0 || i + piece.length > end) return false;
    at = i + piece.length;
  }
  return true;
}

/** What a request asks of the rules: its Origin, the method (Access-Control-Request-Method or its own) and the requested headers. */
export interface CorsRequest {
  origin: string;
  method: string;
  /** Access-Control-Request-Headers, lower-case, in the order sent. */
  headers: string[];
}

/** Access-Control-Request-Headers as a list: comma-separated, trimmed, lower-case, empty items dropped. */
export function requestedHeaders(v: string | string[] | undefined): string[] {
  const s = Array.isArray(v) ? v.join(",") : v ?? "";
  return s.split(",").map((x) => x.trim().toLowerCase()).filter(Boolean);
}

function ruleMatches(rule: CorsRule, r: CorsRequest): boolean {
  if (!rule.allowedMethods.includes(r.method)) return false;
  if (!rule.allowedOrigins.some((o) => wildcardMatch(o, r.origin))) return false;
  const allowed = rule.allowedHeaders.map((h) => h.toLowerCase());
  return r.headers.every((h) => allowed.some((a) => wildcardMatch(a, h)));
}

/** The first rule that allows the request, as S3 evaluates them. */
export function matchRule(rules: readonly CorsRule[], r: CorsRequest): CorsRule | undefined {
  return rules.find((rule) => ruleMatches(rule, r));
}

/** The Access-Control-* headers (and Vary) a matched rule answers with, on a preflight and on the actual request alike. */
export function corsHeaders(rule: CorsRule, r: CorsRequest): Record<string, string> {
  const wildcard = rule.allowedOrigins.includes("*");
  const h: Record<string, string> = { "Access-Control-Allow-Origin": wildcard ? "*" : r.origin };
  if (!wildcard) h["Access-Control-Allow-Credentials"] = "true";
  h["Access-Control-Allow-Methods"] = rule.allowedMethods.join(", ");
  if (r.headers.length) h["Access-Control-Allow-Headers"] = r.headers.join(", ");
  if (rule.exposeHeaders.length) h["Access-Control-Expose-Headers"] = rule.exposeHeaders.join(", ");
  if (rule.maxAgeSeconds !== undefined) h["Access-Control-Max-Age"] = String(rule.maxAgeSeconds);
  h.Vary = CORS_VARY;
  return h;
}

/** The text of each `name` child (repeated elements come as an array, a lone one as a value). */
function texts(node: unknown, name: string): string[] {
  return list(node, name).map((v) => {
    if (v === null || v === undefined) return "";
    if (typeof v === "object") return "#text" in v ? String((v as Record<string, unknown>)["#text"]) : "";
    return String(v);
  });
}

const oneWildcardAtMost = (s: string) => s.indexOf("*") === s.lastIndexOf("*");

/** Parses and validates a PutBucketCors body; throws the error S3 answers (MalformedXML for the schema, InvalidRequest for values). */
export function parseCorsXml(xml: string): CorsRule[] {
  const doc = parseXml(xml, "CORSConfiguration");
  const raw = list(doc, "CORSRule");
  if (raw.length === 0) throw s3err("MalformedXML");
  if (raw.length > MAX_CORS_RULES) throw s3err("MalformedXML", `A CORS configuration has at most ${MAX_CORS_RULES} rules.`);
  return raw.map((node) => {
    const ids = texts(node, "ID"), ages = texts(node, "MaxAgeSeconds");
    const rule: CorsRule = {
      allowedOrigins: texts(node, "AllowedOrigin").map((s) => s.trim()),
      allowedMethods: texts(node, "AllowedMethod").map((s) => s.trim()),
      allowedHeaders: texts(node, "AllowedHeader").map((s) => s.trim()),
      exposeHeaders: texts(node, "ExposeHeader").map((s) => s.trim()),
    };
    // Schema violations first (a required element missing, one given twice), then the values.
    if (rule.allowedOrigins.length === 0 || rule.allowedMethods.length === 0 || ids.length > 1 || ages.length > 1) throw s3err("MalformedXML");
    if (ids.length) {
      if (ids[0]!.length > 255) throw s3err("InvalidArgument", "The ID of a CORS rule cannot be longer than 255 characters.", { ArgumentName: "ID" });
      rule.id = ids[0]!;
    }
    if (ages.length) {
      const a = ages[0]!.trim();
      if (!/^-?\d+$/.test(a) || !Number.isSafeInteger(Number(a))) throw s3err("MalformedXML", "MaxAgeSeconds must be an integer.");
      rule.maxAgeSeconds = Number(a);
    }
    for (const m of rule.allowedMethods) {
      if (!CORS_METHODS.includes(m)) throw s3err("InvalidRequest", `Found unsupported HTTP method in CORS config. Unsupported method is ${m}`);
    }
    for (const o of rule.allowedOrigins) {
      if (!oneWildcardAtMost(o)) throw s3err("InvalidRequest", `AllowedOrigin "${o}" can not have more than one wildcard.`);
    }
    for (const h of rule.allowedHeaders) {
      if (!oneWildcardAtMost(h)) throw s3err("InvalidRequest", `AllowedHeader "${h}" can not have more than one wildcard.`);
    }
    for (const h of rule.exposeHeaders) {
      if (h.includes("*")) throw s3err("InvalidRequest", `ExposeHeader "${h}" contains wildcard. We currently do not support wildcard for ExposeHeader.`);
    }
    return rule;
  });
}

/** GetBucketCors's document, in S3's element order. */
export function corsXml(rules: readonly CorsRule[]) {
  return {
    CORSRule: rules.map((r) => ({
      ID: r.id, AllowedHeader: r.allowedHeaders, AllowedMethod: r.allowedMethods, AllowedOrigin: r.allowedOrigins,
      ExposeHeader: r.exposeHeaders, MaxAgeSeconds: r.maxAgeSeconds,
    })),
  };
}
