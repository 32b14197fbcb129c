/**
 * The pure parts of the engine adapter, for the answers real podman in the
 * other tests never gives: Docker's messages and event shapes, frames split
 * anywhere, runtime URIs.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { engineError, portInUse } from "./docker-errors.js";
import { parseRuntimeUri } from "./docker-info.js";
import { statsOf, toEvent } from "./docker-parse.js";
import { Demuxer } from "./docker-stream.js";

test("engineError: Docker's statuses and messages, podman's 500s, socket errors", () => {
  const e = (statusCode: number, message: string) => engineError({ statusCode, json: { message } }, "container x", "unix:///s");
  assert.equal(e(409, 'Conflict. The container name "/thoc-a" is already in use by container "abc".').code, "already_exists");
  assert.equal(e(409, "Container abc is not running").code, "failed_precondition");
  assert.equal(e(404, "No such container: x").code, "not_found");
  assert.equal(e(404, "No such image: localhost/x:1").code, "not_found");
  const docker = e(500, "driver failed programming external connectivity on endpoint thoc-a: Bind for 0.0.0.0:8080 failed: port is already allocated");
  assert.deepEqual([docker.code, docker.details.port], ["resource_exhausted", 8080]);
  const podman = e(500, "cannot listen on the TCP port: listen tcp4 :18082: bind: address already in use");
  assert.deepEqual([podman.code, podman.details.port], ["resource_exhausted", 18082]);
  assert.equal(e(500, "can only create exec sessions on running containers: container state improper").code, "failed_precondition");
  assert.equal(e(500, "error setting rlimit type 7: operation not permitted").code, "failed_precondition");
  assert.equal(e(500, "normalizing image: invalid reference format").code, "invalid_argument");
  assert.equal(e(500, "something else").code, "internal");
  for (const errno of ["ECONNREFUSED", "ENOENT", "EACCES"]) {
    const down = engineError(Object.assign(new Error("connect"), { code: errno }), "engine info", "unix:///run/podman/podman.sock");
    assert.equal(down.code, "unavailable");
    assert.match(down.message, /podman\.socket/);
  }
  assert.equal(portInUse("listen udp4 :5353: bind: address already in use"), 5353);
  assert.equal(portInUse("no such image"), undefined);
});

test("Demuxer: frames split at any byte, stdout/stderr apart; TTY output passes through", () => {
  const frame = (k: number, s: string) => Buffer.concat([Buffer.from([k, 0, 0, 0, 0, 0, 0, Buffer.byteLength(s)]), Buffer.from(s)]);
  const all = Buffer.concat([frame(1, "out\n"), frame(2, "err\n"), frame(1, "")]);
  for (let cut = 0; cut <= all.length; cut++) {
    const d = new Demuxer(false);
    const got = [...d.push(all.subarray(0, cut)), ...d.push(all.subarray(cut))].map((c) => `${c.stream}:${String(c.data)}`);
    assert.deepEqual(got, ["stdout:out\n", "stderr:err\n", "stdout:"], `cut at ${cut}`);
  }
  assert.deepEqual(new Demuxer(true).push(Buffer.from("raw")).map((c) => c.stream), ["stdout"]);
});

test("toEvent: Docker's exitCode, podman's containerExitCode only on die; statsOf: Docker's page cache out", () => {
  const docker = toEvent(JSON.stringify({ Type: "container", Action: "die", Actor: { ID: "abc", Attributes: { name: "thoc-a", exitCode: "3" } }, timeNano: 1_700_000_000_123_000_000 }));
  assert.deepEqual(docker, { id: "abc", name: "thoc-a", action: "die", exitCode: 3, timeMs: 1_700_000_000_123 });
  const start = toEvent(JSON.stringify({ Type: "container", Action: "start", Actor: { ID: "abc", Attributes: { name: "thoc-a", containerExitCode: "0" } }, time: 1_700_000_000 }));
  assert.deepEqual(start, { id: "abc", name: "thoc-a", action: "start", timeMs: 1_700_000_000_000 });
  assert.equal(toEvent(JSON.stringify({ Type: "image", Action: "pull" })), undefined);
  assert.equal(toEvent("not json"), undefined);
  const s = statsOf({ cpu_stats: { cpu_usage: { total_usage: 2_500_000_000 } }, memory_stats: { usage: 1000, limit: 5000, stats: { inactive_file: 400 } },
    networks: { eth0: { rx_bytes: 1, tx_bytes: 2 }, eth1: { rx_bytes: 10, tx_bytes: 20 } }, blkio_stats: { io_service_bytes_recursive: [{ op: "read", value: 7 }, { op: "Write", value: 9 }] }, pids_stats: { current: 4 } });
  assert.deepEqual({ ...s, timestampMs: 0 }, { cpuSeconds: 2.5, memoryBytes: 600, memoryLimitBytes: 5000, netRxBytes: 11, netTxBytes: 22, blockReadBytes: 7, blockWriteBytes: 9, pids: 4, timestampMs: 0 });
});

test("parseRuntimeUri: unix and tcp; anything else refused", () => {
  assert.deepEqual(parseRuntimeUri("unix:///run/podman/podman.sock"), { socketPath: "/run/podman/podman.sock" });
  assert.deepEqual(parseRuntimeUri("tcp://127.0.0.1:2375"), { host: "127.0.0.1", port: 2375, protocol: "http" });
  assert.deepEqual(parseRuntimeUri("tcp://[::1]:2375"), { host: "::1", port: 2375, protocol: "http" });
  for (const bad of ["unix://rel/path", "tcp://host", "http://x:1", "tcp://h:1/path", ""]) {
    assert.throws(() => parseRuntimeUri(bad), (e: { code?: string }) => e.code === "invalid_argument", bad);
  }
});
