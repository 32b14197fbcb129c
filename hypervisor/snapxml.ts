/** Reads what we need from libvirt snapshot XML (<domainsnapshot>). */
import { XMLParser } from "fast-xml-parser";
import type { SnapshotInfo } from "./types.js";

const parser = new XMLParser({ ignoreAttributes: false, attributeNamePrefix: "@" });

export function parseSnapshotXml(xml: string): SnapshotInfo {
  const doc = parser.parse(xml) as { domainsnapshot?: Record<string, unknown> };
  const s = doc.domainsnapshot ?? {};
  const text = (v: unknown) => (v === undefined || v === null ? "" : typeof v === "object" ? String((v as { "#text"?: unknown })["#text"] ?? "") : String(v));
  return {
    name: text(s.name),
    description: text(s.description),
    createdAt: Number(text(s.creationTime)) || 0,
    state: text(s.state),
  };
}
