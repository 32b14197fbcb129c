/**
 * LifecycleConfiguration documents: parsed and checked as S3 checks them
 * (a rule the store would apply differently from S3 is refused, never
 * stored), and written back the way GetBucketLifecycleConfiguration answers.
 */
import type { LifecycleFilter, LifecycleRule } from "../blob/index.js";
import { s3err } from "./errors.js";
import { list, parseXml, text, type XmlNode } from "./xml.js";

const MAX_RULES = 1000;
const DAY = 86_400_000;

const bad = (msg: string) => s3err("InvalidArgument", msg);
const malformed = (msg: string) => s3err("MalformedXML", msg);

function positiveInt(node: unknown, name: string, where: string, min = 1): number | undefined {
  const raw = text(node, name)?.trim();
  if (raw === undefined) return undefined;
  if (!/^\d+$/.test(raw) || Number(raw) < min || !Number.isSafeInteger(Number(raw))) {
    throw bad(`'${name}' in ${where} must be an integer${min > 0 ? " greater than 0" : " of 0 or more"}.`);
  }
  return Number(raw);
}

function tagOf(node: unknown): [string, string] {
  const k = text(node, "Key"), v = text(node, "Value") ?? "";
  if (!k) throw malformed("A lifecycle <Tag> needs a <Key>.");
  return [k, v];
}

function filterOf(rule: unknown): LifecycleFilter {
  const r = rule as Record<string, unknown>;
  const legacy = text(rule, "Prefix");
  if (r.Filter === undefined) {
    if (legacy === undefined) throw malformed("A lifecycle rule needs a <Filter> (or, in the older form, a <Prefix>).");
    return legacy ? { prefix: legacy } : {};
  }
  if (legacy !== undefined) throw malformed("A lifecycle rule has either <Filter> or <Prefix>, not both.");
  const f = r.Filter;
  const parts = ["Prefix", "Tag", "And", "ObjectSizeGreaterThan", "ObjectSizeLessThan"].filter((n) => f && typeof f === "object" && (f as Record<string, unknown>)[n] !== undefined);
  if (parts.length > 1) throw malformed("A lifecycle <Filter> holds one condition; combine several with <And>.");
  const out: LifecycleFilter = {};
  const one = (node: unknown, and: boolean) => {
    const p = text(node, "Prefix");
    if (p) out.prefix = p;
    const tags = list(node, "Tag");
    if (tags.length > (and ? 50 : 1)) throw malformed(and ? "At most 50 tags in a lifecycle filter." : "Use <And> for more than one tag.");
    if (tags.length) {
      out.tags = {};
      for (const t of tags) {
        const [k, v] = tagOf(t);
        if (k in out.tags) throw bad(`Duplicate tag key '${k}' in a lifecycle filter.`);
        out.tags[k] = v;
      }
    }
    const gt = positiveInt(node, "ObjectSizeGreaterThan", "Filter", 0), lt = positiveInt(node, "ObjectSizeLessThan", "Filter");
    if (gt !== undefined) out.objectSizeGreaterThan = gt;
    if (lt !== undefined) out.objectSizeLessThan = lt;
    if (gt !== undefined && lt !== undefined && gt >= lt) throw bad("ObjectSizeGreaterThan must be less than ObjectSizeLessThan.");
  };
  const and = f && typeof f === "object" ? (f as Record<string, unknown>).And : undefined;
  one(and ?? f, and !== undefined);
  return out;
}

function dateOf(raw: string): number {
  const t = Date.parse(raw.trim());
  if (!Number.isFinite(t)) throw bad(`'${raw}' is not a date (ISO 8601, e.g. 2027-01-01T00:00:00Z).`);
  if (t % DAY !== 0) throw bad("'Date' must be at midnight GMT.");
  return t;
}

