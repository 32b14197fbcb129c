/**
 * The libvirt C API (libvirt.so.0) through koffi. Every pointer is a BigInt
 * (koffi 3). Symbols are bound lazily, on first use, because binding a symbol
 * the installed libvirt lacks throws, and older libvirts lack newer calls: a
 * missing one fails only the feature that needs it.
 *
 * Calls that can block (anything that talks to libvirtd, starts QEMU, waits on
 * a guest) go through `call()`, koffi's async path on the libuv thread pool;
 * cheap local calls (free, name lookups of a handle we hold) use `sync()`.
 */
import koffi, { type LibraryHandle } from "koffi";

type KoffiFunction = ReturnType<LibraryHandle["func"]>;
import { ThocError, type ErrorCode } from "../errors/index.js";

// The event loop occupies one pool thread for good and console reads poll on
// it, so the default 4 threads are too few once fs and LevelDB join in. Only
// effective if nothing has used the pool yet; harmless otherwise.
process.env.UV_THREADPOOL_SIZE ??= "16";

export type Ptr = bigint;

/** One libvirt function: its C prototype, and the library it lives in. */
const PROTOS: Record<string, string> = {
  virInitialize: "int virInitialize(void)",
  virGetVersion: "int virGetVersion(_Out_ unsigned long *libVer, const char *type, _Out_ unsigned long *typeVer)",
  virEventRegisterDefaultImpl: "int virEventRegisterDefaultImpl(void)",
  virEventRunDefaultImpl: "int virEventRunDefaultImpl(void)",
  virEventAddTimeout: "int virEventAddTimeout(int frequency, void *cb, void *opaque, void *ff)",
  virEventRemoveTimeout: "int virEventRemoveTimeout(int timer)",
  virSetErrorFunc: "void virSetErrorFunc(void *userData, void *handler)",
  virGetLastError: "void *virGetLastError(void)",
  virConnGetLastError: "void *virConnGetLastError(void *conn)",
  virConnResetLastError: "void virConnResetLastError(void *conn)",
  virConnectOpen: "void *virConnectOpen(const char *name)",
  virConnectClose: "int virConnectClose(void *conn)",
  virConnectIsAlive: "int virConnectIsAlive(void *conn)",
  virConnectSetKeepAlive: "int virConnectSetKeepAlive(void *conn, int interval, unsigned int count)",
  virConnectGetLibVersion: "int virConnectGetLibVersion(void *conn, _Out_ unsigned long *libVer)",
  virNodeGetInfo: "int virNodeGetInfo(void *conn, void *info)",
  virConnectGetCapabilities: "void *virConnectGetCapabilities(void *conn)",
  virConnectGetDomainCapabilities: "void *virConnectGetDomainCapabilities(void *conn, const char *emulatorbin, const char *arch, const char *machine, const char *virttype, unsigned int flags)",
  virConnectListAllDomains: "int virConnectListAllDomains(void *conn, _Out_ void **domains, unsigned int flags)",
  virConnectDomainEventRegisterAny: "int virConnectDomainEventRegisterAny(void *conn, void *dom, int eventID, void *cb, void *opaque, void *freecb)",
  virConnectDomainEventDeregisterAny: "int virConnectDomainEventDeregisterAny(void *conn, int callbackID)",
  virConnectGetAllDomainStats: "int virConnectGetAllDomainStats(void *conn, unsigned int stats, _Out_ void **retStats, unsigned int flags)",
  virDomainStatsRecordListFree: "void virDomainStatsRecordListFree(void *stats)",
  virConnectListAllNodeDevices: "int virConnectListAllNodeDevices(void *conn, _Out_ void **devices, unsigned int flags)",
  virNodeDeviceGetXMLDesc: "void *virNodeDeviceGetXMLDesc(void *dev, unsigned int flags)",
  virNodeDeviceGetName: "const char *virNodeDeviceGetName(void *dev)",
  virNodeDeviceFree: "int virNodeDeviceFree(void *dev)",
  virDomainDefineXML: "void *virDomainDefineXML(void *conn, const char *xml)",
  virDomainLookupByName: "void *virDomainLookupByName(void *conn, const char *name)",
  virDomainCreate: "int virDomainCreate(void *dom)",
  virDomainShutdown: "int virDomainShutdown(void *dom)",
  virDomainDestroy: "int virDomainDestroy(void *dom)",
  virDomainUndefineFlags: "int virDomainUndefineFlags(void *dom, unsigned int flags)",
  virDomainGetState: "int virDomainGetState(void *dom, _Out_ int *state, _Out_ int *reason, unsigned int flags)",
  virDomainGetXMLDesc: "void *virDomainGetXMLDesc(void *dom, unsigned int flags)",
  virDomainGetName: "const char *virDomainGetName(void *dom)",
  virDomainGetUUIDString: "int virDomainGetUUIDString(void *dom, _Out_ uint8_t *buf)",
  virDomainFree: "int virDomainFree(void *dom)",
  virDomainOpenConsole: "int virDomainOpenConsole(void *dom, const char *dev_name, void *st, unsigned int flags)",
  virDomainSnapshotCreateXML: "void *virDomainSnapshotCreateXML(void *dom, const char *xml, unsigned int flags)",
  virDomainSnapshotLookupByName: "void *virDomainSnapshotLookupByName(void *dom, const char *name, unsigned int flags)",
  virDomainListAllSnapshots: "int virDomainListAllSnapshots(void *dom, _Out_ void **snaps, unsigned int flags)",
  virDomainSnapshotGetName: "const char *virDomainSnapshotGetName(void *snap)",
  virDomainSnapshotGetXMLDesc: "void *virDomainSnapshotGetXMLDesc(void *snap, unsigned int flags)",
  virDomainRevertToSnapshot: "int virDomainRevertToSnapshot(void *snap, unsigned int flags)",
  virDomainSnapshotDelete: "int virDomainSnapshotDelete(void *snap, unsigned int flags)",
  virDomainSnapshotFree: "int virDomainSnapshotFree(void *snap)",
  virDomainInterfaceAddresses: "int virDomainInterfaceAddresses(void *dom, _Out_ void **ifaces, unsigned int source, unsigned int flags)",
  virDomainInterfaceFree: "void virDomainInterfaceFree(void *iface)",
  virStreamNew: "void *virStreamNew(void *conn, unsigned int flags)",
  virStreamRecv: "int virStreamRecv(void *st, _Out_ uint8_t *data, size_t nbytes)",
  virStreamSend: "int virStreamSend(void *st, const uint8_t *data, size_t nbytes)",
  virStreamFinish: "int virStreamFinish(void *st)",
  virStreamAbort: "int virStreamAbort(void *st)",
  virStreamFree: "int virStreamFree(void *st)",
};

