/**
 * The VM request (seed 004's VirtualMachineConfig) as plain data, and its
 * validation. Every refusal says which field is wrong and what would be
 * accepted, so a caller can fix the request without reading code.
 */
import { isIPv4 } from "node:net";
import { ThocError } from "../errors/index.js";

export type GpuMode = "passthrough" | "mig";
export type NetMode = "bridge-vlan" | "none";
export type IpMode = "static" | "dhcp";

export interface GpuSpec { enabled: boolean; mode: GpuMode; deviceIds: string[]; migProfile: string }
export interface NetworkSpec {
  mode: NetMode; ipMode: IpMode; ipAddress: string; netmask: string; gateway: string;
  /** 0 = the bridge's untagged VLAN. */
  vlanId: number; bridge: string;
}
export interface CloudInitSpec { hostname: string; sshPublicKey: string; username: string; password: string }

export interface VmSpec {
  name: string;
  image: string;
  vcpus: number;
  ramMB: number;
  diskGB: number;
  gpu?: GpuSpec;
  network: NetworkSpec;
  cloudInit?: CloudInitSpec;
  /**
   * false: the agent does not start the VM again at its start when it was
   * running before (vm create --no-autostart). Absent means on: records
   * written before the option existed keep the default.
   */
  autostart?: boolean;
}

/** Loose input: what a gRPC request or a test hands over before validation. */
export interface VmSpecInput {
  name?: string; image?: string; vcpus?: number; ramMB?: number; diskGB?: number;
  gpu?: Partial<GpuSpec> & { deviceIds?: string[] };
  network?: Partial<NetworkSpec>;
  cloudInit?: Partial<CloudInitSpec>;
  autostart?: boolean;
}

export interface HostLimits { cpus: number; memoryBytes: number }

