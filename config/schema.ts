/**
 * Every option of the agent, its default, and why. The YAML file mirrors this
 * tree (sections are nested maps); each option is also settable by a THOC_*
 * environment variable (path in SCREAMING_SNAKE_CASE, top-level keys without a
 * section prefix: `gossip.probeInterval` -> THOC_GOSSIP_PROBE_INTERVAL,
 * `grpcPort` -> THOC_GRPC_PORT) and, for the common ones, by a flag. Precedence:
 * flag > env > file > preset default. docs/configuration.md is generated from
 * this file (`node dist/config/docs.js`).
 */
import net from "node:net";
import { bool, duration, int, list, num, oneOf, port, str, type OptTree } from "./types.js";

const HOSTPORT = /^[^\s:]+:(\d{1,5})$|^\[[0-9a-fA-F:]+\]:(\d{1,5})$|^[^\s:]+$/;

/** HOST, HOST:PORT or [V6]:PORT with a port a socket can dial (1-65535): a seed on port 99999 would be retried forever. */
function seedAddress(s: string): boolean {
  const m = HOSTPORT.exec(s);
  if (!m) return false;
  const p = m[1] ?? m[2];
  return p === undefined || (Number(p) >= 1 && Number(p) <= 65535);
}

export const schema = {
  // Three presets (issue 19). `local` (what --dev implies) probes every 500 ms with a 250 ms ack
  // wait: 5 --dev agents at load > 12 on 2 cores had 0 false suspicions in 3 minutes with these,
  // 5 with 200/100 ms (docs/benchmarks.md). `test` (the suite's agents) keeps 200/100 ms, so every
  // failover test detects a death 2.5x sooner; the protocol still keeps it from false *dead*
  // verdicts under load (k confirmations, local health, a last look of max(1 s, probeInterval)).
  preset: oneOf(["lan", "local", "test"] as const, "lan", "Timer set: `lan` for real networks; `local` (implied by --dev) has fast timers for agents on one machine that stay steady at load 10 on 2 cores; `test` is `local` with faster failure detection, for the test suite.", { flag: "--preset" }),
  name: str("", "Node name shown in the cluster; empty means the host name (with --dev: `dev`, or `dev-127-0-0-2` for another --bind).", {
    flag: "--name", pattern: /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$/, expected: "1-63 letters, digits, '.', '_' or '-', starting with a letter or digit",
  }),
  bind: str("0.0.0.0", "Address every listener binds (with --dev: 127.0.0.1, so a dev agent is never reachable from the network; --dev refuses any other than loopback).", {
    flag: "--bind", check: (s) => net.isIP(s) !== 0, expected: "an IP address",
  }),
  advertise: str("", "Address other nodes and clients use to reach this one; empty means --bind, or the first non-loopback IPv4 when binding 0.0.0.0.", {
    flag: "--advertise", pattern: /^$|^[0-9a-fA-F.:]+$/, expected: "an IP address",
  }),
  grpcPort: port(7400, "gRPC API for the CLI, programs and other agents.", { flag: "--grpc-port" }),
  httpPort: port(7401, "Admin HTTP: /metrics, /healthz, /readyz.", { flag: "--http-port" }),
  s3Port: port(7480, "S3 API, the port radosgw made customary.", { flag: "--s3-port" }),
  gossipPort: port(7946, "Gossip over UDP and TCP, memberlist's customary port.", { flag: "--gossip-port" }),
  dataDir: str("/var/lib/thoc", "LevelDB metadata, blobs and VM disks (with --dev: ./.thoc/<name>). What the agent creates in it is 0700/0600; an existing directory keeps its mode.", {
    flag: "--data-dir", pattern: /\S/, expected: "a directory path",
  }),
  join: list([], "Seeds to join at start (host:port of their gossip port; the port defaults to 7946); retried with backoff.", {
    flag: "--join", item: seedAddress, expected: "a list of HOST:PORT with a port from 1 to 65535",
  }),
  hypervisorUri: str("qemu:///system", "libvirt connection URI (with --dev: test:///default, libvirt's in-process test driver).", {
    flag: "--hypervisor-uri",
  }),
  logLevel: oneOf(["trace", "debug", "info", "warn", "error", "fatal", "silent"] as const, "info",
    "Log verbosity of the JSON lines on stdout.", { flag: "--log-level" }),
  shutdownTimeout: duration(8000, "How long SIGTERM waits for in-flight calls before closing them, below systemd's 10 s stop budget.", { local: 3000 }),

  tls: {
    certFile: str("", "PEM certificate for the gRPC API from the operator's own PKI, also presented when calling peers (which are then dialled with TLS); empty: the cluster PKI in <dataDir>/pki when there is one (docs/security.md), else plaintext, allowed only with --dev or on loopback."),
    keyFile: str("", "PEM private key for tls.certFile."),
    caFile: str("", "PEM CA bundle that issued operator and node certificates: callers are verified against it (and peers when this agent calls them); required with tls.certFile outside --dev."),
  },

  localSocket: str("/run/thoc/thoc.sock", "Unix socket serving the gRPC API to the CLI on this node: root and group `thoc` are admin without a certificate (SO_PEERCRED); empty turns it off (with --dev: off unless set, the dev agent needs no credentials)."),
  localSocketGroup: str("thoc", "Group whose members are admin on the local socket; the socket is 0660 with this group when it exists, else 0600 (root only)."),

  audit: {
    maxBytes: int(10 << 20, "audit.log is rotated to audit.log.1 when it would grow past this size, so it can never fill the data disk.", { min: 4096 }),
    files: int(5, "Rotated audit logs kept (audit.log.1 ... audit.log.N) besides the current one.", { min: 0, max: 100 }),
  },

  pki: {
    nodeCertTtl: duration(90 * 86_400_000, "Lifetime of a node certificate from the cluster CA; it renews itself when a third is left (30 days), so a node may be off for weeks and still renew over mTLS.", { min: 10_000 }),
    joinToken: str("", "One-time join token (`thoc-node cluster token create` on a member): a node without a certificate uses it at start to get one from the cluster; ignored once it has one.", {
      flag: "--token", secret: true, env: "THOC_JOIN_TOKEN",
    }),
    joinAddress: str("", "gRPC address (HOST:PORT) the token join talks to; empty means the first --join seed's host with this node's grpcPort (members usually share ports).", {
      flag: "--join-grpc", pattern: HOSTPORT, expected: "HOST:PORT of a member's gRPC API",
    }),
  },

  cluster: {
    name: str("thoc", "Cluster name: authenticated data in every sealed gossip datagram, so two clusters on one network never merge.", {
      pattern: /^[a-zA-Z0-9_.-]{1,64}$/, expected: "1-64 letters, digits, '.', '_' or '-'",
    }),
    keys: list([], "Cluster keys (base64, 32 bytes, from `thoc-node keygen`); the first seals, all open, so keys rotate without downtime. Required unless --dev.", {
      secret: true, env: "THOC_CLUSTER_KEYS", item: /^[A-Za-z0-9+/]{43}=$/, expected: "a list of base64 32-byte keys (thoc-node keygen)",
    }),
  },

  // Defaults as formulas (n = alive + suspect members, self included; A = local health 0..awarenessMaxMultiplier-1):
  // probe every probeInterval*(A+1), direct ack within probeTimeout*(A+1);
  // suspicion min = floor(suspicionMult * max(1, log10 n) * probeInterval), max = suspicionMaxTimeoutMult * min,
  // after C of k = max(0, min(suspicionMult - 2, n - 2)) confirmations: max(min, max - (max - min) * log(C+1) / log(k+1)),
  // k = 0 (n <= 2): min at once; last look before a verdict: max(1000, probeInterval) * (A+1) ms;
  // lan: min 4 s, max 24 s up to 10 members; local: 2 s / 12 s; test: 0.8 s / 4.8 s.
  gossip: {
    probeInterval: duration(1000, "SWIM protocol period: one member probed per interval (memberlist LAN default).", { local: 500, test: 200, min: 10 }),
    probeTimeout: duration(500, "Wait for a direct ack before indirect probes; about the network's 99th percentile RTT.", { local: 250, test: 100, min: 1 }),
    indirectChecks: int(3, "Members asked to probe on our behalf when a direct probe fails (SWIM k).", { min: 0, max: 16 }),
    suspicionMult: int(4, "Suspicion timeout = suspicionMult * log10(max(1, n)) * probeInterval, before confirmations shrink it.", { min: 1, max: 100 }),
    suspicionMaxTimeoutMult: int(6, "The timeout starts at suspicionMaxTimeoutMult times the minimum and shrinks with independent confirmations (Lifeguard).", { min: 1, max: 100 }),
    retransmitMult: int(4, "Each update is piggybacked retransmitMult * log10(n+1) times.", { min: 1, max: 100 }),
    gossipInterval: duration(200, "How often queued updates are gossiped to gossipNodes random members.", { local: 50, min: 5 }),
    gossipNodes: int(3, "Members each gossip round sends to.", { min: 1, max: 32 }),
    pushPullInterval: duration(30000, "Full-state TCP sync with one random member, so views re-merge after partitions.", { local: 2000, min: 100 }),
    rejoinInterval: duration(30000, "Retry seeds and dead members this often, so a healed partition re-merges.", { local: 2000, min: 100 }),
    deadReclaimTime: duration(3_600_000, "Forget a dead or left member after this long.", { local: 60_000 }),
    awarenessMaxMultiplier: int(8, "Lifeguard local health: probe timeouts stretch up to this factor on a struggling node.", { min: 1, max: 64 }),
    maxMetaBytes: int(512, "Upper bound for a node's gossiped metadata, so it always fits in one datagram.", { min: 64, max: 1024 }),
    udpBufferSize: int(1400, "Largest datagram sent: under a 1500-byte Ethernet MTU.", { min: 512, max: 65000 }),
    maxStreamBytes: int(1 << 20, "Largest TCP gossip message (push-pull state) accepted; a bigger length prefix is refused before any byte is buffered. A member's entry is at most ~700 bytes (gossip.maxMetaBytes plus address and state), so this fits ~1500 nodes.", { min: 64 << 10, max: 64 << 20 }),
    maxInboundStreams: int(32, "TCP gossip connections served at once; more are closed on accept. Each holds up to maxStreamBytes unauthenticated, so this times that bounds the memory a flood can take.", { min: 1, max: 4096 }),
    streamTimeout: duration(5000, "A TCP gossip message must arrive whole within this long (a peer sends ~1 MB in milliseconds); a connection dripping bytes is cut, so it cannot hold its buffer.", { min: 100 }),
  },

  s3: {
    accessKey: str("", "Root access key; empty with --dev means one is generated and printed at start.", { env: "THOC_S3_ACCESS_KEY" }),
    secretKey: str("", "Root secret key (never logged).", { secret: true, env: "THOC_S3_SECRET_KEY" }),
    region: str("us-east-1", "Region name SigV4 signatures must use; most clients default to us-east-1."),
    domain: str("", "Base domain for virtual-host-style addressing (bucket.DOMAIN); empty means path-style only."),
    sigV2: bool(true, "Accept AWS Signature Version 2 (the `AWS AKID:signature` header, AWSAccessKeyId/Expires/Signature presigned URLs and V2-signed POST Object forms) beside SigV4: aws-cli v1 presigns with V2 by default and s3cmd signs with it. false refuses V2 with a message that says to use SigV4 (V2 signs with SHA-1 and covers neither the body nor the region)."),
    maxClockSkew: duration(900_000, "Signed requests older or newer than this are refused (RequestTimeTooSkewed), as AWS does (15 min)."),
    maxHeaderBytes: int(16384, "Request headers above this size are refused (431).", { min: 1024, max: 1 << 20 }),
    idleTimeout: duration(30_000, "A request body that sends nothing for this long is answered 400 RequestTimeout, so a stalled client cannot hold a write open.", { local: 5000, min: 100 }),
    minBodyRate: int(1024, "Bytes per second a request body must average over each s3.idleTimeout window in which the agent waits for it, or it is answered 400 RequestTimeout: a client dripping a byte every few seconds cannot hold a write (and its memory) forever. 0 turns it off.", { min: 0 }),
    maxConnections: int(1024, "Client connections the S3 port holds at once; more are closed on accept. Far above what S3 clients open (aws-cli 10, rclone 4-16) and well under the unit's LimitNOFILE, so a connection flood cannot take every file descriptor.", { min: 1, max: 1 << 20 }),
    sseCustomerKeysOverHttp: bool(false, "Accept SSE-C (customer-provided encryption keys) over plain HTTP. S3 refuses it, since the key would cross the network in the clear; turn it on only for tests and loopback-only development, or behind a TLS-terminating proxy on the same host (docs/s3.md)."),
    tls: {
      certFile: str("", "PEM certificate (chain) to serve HTTPS on the S3 port; empty serves plaintext HTTP. Not taken from tls.certFile: S3 clients trust a CA the cluster's certificates need not come from, and switching a port's scheme must be a choice (docs/s3.md)."),
      keyFile: str("", "PEM private key for s3.tls.certFile (keep it 0600)."),
    },
  },

  objectstore: {
    replicas: int(3, "N: copies of every object; lowered to the ring size when fewer nodes exist.", { min: 1, max: 7 }),
    writeQuorum: int(2, "W: copies durably written before a PUT is acknowledged; R + W > N gives read-your-writes.", { min: 1, max: 7 }),
    readQuorum: int(2, "R: replicas consulted on a read; the newest answer wins and stale ones are repaired.", { min: 1, max: 7 }),
    vnodes: int(128, "Virtual nodes per unit of weight on the hash ring; more gives a smoother spread.", { min: 1, max: 4096 }),
    antiEntropyInterval: duration(600_000, "Merkle-tree comparison with each replica peer this often.", { local: 5000 }),
    tombstoneGrace: duration(86_400_000, "Tombstones are kept this long so a returning replica cannot resurrect a delete.", { local: 60_000 }),
    directWrites: bool(true, "Write replica bodies past the page cache (O_DIRECT) in whole aligned batches, the tail of each body buffered: bodies are written once and read rarely, and on a hypervisor the cache they would fill is the VMs' memory; it also saves the kernel's copy into the cache (in a VM whose host backs guest memory on first touch, 2.2-2.6 ms per MiB against 0.13-0.2). Reads still go through the cache. A filesystem that refuses O_DIRECT (tmpfs) gets buffered writes without it being turned off; turn it off where O_DIRECT is slow (ZFS before 2.3 emulates it)."),
    repairBytesPerSecond: int(50 << 20, "Rate limit for anti-entropy, handoff and rebalancing traffic so client traffic is never starved.", { min: 1 << 16 }),
    peerTimeout: duration(10_000, "Deadline for one replica call to another agent.", { local: 5000 }),
    partSweepInterval: duration(300_000, "Each node looks for multipart parts no object uses any more (their object was overwritten or deleted) among the part records it holds this often.", { local: 2000, min: 100 }),
    partGrace: duration(3_600_000, "A multipart part no object uses is deleted only after it has been seen unused for this long, so a GET still streaming the replaced object can finish.", { local: 3000 }),
    lifecycleInterval: duration(600_000, "Each node applies buckets' lifecycle rules (expiration, noncurrent versions, stale uploads) to the keys it is first replica of this often. Rules count in days, so every 10 minutes is prompt; a pass only reads local records.", { local: 2000, min: 100 }),
    conditionalLease: duration(15_000, "Lease on a key that a conditional write (If-None-Match: *, If-Match) takes on a majority of the key's replicas, renewed every third of it while the write runs: a node that dies holding it blocks that key's conditional writes for at most this long. Longer than a stall of the holder's event loop, shorter than the 30 s a conditional write waits for the lock. Nodes grant at most 60 s (docs/s3.md).", { min: 1000 }),
    lifecycleDeletesPerSecond: int(100, "Upper bound on lifecycle deletes and aborts per second on each node, so a rule that matches millions of objects never starves client requests of the disk.", { min: 1 }),
  },

  vm: {
    domainType: oneOf(["auto", "kvm", "qemu"] as const, "auto", "libvirt domain type. auto (the default): kvm when libvirt's domain capabilities say the emulator can use KVM on this host, else qemu (TCG emulation, many times slower) with one warning at start and in `thoc-node status`, so a host without /dev/kvm runs VMs instead of failing every create. kvm: KVM or nothing (the agent refuses to start where libvirt says KVM is unavailable); qemu: always TCG."),
    stopTimeout: duration(60_000, "ACPI shutdown wait before a stop turns into a destroy.", { local: 5000 }),
    statsTimeout: duration(2000, "Per-collection deadline for domain stats, so one stuck VM cannot hang /metrics."),
    bridge: str("br0", "Default host bridge NICs attach to (bridge-vlan networking)."),
    vlanMode: oneOf(["vlan-aware", "per-vlan-bridge"] as const, "vlan-aware", "How a VLAN tag reaches a NIC on a Linux bridge (libvirt's vlan element needs Open vSwitch): `bridge vlan` PVID on the tap of a VLAN-aware bridge, or a bridge per VLAN (Proxmox's two ways)."),
    vncPort: port(7402, "WebSocket port for noVNC consoles (token from VmService.GetVncToken); 0 turns it off."),
    vlanBridgePattern: str("{bridge}v{vlan}", "Per-VLAN bridge name when vlanMode is per-vlan-bridge ({bridge} and {vlan} are replaced; Proxmox: vmbr0v100)."),
  },

  container: {
    enabled: oneOf(["auto", "on", "off"] as const, "auto", "Containers beside VMs (docs/containers.md). auto: served when the engine at container.runtimeUri answers; an agent on a host without one stays ready and container calls answer unavailable, saying where it looked. on: the same, but no engine makes the agent degraded (not ready). off: container calls are refused."),
    runtimeUri: str("unix:///run/podman/podman.sock", "Docker-API engine the agent runs containers on: podman's service (systemctl enable --now podman.socket) or Docker (unix:///var/run/docker.sock, tcp://HOST:PORT); memory: is an in-process stand-in for trying the API without one.", {
      pattern: /^(unix:\/\/\/\S+|tcp:\/\/\S+:\d{1,5}|memory:\S*)$/, expected: "unix:///PATH, tcp://HOST:PORT or memory:",
    }),
    portAddress: str("", "Host address a container's --port binds when it names none: empty binds every address (as docker run -p does); \"bind\" binds the agent's own --bind address (a host on several networks that publishes containers only where the agent listens, or several agents on one host); else an IP address.", {
      pattern: /^$|^bind$|^[0-9a-fA-F.:]+$/, expected: "empty, bind, or an IP address",
    }),
    stopTimeout: duration(10_000, "SIGTERM wait before a container stop turns into SIGKILL (Docker's default is 10 s).", { local: 3000 }),
    healthInterval: int(5, "Seconds between health checks of a container whose spec gives a health path but no interval.", { min: 1, max: 3600 }),
    healthRetries: int(3, "Failed health checks in a row before a container is unhealthy, when its spec gives none.", { min: 1, max: 100 }),
    statsTimeout: duration(2000, "Per-container deadline for engine stats on /metrics, so one stuck container cannot hang a scrape."),
  },

  scheduler: {
    strategy: oneOf(["binpack", "spread"] as const, "binpack", "Placement scoring: binpack fills nodes (fewer hosts busy), spread balances load."),
    voters: int(3, "Voters of the leader election (odd): the leader adds live nodes as voters one at a time up to this many; a majority of them must be reachable for a leader to exist. 3 survives one node down, 5 two.", { min: 1, max: 9 }),
    // lan: heartbeats every 400 ms (Consul's Raft at its default multiplier beats every 0.5–1 s), since each
    // beat is a gRPC call per member and 10 a second per member were most of an idle cluster's CPU (issue 19);
    // lease and timeout scaled with it, keeping a crashed leader's replacement under 1 s (docs/scheduler.md).
    // local keeps etcd's 100 ms / 1 s: the failover tests on one machine wait on it.
    electionTimeout: duration(2000, "Base election timeout, randomized in [t, 2t): a follower that hears no heartbeat for that long stands for election (5 heartbeats; etcd's default is 1000 ms at 100 ms heartbeats, Consul's 5 s). A leader whose process died is replaced sooner: followers find its port closed and stand once its lease has run out (about 1.1 x leaseDuration after its last heartbeat).", { local: 1000, min: 10 }),
    heartbeatInterval: duration(400, "Leader heartbeat to every member, well below electionTimeout; each one is a gRPC call per member, the main cost of an idle cluster.", { local: 100, min: 5 }),
    leaseDuration: duration(800, "Leader lease: a leader places VMs only while a majority of voters has acknowledged a heartbeat sent within this time (2 heartbeats); voters refuse votes for 1.1 x this after their last heartbeat, so an old leader has stopped before a new one is elected. Below electionTimeout / 1.1.", { local: 500, min: 5 }),
  },

  metrics: {
    vmStats: bool(true, "Export per-VM Prometheus metrics on /metrics."),
    collectInterval: duration(15_000, "How often capacity and free resources are re-read.", { local: 2000 }),
  },

  limits: {
    maxMetaBytesPerObject: int(2048, "Sum of x-amz-meta-* header sizes, as AWS caps it.", { min: 0 }),
    loadFactor: num(1, "Overcommit factor: the VMs on a node together get at most CPUs × this in vCPUs and memory × this in RAM (1 = no overcommit); one VM never more than the host has.", { min: 0.1, max: 16 }),
  },
} satisfies OptTree;

export type Schema = typeof schema;
