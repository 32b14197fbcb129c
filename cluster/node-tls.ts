/**
 * How an agent's gRPC transport is secured, and the node side of the cluster
 * PKI (docs/security.md, "Cluster PKI"):
 *  - tls.certFile/keyFile/caFile set: the operator's own PKI, as before;
 *  - else <dataDir>/pki holds a cluster CA: TLS on every address, loopback
 *    included, asking for (not requiring) a client certificate, so a caller
 *    without one gets UNAUTHENTICATED per call rather than a failed handshake
 *    (and Join works for a node that has no certificate yet); peers dial with
 *    their node certificate and verify against the cluster CA;
 *  - else plaintext (only --dev or loopback get this far).
 *
 * Certificates live in in-memory certificate providers, so a renewal swaps
 * them for new handshakes without a restart.
 */
import { experimental, type ServerCredentials } from "@grpc/grpc-js";
import { X509Certificate } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { isIP } from "node:net";
import client from "prom-client";
import { isLoopback, readConfigFile, readKeyFile as readConfigKeyFile, type Config } from "../config/index.js";
import { ThocError } from "../errors/index.js";
import { PkiService } from "../proto/index.js";
import { createClient, describeCaller, tlsRequestingClientCert, ServerCredentials as SC, type Caller, type ChannelCredentials, type RpcServer } from "../rpc/index.js";
import type { LocalStore } from "../store/index.js";
import type { ClusterHooks, TlsMaterial } from "../core/index.js";
import { PeerAuth } from "./auth.js";
import { joinCluster } from "./join.js";
import { JoinTokens } from "./join-token.js";
import { signer } from "./peers.js";
import {
  certInfo, ensurePkiDir, issueNodeCertificate, loadCa, makeCsr, pkiPaths, readKeyFile, signedBy, writeFileAtomic,
  type CaMaterial, type PkiPaths,
} from "./pki.js";
import { pkiService, type NodeCertRequest } from "./pki-service.js";
import { filesMaterial, peerCredentials } from "./tls.js";

type Listener<T> = (u: T | null) => void;

/** A certificate provider whose contents the agent sets (and replaces at renewal). */
class MemoryProvider implements experimental.CertificateProvider {
  private ca?: experimental.CaCertificateUpdate;
  private id?: experimental.IdentityCertificateUpdate;
  private readonly caL = new Set<Listener<experimental.CaCertificateUpdate>>();
  private readonly idL = new Set<Listener<experimental.IdentityCertificateUpdate>>();
  setCa(pem: string): void {
    this.ca = { caCertificate: Buffer.from(pem) };
    for (const l of this.caL) l(this.ca);
  }
  setIdentity(certPem: string, keyPem: string): void {
    this.id = { certificate: Buffer.from(certPem), privateKey: Buffer.from(keyPem) };
    for (const l of this.idL) l(this.id);
  }
  // The first update is delivered on the next tick: grpc-js's server credentials add their
  // own watcher only after adding the listener, and an update delivered at once is lost.
  addCaCertificateListener(l: Listener<experimental.CaCertificateUpdate>) { this.caL.add(l); process.nextTick(() => { if (this.ca && this.caL.has(l)) l(this.ca); }); }
  removeCaCertificateListener(l: Listener<experimental.CaCertificateUpdate>) { this.caL.delete(l); }
  addIdentityCertificateListener(l: Listener<experimental.IdentityCertificateUpdate>) { this.idL.add(l); process.nextTick(() => { if (this.id && this.idL.has(l)) l(this.id); }); }
  removeIdentityCertificateListener(l: Listener<experimental.IdentityCertificateUpdate>) { this.idL.delete(l); }
}

export type TransportMode = "pki" | "files" | "plaintext";

export interface NodeTransportOptions {
  config: Config;
  store: LocalStore;
  log: { info(o: object, m: string): void; warn(o: object, m: string): void; error(o: object, m: string): void };
  metrics: client.Registry;
  rpc: RpcServer;
  /** This node's advertised host (certificate SAN). */
  advertise: string;
  now?: () => number;
}