export const NAME_RE = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
const IMAGE_RE = /^[a-zA-Z0-9][a-zA-Z0-9._-]{0,63}$/;
const HOSTNAME_RE = /^(?=.{1,253}$)[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*$/;
const USER_RE = /^[a-z_][a-z0-9_-]{0,31}$/;
const BRIDGE_RE = /^[a-zA-Z0-9_.-]{1,15}$/;
/** The largest VM libvirt/QEMU is asked for (KVM's per-VM vCPU limit on x86 is higher, but 256 keeps mistakes cheap). */
export const MAX_VCPUS = 256;
export const MAX_DISK_GB = 65536;

const bad = (field: string, msg: string) => new ThocError("invalid_argument", `${field}: ${msg}`, { field });

/** Prefix length of a dotted netmask or a bare prefix ("24"); undefined when invalid. */
export function prefixOf(netmask: string): number | undefined {
  if (/^\d{1,2}$/.test(netmask)) {
    const n = Number(netmask);
    return n >= 1 && n <= 32 ? n : undefined;
  }
  if (!isIPv4(netmask)) return undefined;
  const bits = netmask.split(".").map((o) => Number(o).toString(2).padStart(8, "0")).join("");
  if (!/^1+0*$/.test(bits)) return undefined;
  return bits.indexOf("0") < 0 ? 32 : bits.indexOf("0");
}

const ipNum = (ip: string) => ip.split(".").reduce((a, o) => a * 256 + Number(o), 0);

export function validateSpec(input: VmSpecInput, host: HostLimits, defaults: { bridge: string }): VmSpec {
  const name = (input.name ?? "").trim();
  if (!NAME_RE.test(name)) throw bad("name", `"${name}" is not a valid VM name: use 1-63 lowercase letters, digits and '-', starting and ending with a letter or digit`);
  const image = (input.image ?? "").trim();
  if (!image) throw bad("image", "no image given: name an imported image (thoc-node image list), e.g. --image debian-12");
  if (!IMAGE_RE.test(image)) throw bad("image", `"${image}" is not a valid image name`);

  const vcpus = input.vcpus ?? 0;
  if (!Number.isInteger(vcpus) || vcpus < 1) throw bad("vcpus", `${vcpus} vCPUs: a VM needs at least 1 (--vcpus 1..${Math.min(MAX_VCPUS, host.cpus)})`);
  if (vcpus > MAX_VCPUS || vcpus > host.cpus) throw bad("vcpus", `${vcpus} vCPUs: this host has ${host.cpus} CPUs; ask for at most ${Math.min(MAX_VCPUS, host.cpus)}`);

  const ramMB = input.ramMB ?? 0;
  const hostMB = Math.floor(host.memoryBytes / 1048576);
  if (!Number.isInteger(ramMB) || ramMB < 16) throw bad("ramMB", `${ramMB} MiB of RAM: a VM needs at least 16 MiB (--ram MIB)`);
  if (ramMB > hostMB) throw bad("ramMB", `${ramMB} MiB of RAM is more than this host has (${hostMB} MiB); ask for less`);

  const diskGB = input.diskGB ?? 0;
  if (!Number.isInteger(diskGB) || diskGB < 0 || diskGB > MAX_DISK_GB) throw bad("diskGB", `${diskGB} GB: give a disk size from 1 to ${MAX_DISK_GB} GB (--disk GB)`);

  const network = validateNetwork(input.network ?? {}, defaults.bridge);
  const gpu = validateGpu(input.gpu);
  const cloudInit = validateCloudInit(input.cloudInit, name);
  // Only the opt-out is stored: a spec that does not say is on (autostartOf).
  return { name, image, vcpus, ramMB, diskGB, network, ...(gpu ? { gpu } : {}), ...(cloudInit ? { cloudInit } : {}), ...(input.autostart === false ? { autostart: false } : {}) };
}

/** Whether the agent starts this VM again at its start (when it was meant to run). */
export const autostartOf = (s: Pick<VmSpec, "autostart">): boolean => s.autostart !== false;

export function validateNetwork(n: Partial<NetworkSpec>, defaultBridge: string): NetworkSpec {
  const mode = (n.mode || "bridge-vlan") as NetMode;
  if (mode !== "bridge-vlan" && mode !== "none") throw bad("network.mode", `"${mode}" is not supported: use bridge-vlan (or none for no NIC)`);
  const vlanId = n.vlanId ?? 0;
  if (!Number.isInteger(vlanId) || vlanId < 0 || vlanId > 4094) throw bad("network.vlanId", `VLAN ${vlanId} is out of range: VLAN ids are 1-4094 (omit --vlan for the bridge's untagged VLAN)`);
  const bridge = n.bridge || defaultBridge;
  if (!BRIDGE_RE.test(bridge)) throw bad("network.bridge", `"${bridge}" is not a valid bridge name (1-15 letters, digits, '.', '_', '-')`);
  const ipMode = (n.ipMode || (n.ipAddress ? "static" : "dhcp")) as IpMode;
  if (ipMode !== "static" && ipMode !== "dhcp") throw bad("network.ipMode", `"${ipMode}" is not an IP mode: use static or dhcp`);
  let ipAddress = n.ipAddress ?? "", netmask = n.netmask ?? "", gateway = n.gateway ?? "";
  if (mode === "none") {
    if (vlanId || ipAddress) throw bad("network.mode", "network mode none has no NIC: drop --vlan and --ip");
    return { mode, ipMode: "dhcp", ipAddress: "", netmask: "", gateway: "", vlanId: 0, bridge };
  }
  if (ipMode === "static") {
    // "10.0.0.5/24" carries its netmask.
    const slash = /^([^/]+)\/(\d{1,2})$/.exec(ipAddress);
    if (slash) { ipAddress = slash[1]!; if (!netmask) netmask = slash[2]!; }
    if (!isIPv4(ipAddress)) throw bad("network.ipAddress", ipAddress ? `"${ipAddress}" is not an IPv4 address` : "static addressing needs an address: --ip 10.0.0.5/24 (or --dhcp)");
    if (!netmask) throw bad("network.netmask", "static addressing needs a netmask: --ip ADDRESS/PREFIX (e.g. 10.0.0.5/24)");
    const prefix = prefixOf(netmask);
    if (prefix === undefined) throw bad("network.netmask", `"${netmask}" is not a netmask: use a dotted mask like 255.255.255.0 or a prefix length 1-32`);
    if (!gateway) throw bad("network.gateway", "static addressing needs a gateway: add --gateway ADDRESS (or use --dhcp)");
    if (!isIPv4(gateway)) throw bad("network.gateway", `"${gateway}" is not an IPv4 address`);
    const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
    if (((ipNum(ipAddress) & mask) >>> 0) !== ((ipNum(gateway) & mask) >>> 0)) {
      throw bad("network.gateway", `gateway ${gateway} is not in ${ipAddress}/${prefix}: use a gateway on the VM's subnet`);
    }
    if (ipAddress === gateway) throw bad("network.ipAddress", `the VM's address ${ipAddress} is the gateway's: pick another address`);
    netmask = String(prefix);
  } else if (ipAddress || gateway) {
    throw bad("network.ipMode", "DHCP takes no address or gateway: drop --ip/--gateway, or drop --dhcp");
  }
  return { mode, ipMode, ipAddress, netmask, gateway, vlanId, bridge };
}

function validateGpu(g: VmSpecInput["gpu"]): GpuSpec | undefined {
  if (!g || (!g.enabled && !g.mode && !(g.deviceIds?.length) && !g.migProfile)) return undefined;
  const mode = g.mode as GpuMode;
  if (mode !== "passthrough" && mode !== "mig") throw bad("gpu.mode", `"${g.mode ?? ""}" is not a GPU mode: use passthrough or mig`);
  const deviceIds = [...new Set((g.deviceIds ?? []).map((d) => d.trim()).filter(Boolean))];
  const migProfile = (g.migProfile ?? "").trim();
  if (mode === "passthrough") {
    if (!deviceIds.length) throw bad("gpu.deviceIds", "passthrough needs the GPUs to pass: --gpu passthrough:0000:3b:00.0 (see thoc-node vm gpus)");
    if (migProfile) throw bad("gpu.migProfile", "a MIG profile is for mode mig, not passthrough");
  } else {
    if (!/^\d+g\.\d+gb$/.test(migProfile)) throw bad("gpu.migProfile", `"${migProfile}" is not a MIG profile: use the form 1g.10gb (see thoc-node vm gpus)`);
    if (deviceIds.length > 1) throw bad("gpu.deviceIds", "a MIG slice comes from one GPU: name at most one device");
  }
  return { enabled: true, mode, deviceIds, migProfile };
}

function validateCloudInit(c: VmSpecInput["cloudInit"], vmName: string): CloudInitSpec | undefined {
  if (!c || !Object.values(c).some(Boolean)) return undefined;
  const hostname = c.hostname || vmName;
  if (!HOSTNAME_RE.test(hostname)) throw bad("cloudInit.hostname", `"${hostname}" is not a valid host name`);
  const username = c.username || "thoc";
  if (!USER_RE.test(username)) throw bad("cloudInit.username", `"${username}" is not a valid Linux user name (lowercase letters, digits, '_', '-'; up to 32)`);
  const sshPublicKey = (c.sshPublicKey ?? "").trim();
  if (sshPublicKey && !/^(ssh-(rsa|ed25519|dss)|ecdsa-sha2-nistp\d+|sk-(ssh-ed25519|ecdsa-sha2-nistp256)@openssh\.com) [A-Za-z0-9+/=]+( .*)?$/.test(sshPublicKey)) {
    throw bad("cloudInit.sshPublicKey", "not an OpenSSH public key: give the contents of a .pub file (ssh-ed25519 AAAA... user@host)");
  }
  if (sshPublicKey.includes("\n")) throw bad("cloudInit.sshPublicKey", "give one key on one line");
  const password = c.password ?? "";
  if (password && password.length < 8) throw bad("cloudInit.password", "the password is shorter than 8 characters");
  return { hostname, username, sshPublicKey, password };
}
