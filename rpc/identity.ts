/**
 * Who is calling: the identity a gRPC call arrives with, decided by the
 * transport, never by anything the caller writes in its messages or metadata.
 *
 * Certificates issued by the cluster CA encode who they are for in the subject
 * (cluster/pki issues them; docs/security.md documents the format):
 *
 *   node      CN=<nodeId>  O=thoc  OU=node                    SAN URI thoc://node/<nodeId>
 *   operator  CN=<name>    O=thoc  OU=viewer|operator|admin    SAN URI thoc://operator/<name>
 *
 * Only a certificate that the TLS layer verified against the server's CA
 * counts (grpc-js reports no certificate for an unverified one). A node
 * certificate is never an operator credential, and an operator certificate
 * never a node's.
 */
import type { PeerCertificate } from "node:tls";

export const ROLES = ["viewer", "operator", "admin"] as const;
export type Role = (typeof ROLES)[number];
export const CERT_ORG = "thoc";
export const NODE_OU = "node";

export function isRole(s: string): s is Role {
  return (ROLES as readonly string[]).includes(s);
}

/** `have` grants everything `need` does (admin ⊃ operator ⊃ viewer). */
export function roleAtLeast(have: Role, need: Role): boolean {
  return ROLES.indexOf(have) >= ROLES.indexOf(need);
}

export type Caller =
  /** An agent of this cluster, by its node certificate. */
  | { kind: "node"; nodeId: string; serial: string; fingerprint: string }
  /** An operator (person or program), by a client certificate carrying a role. */
  | { kind: "operator"; name: string; role: Role; serial: string; fingerprint: string }
  /** A process on this host, over the agent's unix socket (SO_PEERCRED). */
  | { kind: "local"; uid: number; gid: number; pid: number; /** Supplementary groups when it connected (/proc/<pid>/status). */ groups?: readonly number[] }
  /** No verified identity: plaintext TCP, or TLS without a (valid) client certificate. */
  | { kind: "anonymous"; transport: "insecure" | "tls" | "unix" };

const one = (v: string | string[] | undefined): string | undefined => (Array.isArray(v) ? (v.length === 1 ? v[0] : undefined) : v);

/**
 * The caller a verified certificate names, or anonymous when it names no
 * THOC identity (a certificate from the right CA with another subject).
 */
export function callerFromCertificate(cert: PeerCertificate): Caller {
  const s = cert.subject ?? {};
  const cn = one(s.CN), o = one(s.O), ou = one(s.OU);
  const serial = (cert.serialNumber ?? "").toLowerCase();
  const fingerprint = (cert.fingerprint256 ?? "").replaceAll(":", "").toLowerCase();
  if (o !== CERT_ORG || !cn || !ou) return { kind: "anonymous", transport: "tls" };
  if (ou === NODE_OU) return { kind: "node", nodeId: cn, serial, fingerprint };
  if (isRole(ou)) return { kind: "operator", name: cn, role: ou, serial, fingerprint };
  return { kind: "anonymous", transport: "tls" };
}

/** One line for logs and the audit log: never a secret, always enough to find the credential. */
export function describeCaller(c: Caller): string {
  switch (c.kind) {
    case "node": return `node ${c.nodeId}`;
    case "operator": return `operator ${c.name} (${c.role}, serial ${c.serial})`;
    case "local": return `local uid ${c.uid} gid ${c.gid} pid ${c.pid}`;
    case "anonymous": return `anonymous (${c.transport})`;
  }
}