export class NodeTransport {
  readonly mode: TransportMode;
  readonly credentials: ChannelCredentials;
  private readonly paths: PkiPaths;
  private readonly provider = new MemoryProvider();
  private ca?: CaMaterial;
  private nodeCertPem = "";
  private material?: TlsMaterial;
  private cluster?: ClusterHooks;
  private renewTimer?: NodeJS.Timeout;
  private renewing?: Promise<void>;
  private readonly auth: PeerAuth;
  private readonly now: () => number;

  private constructor(private readonly o: NodeTransportOptions) {
    const { config } = o;
    this.now = o.now ?? Date.now;
    this.paths = pkiPaths(o.store.dataDir);
    this.mode = config.tls.certFile ? "files" : existsSync(this.paths.caCert) || config.pki.joinToken ? "pki" : "plaintext";
    this.credentials = this.mode === "pki"
      ? experimental.createCertificateProviderChannelCredentials(this.provider, this.provider)
      : peerCredentials(config.tls);
    this.auth = new PeerAuth({ clusterName: config.cluster.name, keys: config.cluster.keys, nodeId: o.store.nodeId, checkCaller: (c, n, m) => this.checkCaller(c, n, m) });
  }

  /** Sets the transport up: joins with the token or issues this node's certificate when needed, registers PkiService. */
  static async open(o: NodeTransportOptions): Promise<NodeTransport> {
    const t = new NodeTransport(o);
    if (t.mode === "pki") await t.setUp();
    return t;
  }

  get nodeId(): string { return this.o.store.nodeId; }

  private addresses(): string[] {
    const c = this.o.config;
    return [this.o.advertise, c.bind, c.name].filter((a) => a && a !== "0.0.0.0" && a !== "::");
  }

  private async setUp(): Promise<void> {
    const { config, log } = this.o;
    const p = this.paths;
    if (!existsSync(p.nodeCert) && !existsSync(p.caKey)) {
      if (!config.pki.joinToken) {
        throw new ThocError("failed_precondition", `${p.dir} has the cluster CA but no node certificate, and this node holds no CA key: start it with --join HOST --token TOKEN (thoc-node cluster token create on a member)`);
      }
      const seed = config.join[0]?.replace(/:\d+$/, "");
      const address = config.pki.joinAddress || `${seed!.includes(":") ? `[${seed}]` : seed}:${config.grpcPort}`;
      await joinCluster({ token: config.pki.joinToken, address, nodeId: this.nodeId, addresses: this.addresses(), paths: p, ttlMs: config.pki.nodeCertTtl });
      log.info({ node: this.nodeId, via: address }, "joined the cluster PKI: node certificate stored");
    } else if (config.pki.joinToken && existsSync(p.nodeCert)) {
      log.info({}, "a join token was given but this node already has its certificate: token not used");
    }
    ensurePkiDir(p);
    this.ca = await loadCa(p);
    const stale = existsSync(p.nodeCert) && !covers(readFileSync(p.nodeCert, "utf8"), this.o.advertise);
    if (!existsSync(p.nodeCert) || (stale && this.ca.key)) {
      // A CA holder without a node certificate (cluster init ran while the store was locked) or with
      // one that does not name the address peers dial (init knew no config): issue it here.
      await this.issueLocally();
      log.info({ node: this.nodeId }, "node certificate issued from the local CA key");
    } else if (stale) {
      log.warn({ advertise: this.o.advertise }, "the node certificate does not name the advertised address: peers will refuse it; it is replaced at the next renewal");
    }
    this.loadNodeCert();
    this.o.rpc.add(PkiService, pkiService({
      ca: () => this.ca!,
      tokens: this.ca.key ? new JoinTokens(this.o.store) : undefined,
      nodeCertTtlMs: config.pki.nodeCertTtl,
      dev: config.dev,
      auth: this.auth,
      isRemoved: (id) => this.cluster?.isRemoved(id) ?? false,
      revoke: async (serial, reason) => {
        if (!this.cluster?.revoke) throw new ThocError("unavailable", "the revocation table is not open yet: retry in a moment");
        return this.cluster.revoke(serial, reason);
      },
      forward: (req) => this.forward(req),
    }));
    const gauge = new client.Gauge({
      name: "thoc_cert_expiry_seconds", help: "Seconds until this node's certificate (cert=\"node\") and the cluster CA (cert=\"ca\") expire.",
      labelNames: ["cert"], registers: [this.o.metrics],
      collect: () => {
        if (this.nodeCertPem) gauge.set({ cert: "node" }, (certInfo(this.nodeCertPem).notAfter.getTime() - this.now()) / 1000);
        if (this.ca) gauge.set({ cert: "ca" }, (this.ca.notAfter.getTime() - this.now()) / 1000);
      },
    });
  }