export type FnName = keyof typeof PROTOS;

export const VIR = {
  DOMAIN_UNDEFINE_MANAGED_SAVE: 1, DOMAIN_UNDEFINE_SNAPSHOTS_METADATA: 2, DOMAIN_UNDEFINE_NVRAM: 4,
  DOMAIN_EVENT_ID_LIFECYCLE: 0,
  STREAM_NONBLOCK: 1,
  DOMAIN_CONSOLE_FORCE: 1, DOMAIN_CONSOLE_SAFE: 2,
  CONNECT_LIST_NODE_DEVICES_CAP_PCI_DEV: 2,
  CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT: 1 << 29,
  DOMAIN_STATS_STATE: 1, DOMAIN_STATS_CPU_TOTAL: 2, DOMAIN_STATS_BALLOON: 4, DOMAIN_STATS_VCPU: 8,
  DOMAIN_STATS_INTERFACE: 16, DOMAIN_STATS_BLOCK: 32,
  DOMAIN_SNAPSHOT_DELETE_CHILDREN: 1,
  DOMAIN_SNAPSHOT_REVERT_RUNNING: 1,
  DOMAIN_XML_INACTIVE: 2,
  DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE: 0, DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT: 1,
} as const;

/** virErrorNumber values (virterror.h) mapped to our codes; messages refine them in codeOf. */
const VIR_ERR_CODES: Record<number, ErrorCode> = {
  2: "resource_exhausted", // VIR_ERR_NO_MEMORY
  3: "unimplemented", // VIR_ERR_NO_SUPPORT
  5: "unavailable", // VIR_ERR_NO_CONNECT
  8: "invalid_argument", // VIR_ERR_INVALID_ARG
  27: "invalid_argument", // VIR_ERR_XML_ERROR
  28: "already_exists", // VIR_ERR_DOM_EXIST
  38: "unavailable", // VIR_ERR_SYSTEM_ERROR
  39: "unavailable", // VIR_ERR_RPC
  42: "not_found", // VIR_ERR_NO_DOMAIN
  53: "not_found", // VIR_ERR_NO_NODE_DEVICE
  55: "failed_precondition", // VIR_ERR_OPERATION_INVALID
  67: "invalid_argument", // VIR_ERR_CONFIG_UNSUPPORTED
  68: "deadline_exceeded", // VIR_ERR_OPERATION_TIMEOUT
  72: "not_found", // VIR_ERR_NO_DOMAIN_SNAPSHOT
  84: "unimplemented", // VIR_ERR_OPERATION_UNSUPPORTED
  87: "unavailable", // VIR_ERR_RESOURCE_BUSY
};

