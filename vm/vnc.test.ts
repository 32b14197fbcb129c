/** VNC tokens (single use, per VM, expiring), the WebSocket framing the proxy speaks, and the proxy over wss://. */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import type http from "node:http";
import net from "node:net";
import tls from "node:tls";
import { makeTestCertificates } from "../core/testutil.js";
import { LibvirtHypervisor } from "../hypervisor/index.js";
import { fixture, importImages, type Fixture } from "./testutil.js";
import { createVncProxy, decodeFrames, encodeFrame } from "./vnc-proxy.js";
import { VncTokens } from "./vnc.js";

test("tokens: one VM, once, until they expire", async () => {
  const t = new VncTokens(() => "ws://h:7402", 50);
  const a = t.issue("vm1");
  assert.match(a.url, /^ws:\/\/h:7402\/vnc\/vm1\?token=[A-Za-z0-9_-]{32}$/);
  assert.equal(t.redeem("vm2", a.token), false, "not for another VM");
  const b = t.issue("vm1");
  assert.equal(t.redeem("vm1", b.token), true);
  assert.equal(t.redeem("vm1", b.token), false, "spent");
  const c = t.issue("vm1");
  await new Promise((r) => setTimeout(r, 80));
  assert.equal(t.redeem("vm1", c.token), false, "expired");
  assert.equal(t.redeem("vm1", "x".repeat(32)), false);
});

test("frames: server frames unmasked, client frames masked, 7/16/64-bit lengths, partial input kept", () => {
  for (const n of [0, 5, 125, 126, 65535, 65536, 200_000]) {
    const payload = Buffer.alloc(n, 7);
    const { frames, rest } = decodeFrames(encodeFrame(payload));
    assert.equal(frames.length, 1);
    assert.equal(frames[0]!.opcode, 2);
    assert.ok(frames[0]!.payload.equals(payload), `length ${n}`);
    assert.equal(rest.length, 0);
  }
  // A masked client frame ("RFB"), split across two reads.
  const mask = Buffer.from([1, 2, 3, 4]);
  const body = Buffer.from("RFB");
  const masked = Buffer.from(body.map((b, i) => b ^ mask[i & 3]!));
  const frame = Buffer.concat([Buffer.from([0x82, 0x80 | body.length]), mask, masked]);
  const first = decodeFrames(frame.subarray(0, 4));
  assert.equal(first.frames.length, 0);
  const second = decodeFrames(Buffer.concat([first.rest, frame.subarray(4)]));
  assert.equal(second.frames[0]!.payload.toString(), "RFB");
});

/**
 * The WebSocket itself over wss:// (the agent's TLS certificate; here a test
 * CA's) on libvirt's test:///default driver: a VM whose live XML names a VNC
 * port where a stand-in VNC server greets with "RFB 003.008". Tokens come from
 * a VncTokens on a fake clock: one for another VM, an expired one and a spent
 * one are refused with 401; a fresh one for this VM is relayed.
 */