  private loadNodeCert(): void {
    const certPem = readFileSync(this.paths.nodeCert, "utf8");
    const keyPem = readKeyFile(this.paths.nodeKey);
    const info = certInfo(certPem);
    if (info.notAfter.getTime() <= this.now()) {
      throw new ThocError("failed_precondition", `node certificate ${this.paths.nodeCert} expired at ${info.notAfter.toISOString()}: remove ${this.paths.dir}/node.* and rejoin with --token`);
    }
    this.nodeCertPem = certPem;
    this.provider.setCa(this.ca!.certPem);
    // The chain (node + CA), so a joining node can read the CA off the handshake and check it against its token.
    this.provider.setIdentity(`${certPem.trim()}\n${this.ca!.certPem.trim()}\n`, keyPem);
    this.material = { ca: this.ca!.certPem, cert: `${certPem.trim()}\n${this.ca!.certPem.trim()}\n`, key: keyPem };
  }

  private async issueLocally(): Promise<void> {
    const { keyPem, csrPem } = await makeCsr(this.nodeId, "node");
    const cert = await issueNodeCertificate(this.ca!, { csrPem, nodeId: this.nodeId, addresses: this.addresses(), ttlMs: this.o.config.pki.nodeCertTtl });
    this.store(cert, keyPem);
  }

  private store(certPem: string, keyPem: string): void {
    writeFileAtomic(this.paths.nodeKey, keyPem, 0o600);
    writeFileAtomic(this.paths.nodeCert, certPem, 0o644);
  }

  serverCredentials(): ServerCredentials {
    if (this.mode === "pki") return experimental.createCertificateProviderServerCredentials(this.provider, this.provider, false);
    const t = this.o.config.tls;
    if (!t.certFile) {
      if (!this.o.config.dev && !isLoopback(this.o.config.bind)) throw new ThocError("failed_precondition", "TLS is required off loopback");
      return SC.createInsecure();
    }
    // The config's readers: errors name the key to fix, and a key others can read is refused.
    const cert = readConfigFile(t.certFile, "tls.certFile"), key = readConfigKeyFile(t.keyFile, "tls.keyFile");
    // Clients are asked for a certificate (operators and peers are known by theirs) but may come without one: authorization decides per call.
    if (t.caFile) return tlsRequestingClientCert(readConfigFile(t.caFile, "tls.caFile"), cert, key);
    return SC.createSsl(null, [{ cert_chain: cert, private_key: key }], false);
  }

  /** The PEMs behind the credentials (core/ PeerTransport.tlsMaterial). */
  tlsMaterial(): TlsMaterial | undefined {
    if (this.mode === "pki") return this.material;
    return filesMaterial(this.o.config.tls);
  }

  /**
   * With the cluster PKI, a peer call must come with a node certificate of
   * this CA whose node id is the one the MAC claims, from a node not removed.
   */
  checkCaller(caller: Caller, claimed: string, method: string): void {
    if (this.mode !== "pki") return;
    if (caller.kind !== "node") {
      throw new ThocError("unauthenticated", `peer call ${method} refused: ${describeCaller(caller)} is not a node certificate of this cluster's CA`);
    }
    if (caller.nodeId !== claimed) {
      throw new ThocError("permission_denied", `peer call ${method} refused: the certificate is node ${caller.nodeId}'s but the call claims node ${claimed}`);
    }
    if (this.cluster?.isRemoved(caller.nodeId)) {
      throw new ThocError("permission_denied", `peer call ${method} refused: node ${caller.nodeId} was removed from the cluster (thoc-node node remove); its certificate is no longer accepted`);
    }
  }