/** The rules of a PutBucketLifecycleConfiguration body. */
export function parseLifecycle(xml: string): LifecycleRule[] {
  const doc = parseXml(xml, "LifecycleConfiguration");
  const rules = list(doc, "Rule");
  if (rules.length === 0) throw malformed("A LifecycleConfiguration needs at least one <Rule>.");
  if (rules.length > MAX_RULES) throw malformed(`At most ${MAX_RULES} lifecycle rules.`);
  const ids = new Set<string>();
  return rules.map((node, i) => {
    const r = node as Record<string, unknown>;
    const id = text(node, "ID");
    if (id !== undefined) {
      if (id.length > 255) throw bad("'ID' is at most 255 characters.");
      if (ids.has(id)) throw bad(`Rule ID '${id}' is used twice: IDs must be unique.`);
      ids.add(id);
    }
    const status = text(node, "Status")?.trim();
    if (status !== "Enabled" && status !== "Disabled") throw malformed(`Rule ${id ?? i + 1}: <Status> is Enabled or Disabled.`);
    for (const unsupported of ["Transition", "NoncurrentVersionTransition"]) {
      if (r[unsupported] !== undefined) throw s3err("NotImplemented", `Rule ${id ?? i + 1}: ${unsupported} is not supported: this store has one storage class.`);
    }
    const rule: LifecycleRule = { enabled: status === "Enabled", filter: filterOf(node) };
    if (id !== undefined) rule.id = id;
    const exp = r.Expiration;
    if (exp !== undefined) {
      const days = positiveInt(exp, "Days", "Expiration"), date = text(exp, "Date"), marker = text(exp, "ExpiredObjectDeleteMarker")?.trim();
      const set = [days !== undefined, date !== undefined, marker !== undefined].filter(Boolean).length;
      if (set !== 1) throw malformed(`Rule ${id ?? i + 1}: <Expiration> holds exactly one of Days, Date or ExpiredObjectDeleteMarker.`);
      if (marker !== undefined && marker !== "true" && marker !== "false") throw malformed("ExpiredObjectDeleteMarker is true or false.");
      if (marker !== undefined && rule.filter.tags) throw bad("ExpiredObjectDeleteMarker cannot be combined with a tag filter.");
      rule.expiration = days !== undefined ? { days } : date !== undefined ? { date: dateOf(date) } : { expiredObjectDeleteMarker: marker === "true" };
    }
    const nce = r.NoncurrentVersionExpiration;
    if (nce !== undefined) {
      const nd = positiveInt(nce, "NoncurrentDays", "NoncurrentVersionExpiration");
      if (nd === undefined) throw malformed(`Rule ${id ?? i + 1}: NoncurrentVersionExpiration needs NoncurrentDays.`);
      const keep = positiveInt(nce, "NewerNoncurrentVersions", "NoncurrentVersionExpiration");
      if (keep !== undefined && keep > 100) throw bad("NewerNoncurrentVersions is at most 100.");
      rule.noncurrentVersionExpiration = { noncurrentDays: nd, ...(keep !== undefined ? { newerNoncurrentVersions: keep } : {}) };
    }
    const abort = r.AbortIncompleteMultipartUpload;
    if (abort !== undefined) {
      const d = positiveInt(abort, "DaysAfterInitiation", "AbortIncompleteMultipartUpload");
      if (d === undefined) throw malformed(`Rule ${id ?? i + 1}: AbortIncompleteMultipartUpload needs DaysAfterInitiation.`);
      if (rule.filter.tags) throw s3err("InvalidRequest", "AbortIncompleteMultipartUpload cannot be specified with Tags.");
      rule.abortIncompleteMultipartUpload = { daysAfterInitiation: d };
    }
    if (!rule.expiration && !rule.noncurrentVersionExpiration && !rule.abortIncompleteMultipartUpload) {
      throw malformed(`Rule ${id ?? i + 1} has no action: give it Expiration, NoncurrentVersionExpiration or AbortIncompleteMultipartUpload.`);
    }
    return rule;
  });
}

function filterXml(f: LifecycleFilter): XmlNode {
  const tags = Object.entries(f.tags ?? {}).map(([Key, Value]) => ({ Key, Value }));
  const n = (f.prefix ? 1 : 0) + tags.length + (f.objectSizeGreaterThan !== undefined ? 1 : 0) + (f.objectSizeLessThan !== undefined ? 1 : 0);
  const inner: XmlNode = {
    ...(f.prefix !== undefined ? { Prefix: f.prefix } : {}),
    ...(tags.length ? { Tag: tags } : {}),
    ...(f.objectSizeGreaterThan !== undefined ? { ObjectSizeGreaterThan: f.objectSizeGreaterThan } : {}),
    ...(f.objectSizeLessThan !== undefined ? { ObjectSizeLessThan: f.objectSizeLessThan } : {}),
  };
  if (n === 0) return { Prefix: "" };
  return n > 1 ? { And: inner } : inner;
}

/** The GetBucketLifecycleConfiguration answer's children. */
export function lifecycleXml(rules: readonly LifecycleRule[]): XmlNode {
  return {
    Rule: rules.map((r) => ({
      ...(r.id !== undefined ? { ID: r.id } : {}),
      Filter: filterXml(r.filter),
      Status: r.enabled ? "Enabled" : "Disabled",
      ...(r.expiration ? {
        Expiration: r.expiration.days !== undefined ? { Days: r.expiration.days }
          : r.expiration.date !== undefined ? { Date: new Date(r.expiration.date).toISOString() }
          : { ExpiredObjectDeleteMarker: String(r.expiration.expiredObjectDeleteMarker === true) },
      } : {}),
      ...(r.noncurrentVersionExpiration ? {
        NoncurrentVersionExpiration: {
          NoncurrentDays: r.noncurrentVersionExpiration.noncurrentDays,
          ...(r.noncurrentVersionExpiration.newerNoncurrentVersions !== undefined ? { NewerNoncurrentVersions: r.noncurrentVersionExpiration.newerNoncurrentVersions } : {}),
        },
      } : {}),
      ...(r.abortIncompleteMultipartUpload ? { AbortIncompleteMultipartUpload: { DaysAfterInitiation: r.abortIncompleteMultipartUpload.daysAfterInitiation } } : {}),
    })),
  };
}
