/**
 * PkiService on every member: GetCa and Join for anyone (the token is the
 * credential), CreateJoinToken and IssueCertificate for admins, and
 * SignNodeCertificate for other nodes (peer MAC + node certificate). A member
 * without the CA key forwards a join to a CA holder; only a holder keeps
 * tokens, so CreateJoinToken and IssueCertificate must reach one.
 *
 * The role table (another part of the agent) decides who may call what; the
 * admin methods also check here, so minting certificates never depends on
 * that table being wired.
 */
import { ThocError } from "../errors/index.js";
import type { PkiService } from "../proto/index.js";
import { describeCaller, isRole, requestBytes, type CallContext, type ImplOf } from "../rpc/index.js";
import { PEER_AUTH_HEADER, type PeerAuth } from "./auth.js";
import { DEFAULT_TOKEN_TTL_MS, parseToken, type JoinTokens } from "./join-token.js";
import { certInfo, DEFAULT_OPERATOR_TTL_MS, issueNodeCertificate, issueOperatorCertificate, type CaMaterial } from "./pki.js";

export interface PkiServiceDeps {
  ca: () => CaMaterial;
  /** Only on a CA holder. */
  tokens?: JoinTokens;
  nodeCertTtlMs: number;
  dev: boolean;
  auth: PeerAuth;
  isRemoved(nodeId: string): boolean;
  /** Records a revoked serial cluster-wide; resolves with when. */
  revoke(serial: string, reason: string): Promise<number>;
  forward(req: NodeCertRequest): Promise<{ certificate: string; caCertificate: string }>;
}

export interface NodeCertRequest { token: string; csr: string; nodeId: string; addresses: string[]; ttlMs: bigint }

const MAX_TOKEN_TTL_MS = 7 * 86_400_000;
const MAX_OPERATOR_TTL_MS = 366 * 86_400_000;

function requireAdmin(ctx: CallContext, dev: boolean, what: string): void {
  const c = ctx.caller;
  if (dev || c.kind === "local" || (c.kind === "operator" && c.role === "admin")) return;
  if (c.kind === "anonymous") throw new ThocError("unauthenticated", `${what} needs an admin certificate (--tls-cert/--tls-key) or the node's local socket`);
  throw new ThocError("permission_denied", `${what} needs role admin; ${describeCaller(c)} does not have it`);
}

