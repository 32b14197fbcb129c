/**
 * Node-to-node work shared by every subsystem that talks to other agents (the
 * object store now, the scheduler next): peer authentication with the cluster
 * key, a pool of authenticated peer clients with idle guards for streams, the
 * gossip view as directory and liveness, the hybrid logical clock, a rate
 * limiter, and the table replicated to every node (last writer wins by HLC,
 * digest-first sync). cluster/ imports no subsystem: it reads membership
 * through core's Membership interface.
 */
export { PeerAuth, authenticated, callerOf, methodPath, PEER_AUTH_HEADER, type PeerAuthOptions } from "./auth.js";
export { PeerPool, idleGuard, signer, type IdleGuard, type PeerDirectory, type Liveness, type PeerPoolOptions } from "./peers.js";
export { clusterView, type ClusterView } from "./view.js";
export { peerCredentials, filesMaterial, type PeerTlsConfig } from "./tls.js";
export { HlcClock, encodeHlc, decodeHlc, compareHlc, maxHlc, successorHlc, isHlc, ZERO_HLC, type Hlc, type HlcClockOptions } from "./hlc.js";
export { RateLimiter } from "./rate.js";
export { ReplicatedTable, LevelTableBackend, MemoryTableBackend, type TableEntry, type TableBackend } from "./table.js";
export { ClusterTable, type TablePeer, type ClusterTableOptions } from "./table-sync.js";
export {
  pkiPaths, certFingerprint, makeCsr, createCa, initCa, loadCa, issueNodeCertificate, issueOperatorCertificate, certInfo, signedBy,
  readKeyFile, writeFileAtomic, ensurePkiDir, hasClusterPki, DEFAULT_OPERATOR_TTL_MS, type CaMaterial, type PkiPaths, type CertInfo,
} from "./pki.js";
export { parseToken, formatToken, JoinTokens, DEFAULT_TOKEN_TTL_MS, type ParsedToken } from "./join-token.js";
export { presentedChain, joinCluster } from "./join.js";
export { NodeTransport, type TransportMode, type NodeTransportOptions } from "./node-tls.js";
