/**
 * S3's XML: a tiny writer (S3 responses are flat and regular, so strings with
 * escaping are enough) and a capped, validating reader for request bodies
 * (CompleteMultipartUpload, Delete, CreateBucketConfiguration).
 */
import { XMLParser, XMLValidator } from "fast-xml-parser";
import { s3err } from "./errors.js";

export const S3_NS = "http://s3.amazonaws.com/doc/2006-03-01/";
const DECL = '<?xml version="1.0" encoding="UTF-8"?>\n';

export function esc(s: string): string {
  return s.replace(/[&<>"'\r\n\t]|[\u0000-\u0008\u000b\u000c\u000e-\u001f]/g, (c) =>
    c === "&" ? "&amp;" : c === "<" ? "&lt;" : c === ">" ? "&gt;" : c === '"' ? "&quot;" : c === "'" ? "&apos;" : `&#x${c.charCodeAt(0).toString(16).toUpperCase()};`);
}

export type XmlValue = string | number | boolean | undefined | null | XmlNode | XmlNode[];
/** An element's children in order; arrays repeat the element name. */
export type XmlNode = { [tag: string]: XmlValue | XmlValue[] };

function render(tag: string, v: XmlValue | XmlValue[]): string {
  if (v === undefined || v === null) return "";
  if (Array.isArray(v)) return v.map((x) => render(tag, x)).join("");
  if (typeof v === "object") return `<${tag}>${Object.entries(v).map(([k, c]) => render(k, c)).join("")}</${tag}>`;
  return `<${tag}>${esc(String(v))}</${tag}>`;
}

/** A whole document: `<root xmlns=S3>children</root>`. */
export function xmlDoc(root: string, children: XmlNode, ns = true): string {
  const inner = Object.entries(children).map(([k, c]) => render(k, c)).join("");
  return `${DECL}<${root}${ns ? ` xmlns="${S3_NS}"` : ""}>${inner}</${root}>`;
}

export const XML_DECL = DECL;

const parser = new XMLParser({
  ignoreAttributes: true,
  parseTagValue: false,
  trimValues: false,
  removeNSPrefix: true,
  processEntities: true,
  htmlEntities: true,
  isArray: (name) => name === "Part" || name === "Object",
});

/** S3's request documents nest 3 deep (Delete > Object > Key); anything past this is not one of them. */
const MAX_DEPTH = 16;

/** True when elements nest deeper than max: one linear scan, before any parser sees the text. */
function tooDeep(text: string, max: number): boolean {
  let depth = 0;
  for (const m of text.matchAll(/<(\/)?[^>]*?(\/)?>/g)) {
    const tag = m[0];
    if (tag.startsWith("<?") || tag.startsWith("<!")) continue;
    if (m[1]) depth--;
    else if (!m[2] && ++depth > max) return true;
  }
  return false;
}

/**
 * Parses a request body; MalformedXML when it is not well-formed or the root
 * is not `root`. The answer never carries the parser's own message: for an
 * unclosed-tag flood it listed every open tag (90 KB in, 540 KB out), and
 * nesting is capped before the validator runs, which bounds its CPU.
 */
export function parseXml(text: string, root: string): Record<string, unknown> {
  if (text.trim() === "") throw s3err("MalformedXML");
  if (tooDeep(text, MAX_DEPTH)) throw s3err("MalformedXML", `The XML you provided nests elements deeper than ${MAX_DEPTH}.`);
  const ok = XMLValidator.validate(text);
  if (ok !== true) throw s3err("MalformedXML", `The XML you provided was not well-formed (line ${Number(ok.err.line) || 0}).`);
  let doc: Record<string, unknown>;
  try { doc = parser.parse(text) as Record<string, unknown>; } catch { throw s3err("MalformedXML"); }
  const r = doc[root];
  if (r === undefined) throw s3err("MalformedXML", `Expected a <${root}> document.`);
  if (typeof r !== "object" || r === null) return {};
  return r as Record<string, unknown>;
}

/** A child element's text, or undefined. Whitespace is kept (S3 keys may have it); numbers are trimmed by the caller. */
export function text(node: unknown, name: string): string | undefined {
  if (!node || typeof node !== "object") return undefined;
  const v = (node as Record<string, unknown>)[name];
  if (v === undefined || v === null) return undefined;
  if (typeof v === "string") return v;
  if (typeof v === "object" && "#text" in (v as object)) return String((v as Record<string, unknown>)["#text"]);
  if (typeof v === "object") return "";
  return String(v);
}

export function list(node: unknown, name: string): unknown[] {
  if (!node || typeof node !== "object") return [];
  const v = (node as Record<string, unknown>)[name];
  return v === undefined ? [] : Array.isArray(v) ? v : [v];
}

const WS = "[ \\t\\r\\n]*";
/** CompleteMultipartUpload as SDKs write it: an optional declaration, the root with at most an xmlns, then only <Part>s. */
const COMPLETE_HEAD = new RegExp(`^(?:<\\?xml version=(["'])1\\.0\\1(?: encoding=(["'])[A-Za-z0-9._-]+\\2)?${WS}\\?>)?${WS}<CompleteMultipartUpload(?: xmlns="[^"<>&]*")?${WS}>`);
const COMPLETE_PART = new RegExp(`${WS}<Part>((?:${WS}<[A-Za-z0-9]+>[^<&]*(?:&quot;[^<&]*)*</[A-Za-z0-9]+>)*)${WS}</Part>|${WS}</CompleteMultipartUpload>${WS}$`, "y");
const PART_CHILD = new RegExp(`${WS}<([A-Za-z0-9]+)>([^<]*)</([A-Za-z0-9]+)>`, "y");
const PART_CHILDREN = new Set(["PartNumber", "ETag", "ChecksumCRC32", "ChecksumCRC32C", "ChecksumCRC64NVME", "ChecksumSHA1", "ChecksumSHA256"]);

/**
 * The part list of a CompleteMultipartUpload document in the plain shape SDKs
 * send, read with a few sticky regular expressions (1,000 parts in well under
 * a millisecond; the general parser took 8-15 ms warm and 90-230 ms on a busy
 * node); undefined for anything else (entities other than &quot;, prefixes,
 * comments, a repeated or unknown element...), which parseXml then reads, so
 * both agree on every document this accepts. Texts are raw, as text() gives them.
 */
export function simpleCompleteParts(doc: string): { partNumber: string; etag: string }[] | undefined {
  const head = COMPLETE_HEAD.exec(doc);
  if (!head) return undefined;
  const out: { partNumber: string; etag: string }[] = [];
  COMPLETE_PART.lastIndex = head[0].length;
  for (;;) {
    const m = COMPLETE_PART.exec(doc);
    if (!m) return undefined;
    if (m[1] === undefined) return out;
    const seen = new Map<string, string>();
    PART_CHILD.lastIndex = 0;
    for (let c = PART_CHILD.exec(m[1]); c; c = PART_CHILD.exec(m[1])) {
      if (c[1] !== c[3] || !PART_CHILDREN.has(c[1]!) || seen.has(c[1]!)) return undefined;
      seen.set(c[1]!, c[2]!.replaceAll("&quot;", '"'));
      if (PART_CHILD.lastIndex === m[1].length) break;
    }
    const partNumber = seen.get("PartNumber"), etag = seen.get("ETag");
    if (partNumber === undefined || etag === undefined) return undefined;
    out.push({ partNumber, etag });
  }
}