export function pkiService(d: PkiServiceDeps): ImplOf<typeof PkiService> {
  const holder = () => {
    const ca = d.ca();
    if (!ca.key || !d.tokens) throw new ThocError("failed_precondition", "this node does not hold the cluster CA key: run this against the node where `thoc-node cluster init` ran");
    return { ca, tokens: d.tokens };
  };

  /** On a holder: checks the token's CA, signs, then spends the token (a bad CSR does not burn it). */
  /** The node's asked-for lifetime, never beyond this CA's pki.nodeCertTtl. */
  const ttlOf = (req: NodeCertRequest) => Math.min(Number(req.ttlMs) || d.nodeCertTtlMs, d.nodeCertTtlMs);

  const signJoin = async (req: NodeCertRequest) => {
    const { ca, tokens } = holder();
    const t = parseToken(req.token);
    if (t.caFingerprint !== ca.fingerprint) throw new ThocError("permission_denied", `join token ${t.id} names another CA (sha256 ${t.caFingerprint.slice(0, 16)}…): it was made for another cluster`);
    if (d.isRemoved(req.nodeId)) throw new ThocError("permission_denied", `node ${req.nodeId} was removed from the cluster: a removed node id cannot join again (start from an empty data dir)`);
    const certificate = await issueNodeCertificate(ca, { csrPem: req.csr, nodeId: req.nodeId, addresses: req.addresses, ttlMs: ttlOf(req) });
    await tokens.consume(t, req.nodeId);
    return { certificate, caCertificate: ca.certPem };
  };

  return {
    async getCa() {
      const ca = d.ca();
      return { caCertificate: ca.certPem, fingerprint: ca.fingerprint };
    },

    async join(req) {
      const t = parseToken(req.token);
      const ca = d.ca();
      if (t.caFingerprint !== ca.fingerprint) throw new ThocError("permission_denied", `join token ${t.id} names another CA (sha256 ${t.caFingerprint.slice(0, 16)}…): it was made for another cluster`);
      const r = { token: req.token, csr: req.csr, nodeId: req.nodeId, addresses: req.addresses, ttlMs: req.ttlMs };
      return ca.key && d.tokens ? signJoin(r) : d.forward(r);
    },

    async createJoinToken(req, ctx) {
      requireAdmin(ctx, d.dev, "creating a join token");
      const { ca, tokens } = holder();
      const ttl = Number(req.ttlMs) || DEFAULT_TOKEN_TTL_MS;
      if (ttl > MAX_TOKEN_TTL_MS) throw new ThocError("invalid_argument", "--ttl: a join token may live at most 7 days (168h)");
      const t = await tokens.create(ca.fingerprint, ttl);
      return { token: t.token, id: t.id, expiresAtMs: BigInt(t.expiresAt) };
    },

    async issueCertificate(req, ctx) {
      requireAdmin(ctx, d.dev, "issuing a certificate");
      const { ca } = holder();
      if (!isRole(req.role)) throw new ThocError("invalid_argument", `--role must be viewer, operator or admin, not ${JSON.stringify(req.role)}`);
      const ttl = Number(req.ttlMs) || DEFAULT_OPERATOR_TTL_MS;
      if (ttl > MAX_OPERATOR_TTL_MS) throw new ThocError("invalid_argument", "--ttl: an operator certificate may live at most 366 days");
      const cert = await issueOperatorCertificate(ca, { csrPem: req.csr, name: req.name, role: req.role, ttlMs: ttl });
      const info = certInfo(cert.toString("pem"));
      return { certificate: cert.toString("pem"), caCertificate: ca.certPem, serial: info.serial, expiresAtMs: BigInt(info.notAfter.getTime()) };
    },

    async revokeCertificate(req, ctx) {
      requireAdmin(ctx, d.dev, "revoking a certificate");
      const serial = normalizeSerial(req.serial);
      if (req.reason.length > 512) throw new ThocError("invalid_argument", "--reason: at most 512 characters");
      const at = await d.revoke(serial, req.reason);
      return { serial, revokedAtMs: BigInt(at) };
    },

    async signNodeCertificate(req, ctx) {
      const path = "/thoc.node.v1.PkiService/SignNodeCertificate";
      const v = ctx.metadata.get(PEER_AUTH_HEADER)[0];
      // Bound to this node and these request bytes, like every peer call (cluster/auth.ts).
      const node = d.auth.verify(path, typeof v === "string" ? v : v?.toString(), requestBytes(req) ?? new Uint8Array(0));
      d.auth.checkCaller(ctx.caller, node, path);
      const r = { token: req.token, csr: req.csr, nodeId: req.nodeId, addresses: req.addresses, ttlMs: req.ttlMs };
      if (req.token) return signJoin(r);
      // A renewal: a node renews only its own certificate.
      if (req.nodeId !== node) throw new ThocError("permission_denied", `node ${node} may renew only its own certificate, not ${req.nodeId}'s`);
      if (d.isRemoved(node)) throw new ThocError("permission_denied", `node ${node} was removed from the cluster: its certificate is not renewed`);
      const { ca } = holder();
      const certificate = await issueNodeCertificate(ca, { csrPem: req.csr, nodeId: node, addresses: req.addresses, ttlMs: ttlOf(r) });
      return { certificate, caCertificate: ca.certPem };
    },
  };
}

/** One spelling for a serial, whoever wrote it (`cert issue`, the audit log, TLS): lowercase hex, no colons, no leading zeros. */
export function normalizeSerial(input: string): string {
  const s = input.trim().toLowerCase().replaceAll(":", "").replace(/^0x/, "").replace(/^0+(?=.)/, "");
  if (!/^[0-9a-f]{1,64}$/.test(s)) throw new ThocError("invalid_argument", `serial ${JSON.stringify(input)} is not a certificate serial number (hex, as \`thoc-node cert issue\` printed it or the audit log names it)`);
  return s;
}
