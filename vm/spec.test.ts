/** Request validation: every refusal names the field and what would be accepted. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { prefixOf, validateSpec, type VmSpecInput } from "./spec.js";
import { networkConfig, vlanCommands, bridgeFor, tapName, macFor } from "./network.js";
import { userData, metaData, hashPassword } from "./cloudinit.js";

const host = { cpus: 4, memoryBytes: 8 * 2 ** 30 };
const ok: VmSpecInput = { name: "vm1", image: "debian-12", vcpus: 2, ramMB: 1024, diskGB: 10 };
const v = (over: VmSpecInput) => validateSpec({ ...ok, ...over }, host, { bridge: "br0" });
const refuses = (over: VmSpecInput, re: RegExp) => assert.throws(() => v(over), (e: { code: string; message: string }) => e.code === "invalid_argument" && re.test(e.message));

test("a plain request gets DHCP on the default bridge, untagged", () => {
  const s = v({});
  assert.deepEqual(s.network, { mode: "bridge-vlan", ipMode: "dhcp", ipAddress: "", netmask: "", gateway: "", vlanId: 0, bridge: "br0" });
  assert.equal(s.gpu, undefined);
  assert.equal(s.cloudInit, undefined);
});

test("vcpus, RAM, disk, name and image limits", () => {
  refuses({ vcpus: 0 }, /vcpus: 0 vCPUs: a VM needs at least 1/);
  refuses({ vcpus: 5 }, /this host has 4 CPUs; ask for at most 4/);
  refuses({ vcpus: 1.5 }, /vcpus/);
  refuses({ ramMB: 9000 }, /9000 MiB of RAM is more than this host has \(8192 MiB\)/);
  refuses({ ramMB: 8 }, /at least 16 MiB/);
  refuses({ diskGB: -1 }, /diskGB/);
  refuses({ name: "Web_1" }, /not a valid VM name/);
  refuses({ name: "-x" }, /not a valid VM name/);
  refuses({ image: "" }, /image: no image given/);
  refuses({ image: "../etc" }, /not a valid image name/);
});

test("static addressing: address, netmask (dotted or prefix), gateway on the subnet", () => {
  const s = v({ network: { ipMode: "static", ipAddress: "192.168.100.10", netmask: "255.255.255.0", gateway: "192.168.100.1", vlanId: 100 } });
  assert.equal(s.network.netmask, "24");
  assert.equal(v({ network: { ipAddress: "10.1.2.3/16", gateway: "10.1.0.1" } }).network.ipMode, "static");
  refuses({ network: { ipMode: "static", ipAddress: "192.168.100.10", netmask: "255.255.255.0" } }, /network.gateway: static addressing needs a gateway: add --gateway/);
  refuses({ network: { ipMode: "static", ipAddress: "192.168.100.10", gateway: "192.168.100.1" } }, /network.netmask: static addressing needs a netmask/);
  refuses({ network: { ipMode: "static", netmask: "24", gateway: "192.168.100.1" } }, /needs an address/);
  refuses({ network: { ipAddress: "300.1.1.1/24", gateway: "10.0.0.1" } }, /not an IPv4 address/);
  refuses({ network: { ipAddress: "10.0.0.5", netmask: "255.0.255.0", gateway: "10.0.0.1" } }, /is not a netmask/);
  refuses({ network: { ipAddress: "10.0.0.5/24", gateway: "10.0.1.1" } }, /gateway 10.0.1.1 is not in 10.0.0.5\/24/);
  refuses({ network: { ipMode: "dhcp", ipAddress: "10.0.0.5" } }, /DHCP takes no address/);
  assert.equal(prefixOf("255.255.255.252"), 30);
  assert.equal(prefixOf("0.0.0.0"), undefined);
});

test("VLAN 1-4094, network modes, bridge names", () => {
  refuses({ network: { vlanId: 5000 } }, /VLAN 5000 is out of range: VLAN ids are 1-4094/);
  refuses({ network: { vlanId: -1 } }, /out of range/);
  assert.equal(v({ network: { vlanId: 4094 } }).network.vlanId, 4094);
  refuses({ network: { mode: "nat" as "none" } }, /network.mode: "nat" is not supported/);
  refuses({ network: { mode: "none", vlanId: 5 } }, /no NIC/);
  refuses({ network: { bridge: "a-very-long-bridge-name" } }, /not a valid bridge name/);
});

test("GPU requests", () => {
  assert.deepEqual(v({ gpu: { enabled: true, mode: "passthrough", deviceIds: ["GPU-0", "GPU-0"] } }).gpu?.deviceIds, ["GPU-0"]);
  refuses({ gpu: { enabled: true, mode: "passthrough", deviceIds: [] } }, /passthrough needs the GPUs/);
  refuses({ gpu: { enabled: true, mode: "mig", migProfile: "big" } }, /not a MIG profile: use the form 1g.10gb/);
  refuses({ gpu: { enabled: true, mode: "vgpu" as "mig" } }, /not a GPU mode/);
  assert.equal(v({ gpu: { enabled: false } }).gpu, undefined);
});

test("cloud-init: defaults, SSH key and password checks", () => {
  const s = v({ cloudInit: { sshPublicKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE me@x" } });
  assert.equal(s.cloudInit?.hostname, "vm1");
  assert.equal(s.cloudInit?.username, "thoc");
  refuses({ cloudInit: { sshPublicKey: "not a key" } }, /not an OpenSSH public key/);
  refuses({ cloudInit: { password: "short" } }, /shorter than 8/);
  refuses({ cloudInit: { username: "Root!" } }, /not a valid Linux user name/);
});

test("network-config v2, VLAN commands, per-VLAN bridge names, tap and MAC", () => {
  const s = v({ network: { ipAddress: "192.168.100.10", netmask: "255.255.255.0", gateway: "192.168.100.1", vlanId: 100 } });
  const nc = networkConfig(s.network, "52:54:00:01:02:03");
  assert.match(nc, /version: 2/);
  assert.match(nc, /macaddress: 52:54:00:01:02:03/);
  assert.match(nc, /- 192.168.100.10\/24/);
  assert.match(nc, /to: default\n\s+via: 192.168.100.1/);
  assert.match(networkConfig(v({}).network, "52:54:00:01:02:03"), /dhcp4: true/);
  assert.deepEqual(vlanCommands("thocabc", s.network, "vlan-aware"), [
    ["bridge", "vlan", "del", "dev", "thocabc", "vid", "1"],
    ["bridge", "vlan", "add", "dev", "thocabc", "vid", "100", "pvid", "untagged", "master"],
  ]);
  assert.deepEqual(vlanCommands("thocabc", s.network, "per-vlan-bridge"), []);
  assert.deepEqual(vlanCommands("thocabc", v({}).network, "vlan-aware"), [], "untagged: nothing to do");
  assert.equal(bridgeFor(s.network, "per-vlan-bridge", "{bridge}v{vlan}"), "br0v100");
  assert.equal(bridgeFor(s.network, "vlan-aware", "{bridge}v{vlan}"), "br0");
  assert.match(tapName("vm1"), /^thoc[0-9a-f]{10}$/);
  assert.ok(tapName("vm1").length <= 15);
  assert.match(macFor("3f1c2a3b-1111-4222-8333-444455556666"), /^52:54:00(:[0-9a-f]{2}){3}$/);
});

test("user-data carries a SHA-512 crypt hash, never the password; meta-data has instance-id and hostname", async () => {
  const h = await hashPassword("initial-password-123");
  assert.match(h, /^\$6\$[^$]+\$[./A-Za-z0-9]{86}$/);
  const ud = userData({ instanceId: "i-1", hostname: "dev-vm-01", cloudInit: { hostname: "dev-vm-01", username: "ubuntu", sshPublicKey: "ssh-rsa AAAA x", password: "initial-password-123" }, passwordHash: h });
  assert.match(ud, /^#cloud-config\n/);
  assert.ok(!ud.includes("initial-password-123"));
  assert.ok(ud.includes(h));
  assert.match(ud, /name: ubuntu/);
  assert.match(ud, /ssh_authorized_keys:\n\s+- ssh-rsa AAAA x/);
  assert.match(ud, /lock_passwd: false/);
  const md = metaData({ instanceId: "i-1", hostname: "dev-vm-01" });
  assert.match(md, /instance-id: i-1/);
  assert.match(md, /local-hostname: dev-vm-01/);
});
