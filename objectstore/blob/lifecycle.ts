/**
 * Lifecycle rules as S3 applies them, without any I/O: which rule expires a
 * current object, aborts an upload, or removes a noncurrent version, and
 * when. The worker that acts on them (objectstore/replica/lifecycle.ts) and
 * the S3 layer that validates them (objectstore/s3/lifecycle-xml.ts) share
 * this one reading of a rule.
 */
import type { LifecycleFilter, LifecycleRule } from "./bucket-config.js";

const DAY = 86_400_000;

/**
 * S3 counts days from the object's creation and rounds up to the next
 * midnight UTC: an object written at 15:00 with Days=1 expires two midnights
 * later, never after less than a full day.
 */
export function afterDays(from: number, days: number): number {
  const t = from + days * DAY;
  return Math.ceil(t / DAY) * DAY;
}

export interface LifecycleSubject {
  key: string;
  size: number;
  /** Only fetched when a rule filters on tags (see needsTags). */
  tags?: Record<string, string>;
}

/** True when some enabled rule's filter names tags: only then must the worker look an object's tags up. */
export function needsTags(rules: readonly LifecycleRule[]): boolean {
  return rules.some((r) => r.enabled && r.filter.tags !== undefined && Object.keys(r.filter.tags).length > 0);
}

export function filterMatches(f: LifecycleFilter, o: LifecycleSubject): boolean {
  if (f.prefix && !o.key.startsWith(f.prefix)) return false;
  if (f.objectSizeGreaterThan !== undefined && !(o.size > f.objectSizeGreaterThan)) return false;
  if (f.objectSizeLessThan !== undefined && !(o.size < f.objectSizeLessThan)) return false;
  if (f.tags) {
    for (const [k, v] of Object.entries(f.tags)) if (o.tags?.[k] !== v) return false;
  }
  return true;
}

/** When the current version expires (ms since the epoch) under the earliest matching rule, or undefined. */
export function currentExpiry(rules: readonly LifecycleRule[], o: LifecycleSubject & { lastModified: number }): number | undefined {
  let at: number | undefined;
  for (const r of rules) {
    if (!r.enabled || !r.expiration || !filterMatches(r.filter, o)) continue;
    const e = r.expiration;
    const t = e.date !== undefined ? e.date : e.days !== undefined ? afterDays(o.lastModified, e.days) : undefined;
    if (t !== undefined && (at === undefined || t < at)) at = t;
  }
  return at;
}

/** When an upload started at `initiated` under `key` is aborted, or undefined. Tag filters never apply to uploads (S3 refuses them). */
export function uploadAbortAt(rules: readonly LifecycleRule[], key: string, initiated: number): number | undefined {
  let at: number | undefined;
  for (const r of rules) {
    if (!r.enabled || !r.abortIncompleteMultipartUpload) continue;
    if (r.filter.prefix && !key.startsWith(r.filter.prefix)) continue;
    const t = afterDays(initiated, r.abortIncompleteMultipartUpload.daysAfterInitiation);
    if (at === undefined || t < at) at = t;
  }
  return at;
}

export interface NoncurrentVersion extends LifecycleSubject {
  versionId: string;
  /** When it stopped being current: the creation time of the version that replaced it. */
  noncurrentSince: number;
}

/**
 * The noncurrent versions of one key (newest first) that the rules remove
 * now: older than NoncurrentDays, beyond the NewerNoncurrentVersions newest
 * noncurrent ones that a rule keeps.
 */
export function noncurrentDue(rules: readonly LifecycleRule[], versions: readonly NoncurrentVersion[], now: number): NoncurrentVersion[] {
  const due = new Set<NoncurrentVersion>();
  for (const r of rules) {
    const nc = r.noncurrentVersionExpiration;
    if (!r.enabled || !nc) continue;
    let kept = 0;
    for (const v of versions) {
      if (!filterMatches(r.filter, v)) continue;
      if (nc.newerNoncurrentVersions !== undefined && kept < nc.newerNoncurrentVersions) { kept++; continue; }
      if (afterDays(v.noncurrentSince, nc.noncurrentDays) <= now) due.add(v);
    }
  }
  return versions.filter((v) => due.has(v));
}

/** True when a rule removes a delete marker that has no older version left (ExpiredObjectDeleteMarker). */
export function removesLoneMarker(rules: readonly LifecycleRule[], o: LifecycleSubject): boolean {
  return rules.some((r) => r.enabled && r.expiration?.expiredObjectDeleteMarker === true && filterMatches(r.filter, o));
}