/** The fields of virError we read (virterror.h: code, domain, message...). */
export interface LibvirtErrorInfo { code: number; domain: number; message: string }

export class Libvirt {
  private lib?: LibraryHandle;
  private fns = new Map<string, KoffiFunction>();
  /** Error captured by our virErrorFunc, for calls that have no connection (open). */
  lastError?: LibvirtErrorInfo;
  private errorCb?: bigint;

  constructor(readonly path = "libvirt.so.0") {}

  private load(): LibraryHandle {
    if (this.lib) return this.lib;
    try {
      this.lib = koffi.load(this.path);
    } catch (err) {
      throw new ThocError("failed_precondition", `cannot load ${this.path}: install libvirt (Debian: apt-get install libvirt0): ${(err as Error).message}`, {}, { cause: err });
    }
    return this.lib;
  }

  fn(name: FnName): KoffiFunction {
    let f = this.fns.get(name);
    if (!f) {
      try {
        f = this.load().func(PROTOS[name]!);
      } catch (err) {
        throw new ThocError("unimplemented", `the installed libvirt lacks ${name} (upgrade libvirt0): ${(err as Error).message}`, { symbol: name }, { cause: err });
      }
      this.fns.set(name, f);
    }
    return f;
  }

  has(name: FnName): boolean {
    try { this.fn(name); return true; } catch { return false; }
  }

  sync<T = unknown>(name: FnName, ...args: unknown[]): T {
    return this.fn(name)(...args) as T;
  }

  /** The call on koffi's async path (a pool thread), so the event loop never blocks. */
  call<T = unknown>(name: FnName, ...args: unknown[]): Promise<T> {
    const f = this.fn(name);
    return new Promise<T>((resolve, reject) => {
      f.async(...args, (err: unknown, res: T) => (err ? reject(err) : resolve(res)));
    });
  }

  /**
   * Installs a virErrorFunc that records the error instead of printing it on
   * stderr (libvirt's default), and initialises the library.
   */
  init(): void {
    if (this.errorCb !== undefined) return;
    const proto = koffi.proto("void thocVirErrorFunc(void *userData, void *error)");
    this.errorCb = koffi.register((_u: unknown, err: Ptr | null) => {
      if (err) this.lastError = decodeError(err);
    }, koffi.pointer(proto));
    this.sync("virSetErrorFunc", null, this.errorCb);
    if (this.sync<number>("virInitialize") < 0) throw new ThocError("internal", "virInitialize failed");
  }

  /** The error of the last failed call on conn (thread-independent, unlike virGetLastError). */
  connError(conn: Ptr | null): LibvirtErrorInfo | undefined {
    if (conn) {
      const p = this.sync<Ptr | null>("virConnGetLastError", conn);
      if (p) {
        const e = decodeError(p);
        this.sync("virConnResetLastError", conn);
        return e;
      }
    }
    const p = this.sync<Ptr | null>("virGetLastError");
    return p ? decodeError(p) : this.lastError;
  }

  /** A typed error for a failed call: what was tried, libvirt's own message. */
  error(what: string, conn: Ptr | null, fallback: ErrorCode = "internal"): ThocError {
    const e = this.connError(conn);
    this.lastError = undefined;
    if (!e) return new ThocError(fallback, `${what} failed (libvirt gave no reason)`);
    return new ThocError(codeOf(e, fallback), `${what}: ${e.message}`, { libvirtCode: e.code, libvirtDomain: e.domain });
  }

  /** Reads a malloc'd C string libvirt handed over, then frees it. */
  takeString(p: Ptr | null): string {
    if (!p) return "";
    try { return koffi.decode.string(p); } finally { this.freeMem(p); }
  }

  private libc?: LibraryHandle;
  private freeFn?: KoffiFunction;
  freeMem(p: Ptr): void {
    if (!this.freeFn) {
      this.libc ??= koffi.load("libc.so.6");
      this.freeFn = this.libc.func("void free(void *p)");
    }
    this.freeFn(p);
  }

  /** n pointers from a C array, then frees the array itself. */
  takePointerArray(arr: Ptr | null, n: number): Ptr[] {
    if (!arr || n <= 0) { if (arr) this.freeMem(arr); return []; }
    const out: Ptr[] = [];
    for (let i = 0; i < n; i++) out.push(koffi.decode(arr, i * 8, "void *") as Ptr);
    this.freeMem(arr);
    return out;
  }
}