describe("VNC WebSocket over wss://", () => {
  const hv = new LibvirtHypervisor("test:///default");
  let f: Fixture;
  let rfb: net.Server;
  let proxy: http.Server;
  let port = 0;
  let ca: Buffer;
  let now = 1_000_000;
  const sockets = new Set<net.Socket>();
  const tokens = new VncTokens(() => `wss://127.0.0.1:${port}`, 60_000, () => now);

  before(async () => {
    await hv.open();
    f = await fixture(hv);
    await f.m.start();
    await importImages(f);
    rfb = net.createServer((s) => { s.write("RFB 003.008\n"); s.on("error", () => {}); });
    await new Promise<void>((r) => rfb.listen(0, "127.0.0.1", r));
    const rfbPort = (rfb.address() as net.AddressInfo).port;
    for (const name of ["vnc1", "vnc2"]) await f.m.create({ name, image: "debian-12", vcpus: 1, ramMB: 256, diskGB: 1 });
    // As libvirt reports a running VM's autoport: the live XML names the port its VNC server took.
    await hv.destroy("thoc-vnc1");
    const xml = (await hv.xml("thoc-vnc1")).replace(/<graphics type=['"]vnc['"][^>]*>/, `<graphics type='vnc' port='${rfbPort}' autoport='no' listen='127.0.0.1'>`);
    await hv.define(xml);
    await hv.start("thoc-vnc1");
    const certs = makeTestCertificates(f.dir, ["127.0.0.1"]);
    ca = readFileSync(certs.caFile);
    proxy = createVncProxy(f.m, tokens, { cert: readFileSync(certs.certFile), key: readFileSync(certs.keyFile) });
    proxy.on("connection", (c: net.Socket) => { sockets.add(c); c.on("close", () => sockets.delete(c)); });
    await new Promise<void>((r) => proxy.listen(0, "127.0.0.1", r));
    port = (proxy.address() as net.AddressInfo).port;
  });
  after(async () => {
    // Upgraded (WebSocket) sockets are no longer HTTP connections: end them by hand, as the subsystem does.
    for (const c of sockets) c.destroy();
    await new Promise((r) => proxy?.close(r));
    await new Promise((r) => rfb?.close(r));
    await f?.cleanup();
    await hv.close();
  });

  /** Opens wss://127.0.0.1:port/vnc/<vm>?token=T trusting the test CA; resolves with the status line and the first frame's payload. */
  function open(vm: string, token: string): Promise<{ status: string; first?: string }> {
    return new Promise((resolve, reject) => {
      const s = tls.connect({ host: "127.0.0.1", port, ca, servername: "localhost" }, () => {
        s.write([`GET /vnc/${vm}?token=${encodeURIComponent(token)} HTTP/1.1`, `Host: 127.0.0.1:${port}`, "Upgrade: websocket", "Connection: Upgrade",
          `Sec-WebSocket-Key: ${randomBytes(16).toString("base64")}`, "Sec-WebSocket-Version: 13", "Sec-WebSocket-Protocol: binary", "", ""].join("\r\n"));
      });
      let buf = Buffer.alloc(0);
      s.on("data", (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        const end = buf.indexOf("\r\n\r\n");
        if (end < 0) return;
        const status = buf.subarray(0, buf.indexOf("\r\n")).toString();
        if (!status.includes(" 101 ")) { s.destroy(); return resolve({ status }); }
        const { frames } = decodeFrames(buf.subarray(end + 4));
        if (frames.length) { s.destroy(); resolve({ status, first: frames[0]!.payload.toString() }); }
      });
      s.on("error", reject);
      s.setTimeout(5000, () => { s.destroy(); reject(new Error("no answer in 5 s")); });
    });
  }

  test("the URL is wss://; a token for another VM, an expired one and a spent one get 401; a fresh one is relayed", async () => {
    const other = tokens.issue("vnc2");
    assert.match(other.url, new RegExp(`^wss://127\\.0\\.0\\.1:${port}/vnc/vnc2\\?token=`));
    assert.match((await open("vnc1", other.token)).status, / 401 /, "a token made for vnc2");

    const stale = tokens.issue("vnc1");
    now += 60_001;
    assert.match((await open("vnc1", stale.token)).status, / 401 /, "60 s and 1 ms later");

    const fresh = tokens.issue("vnc1");
    now += 59_000;
    const ok = await open("vnc1", fresh.token);
    assert.match(ok.status, / 101 /, "59 s later, for its own VM");
    assert.equal(ok.first, "RFB 003.008\n", "relayed from the VM's VNC server");
    assert.match((await open("vnc1", fresh.token)).status, / 401 /, "single use");
  });

  test("plaintext ws:// to the wss port is not upgraded", async () => {
    const t = tokens.issue("vnc1");
    const answer = await new Promise<string>((resolve) => {
      const s = net.connect(port, "127.0.0.1", () => s.write(`GET /vnc/vnc1?token=${t.token} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${randomBytes(16).toString("base64")}\r\nSec-WebSocket-Version: 13\r\n\r\n`));
      let got = "";
      s.on("data", (d: Buffer) => { got += d.toString("latin1"); });
      s.on("error", () => resolve(got));
      s.on("close", () => resolve(got));
      s.setTimeout(5000, () => s.destroy());
    });
    assert.doesNotMatch(answer, /101 Switching Protocols/);
  });
});