  attachCluster(c: ClusterHooks): void {
    this.cluster = c;
  }

  /** A certificate serial `thoc-node cert revoke` took back: refused by every member (the authorization hook asks). */
  isRevoked(serial: string): boolean {
    return this.cluster?.isRevoked?.(serial) ?? false;
  }

  /** Asks the other members, in turn, to sign (a forwarded join, or our renewal); the first CA holder answers. */
  private async forward(req: NodeCertRequest): Promise<{ certificate: string; caCertificate: string }> {
    const members = (this.cluster?.members() ?? []).filter((m) => m.id !== this.nodeId && m.grpc);
    if (!members.length) throw new ThocError("unavailable", "no other member is reachable to sign the certificate (this node holds no CA key)");
    const errors: string[] = [];
    for (const m of members) {
      const c = createClient(PkiService, m.grpc, { credentials: this.credentials, defaultTimeoutMs: 10_000, metadata: signer(this.auth, m.id) });
      try {
        const r = await c.signNodeCertificate(req);
        return { certificate: r.certificate, caCertificate: r.caCertificate };
      } catch (err) {
        const e = ThocError.from(err);
        // A refusal about the request itself (token, removed node) is the answer; a member without the key is not.
        if (e.code === "permission_denied" || e.code === "invalid_argument") throw e;
        errors.push(`${m.id}: ${e.message}`);
      } finally {
        c.close();
      }
    }
    throw new ThocError("unavailable", `no CA holder signed the certificate: ${errors.join("; ")}`);
  }

  /** Renews the node certificate once a third of its life is left; checks every 1/30 of its lifetime (at most every minute). */
  startRenewal(): void {
    if (this.mode !== "pki") return;
    const every = Math.max(200, Math.min(60_000, Math.floor(this.o.config.pki.nodeCertTtl / 30)));
    this.renewTimer = setInterval(() => { void this.maybeRenew(); }, every);
    this.renewTimer.unref();
  }

  /** Renews now when due (or when forced); resolves when done. */
  maybeRenew(force = false): Promise<void> {
    if (this.renewing) return this.renewing;
    const info = certInfo(this.nodeCertPem);
    const life = info.notAfter.getTime() - info.notBefore.getTime();
    if (!force && info.notAfter.getTime() - this.now() > life / 3) return Promise.resolve();
    this.renewing = this.renew().catch((err) => {
      this.o.log.warn({ err: ThocError.from(err).message, notAfter: info.notAfter.toISOString() }, "node certificate renewal failed; will retry");
    }).finally(() => { this.renewing = undefined; });
    return this.renewing;
  }

  private async renew(): Promise<void> {
    const before = certInfo(this.nodeCertPem).serial;
    if (this.ca?.key) {
      await this.issueLocally();
    } else {
      const { keyPem, csrPem } = await makeCsr(this.nodeId, "node");
      const r = await this.forward({ token: "", csr: csrPem, nodeId: this.nodeId, addresses: this.addresses(), ttlMs: BigInt(this.o.config.pki.nodeCertTtl) });
      if (!(await signedBy(r.certificate, this.ca!.certPem))) throw new ThocError("internal", "the renewed certificate is not signed by the cluster CA");
      this.store(r.certificate, keyPem);
    }
    this.loadNodeCert();
    const after = certInfo(this.nodeCertPem);
    this.o.log.info({ oldSerial: before, serial: after.serial, notAfter: after.notAfter.toISOString() }, "node certificate renewed");
  }

  stop(): void {
    clearInterval(this.renewTimer);
  }
}

/** The certificate names `host` (an IP or DNS SAN). */
function covers(certPem: string, host: string): boolean {
  const c = new X509Certificate(certPem);
  return Boolean(isIP(host) ? c.checkIP(host) : c.checkHost(host));
}