function decodeError(p: Ptr): LibvirtErrorInfo {
  const code = koffi.decode.int(p);
  const domain = koffi.decode(p, 4, "int") as number;
  const msgPtr = koffi.decode(p, 8, "void *") as Ptr | null;
  return { code, domain, message: msgPtr ? koffi.decode.string(msgPtr) : `libvirt error ${code}` };
}

function codeOf(e: LibvirtErrorInfo, fallback: ErrorCode): ErrorCode {
  const known = VIR_ERR_CODES[e.code];
  if (known) return known;
  const m = e.message;
  if (/already exists|is already defined|already in use/i.test(m)) return "already_exists";
  if (/not found|no domain|no such|Domain not found|snapshot not found/i.test(m)) return "not_found";
  if (/not running|is not active|already running|is active|Requested operation is not valid/i.test(m)) return "failed_precondition";
  if (/Cannot allocate|insufficient|out of memory/i.test(m)) return "resource_exhausted";
  if (/socket is closed|Failed to connect|Cannot recv data|Connection reset|End of file/i.test(m)) return "unavailable";
  if (/XML error|invalid argument|unsupported configuration/i.test(m)) return "invalid_argument";
  if (/timed out|timeout/i.test(m)) return "deadline_exceeded";
  return fallback;
}

/** virTypedParameter: name char[80], type int at 80, value (union) at 88; 96 bytes. */
export const TYPED_PARAM_SIZE = 96;

export function decodeTypedParams(p: Ptr | null, n: number): Record<string, number | string | boolean> {
  const out: Record<string, number | string | boolean> = {};
  if (!p) return out;
  for (let i = 0; i < n; i++) {
    const base = i * TYPED_PARAM_SIZE;
    const nameBytes = koffi.decode(p, base, "uint8_t", 80) as number[] | Uint8Array;
    const arr = Array.from(nameBytes);
    const end = arr.indexOf(0);
    const name = Buffer.from(arr.slice(0, end < 0 ? 80 : end)).toString("utf8");
    const type = koffi.decode(p, base + 80, "int") as number;
    const v = base + 88;
    switch (type) {
      case 1: out[name] = koffi.decode(p, v, "int") as number; break;
      case 2: out[name] = koffi.decode(p, v, "uint") as number; break;
      case 3: out[name] = Number(koffi.decode(p, v, "int64_t")); break;
      case 4: out[name] = Number(koffi.decode(p, v, "uint64_t")); break;
      case 5: out[name] = koffi.decode(p, v, "double") as number; break;
      case 6: out[name] = (koffi.decode(p, v, "char") as number) !== 0; break;
      case 7: { const s = koffi.decode(p, v, "void *") as Ptr | null; out[name] = s ? koffi.decode.string(s) : ""; break; }
      default: break;
    }
  }
  return out;
}

export function decodeStatsRecords(p: Ptr | null, n: number): { dom: Ptr; params: Record<string, number | string | boolean> }[] {
  const out: { dom: Ptr; params: Record<string, number | string | boolean> }[] = [];
  if (!p) return out;
  for (let i = 0; i < n; i++) {
    const rec = koffi.decode(p, i * 8, "void *") as Ptr;
    const dom = koffi.decode(rec, 0, "void *") as Ptr;
    const params = koffi.decode(rec, 8, "void *") as Ptr | null;
    const nparams = koffi.decode(rec, 16, "int") as number;
    out.push({ dom, params: decodeTypedParams(params, nparams) });
  }
  return out;
}

/**
 * virDomainInterface (name, hwaddr, naddrs, addrs at 0/8/16/24) and its
 * virDomainIPAddress array (type int, addr char*, prefix uint at 0/8/16; 24
 * bytes each), decoded before virDomainInterfaceFree releases them.
 */
export function decodeInterface(p: Ptr): { name: string; mac: string; addresses: { type: "ipv4" | "ipv6"; address: string; prefix: number }[] } {
  const str = (off: number) => { const s = koffi.decode(p, off, "void *") as Ptr | null; return s ? koffi.decode.string(s) : ""; };
  const n = koffi.decode(p, 16, "uint") as number;
  const addrs = koffi.decode(p, 24, "void *") as Ptr | null;
  const addresses: { type: "ipv4" | "ipv6"; address: string; prefix: number }[] = [];
  for (let i = 0; addrs && i < n; i++) {
    const a = koffi.decode(addrs, i * 24 + 8, "void *") as Ptr | null;
    addresses.push({ type: (koffi.decode(addrs, i * 24, "int") as number) === 1 ? "ipv6" : "ipv4", address: a ? koffi.decode.string(a) : "", prefix: koffi.decode(addrs, i * 24 + 16, "uint") as number });
  }
  return { name: str(0), mac: str(8), addresses };
}

export { koffi };
