/**
 * Unit cases of the election's rules, each on a real Election (or a small
 * simulated cluster) on a FakeClock.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { ThocError } from "../errors/index.js";
import { FakeClock, seededRandom } from "../core/index.js";
import { Election } from "./election.js";
import { Fence, MemoryFenceStore } from "./fence.js";
import { MemoryElectionStore, type ElectionTransport, type HeartbeatRequest, type PersistedElection } from "./messages.js";
import { ElectionSim, LOCAL_TIMERS } from "./sim.js";

const ET = LOCAL_TIMERS.electionTimeout;

/** Peers that never answer: the node under test can only react to what the test hands it. */
const silent: ElectionTransport = { requestVote: () => new Promise(() => {}), heartbeat: () => new Promise(() => {}) };

const three: PersistedElection = { term: 0, votedFor: "", config: { version: 1, term: 0, voters: ["a", "b", "c"] } };

async function node(store: MemoryElectionStore, clock = new FakeClock(0), id = "a", fence?: Fence) {
  const e = new Election({ id, store, transport: silent, clock, random: seededRandom(1), ...LOCAL_TIMERS, fence });
  await e.start();
  // A freshly started node refuses votes for one election timeout (see start()).
  await clock.advance(ET);
  return { e, clock };
}

const vote = (term: number, candidateId: string, configVersion = 1, configTerm = 0) => ({ term, candidateId, configVersion, configTerm });
const hb = (term: number, leaderId: string, voters = ["a", "b", "c"], version = 1, configTerm = 0): HeartbeatRequest =>
  ({ term, leaderId, config: { version, term: configTerm, voters }, configCommitted: true });

function isCode(code: string, re?: RegExp) {
  return (err: unknown) => err instanceof ThocError && err.code === code && (!re || re.test(err.message));
}

test("one vote per term, kept across a restart", async () => {
  const store = new MemoryElectionStore(three);
  const { e, clock } = await node(store);
  assert.equal((await e.handleVote(vote(1, "b"))).granted, true);
  assert.deepEqual([store.state?.term, store.state?.votedFor], [1, "b"]);
  const second = await e.handleVote(vote(1, "c"));
  assert.equal(second.granted, false);
  assert.match(second.reason ?? "", /already voted for b in term 1/);
  e.stop();
  const again = await node(store, clock);
  assert.equal((await again.e.handleVote(vote(1, "c"))).granted, false, "a restart must not free the vote");
  assert.equal((await again.e.handleVote(vote(1, "b"))).granted, true, "the same candidate may ask again (a lost reply)");
  assert.equal((await again.e.handleVote(vote(2, "c"))).granted, true, "a new term frees the vote");
  again.e.stop();
  // The vote within the current term is saved too, not only the new term.
  const inTerm = new MemoryElectionStore({ ...three, term: 4 });
  const x = await node(inTerm);
  assert.equal((await x.e.handleVote(vote(4, "c"))).granted, true);
  assert.deepEqual([inTerm.state?.term, inTerm.state?.votedFor], [4, "c"]);
  x.e.stop();
});

test("a stale term is refused", async () => {
  const { e } = await node(new MemoryElectionStore({ ...three, term: 3 }));
  const r = await e.handleVote(vote(2, "b"));
  assert.deepEqual([r.granted, r.term], [false, 3]);
  assert.match(r.reason ?? "", /stale term 2/);
  assert.deepEqual(await e.handleHeartbeat(hb(2, "b")), { term: 3, success: false, configVersion: 1 });
  e.stop();
});

test("no vote while a live leader is heard, and the term stays (pre-vote too)", async () => {
  const store = new MemoryElectionStore(three);
  const { e, clock } = await node(store);
  assert.equal((await e.handleHeartbeat(hb(1, "b"))).success, true);
  await clock.advance(ET / 2);
  for (const preVote of [false, true]) {
    const r = await e.handleVote({ ...vote(2, "c"), preVote });
    assert.equal(r.granted, false);
    assert.match(r.reason ?? "", /heard from leader b/);
  }
  assert.equal(e.status().term, 1, "a refused vote must not raise the term (it would depose the live leader)");
  assert.equal(store.state?.term, 1);
  await clock.advance(ET / 2);
  assert.equal((await e.handleVote(vote(2, "c"))).granted, true, "once the leader is silent for a timeout, vote");
  e.stop();
});

test("only a candidate whose config is at least as up to date gets the vote", async () => {
  const { e } = await node(new MemoryElectionStore({ term: 2, votedFor: "", config: { version: 3, term: 2, voters: ["a", "b", "c"] } }));
  const older = await e.handleVote(vote(3, "b", 5, 1));
  assert.equal(older.granted, false, "a higher version from an older term is older");
  assert.match(older.reason ?? "", /older than this node's/);
  assert.equal((await e.handleVote(vote(3, "b", 2, 2))).granted, false, "a lower version of the same term is older");
  assert.equal(e.status().term, 3, "the term still follows the request");
  assert.equal((await e.handleVote(vote(3, "c", 3, 2))).granted, true);
  e.stop();
});

test("absurd input is refused with invalid_argument and changes nothing", async () => {
  const store = new MemoryElectionStore(three);
  const { e } = await node(store);
  await e.handleHeartbeat(hb(4, "b"));
  const saves = store.saves;
  const before = JSON.stringify(e.status());
  const bad: [string, Promise<unknown>][] = [
    ["term far ahead", e.handleVote(vote(4 + 1e9 + 1, "c"))],
    ["negative term", e.handleVote(vote(-1, "c"))],
    ["fractional term", e.handleVote(vote(5.5, "c"))],
    ["NaN term", e.handleHeartbeat(hb(NaN, "c"))],
    ["empty candidate", e.handleVote(vote(5, ""))],
    ["empty leader", e.handleHeartbeat(hb(5, ""))],
    ["duplicate voters", e.handleHeartbeat(hb(5, "b", ["a", "b", "b"], 2, 5))],
    ["empty voter", e.handleHeartbeat(hb(5, "b", ["a", ""], 2, 5))],
    ["config from a future term", e.handleHeartbeat(hb(5, "b", ["a", "b"], 2, 6))],
    ["bad config version", e.handleVote({ ...vote(5, "c"), configVersion: -2 })],
  ];
  for (const [what, p] of bad) await assert.rejects(p, isCode("invalid_argument"), what);
  assert.equal(store.saves, saves);
  assert.equal(JSON.stringify(e.status()), before);
  e.stop();
});

test("a node without a config observes: it never campaigns, and learns config and leader from heartbeats", async () => {
  const store = new MemoryElectionStore();
  const fence = await Fence.open(new MemoryFenceStore());
  const { e, clock } = await node(store, new FakeClock(0), "d", fence);
  await clock.advance(20 * ET);
  assert.deepEqual([e.status().role, e.status().term, store.saves], ["observer", 0, 0]);
  assert.equal((await e.handleHeartbeat(hb(7, "b", ["a", "b", "c"], 4, 7))).success, true);
  assert.deepEqual([e.status().role, e.status().leader, store.state?.term, store.state?.config.version], ["observer", "b", 7, 4]);
  assert.equal(fence.highestTerm, 7, "the election feeds the terms it sees into the node's fence");
  await e.handleHeartbeat(hb(7, "b", ["b", "c", "d"], 5, 7));
  assert.equal(e.status().role, "follower", "a config that contains this node makes it a voter at once");
  e.stop();
  await assert.rejects(e.handleHeartbeat(hb(7, "b")), isCode("unavailable", /stopped/));
});

test("a voter change while another is pending is refused, and so is a voter that does not answer", async () => {
  const sim = new ElectionSim({ n: 3, seed: 5, maxVoters: 1 });
  await sim.start("n0", true);
  await sim.run(3 * ET, 10, () => sim.acting().length === 1 && sim.node("n0").election!.status().configCommitted);
  const leader = sim.node("n0").election!;
  assert.equal(leader.status().configCommitted, true);
  await assert.rejects(leader.addVoter("n1"), isCode("failed_precondition", /n1 has not answered the leader's heartbeats/));
  await sim.start("n1");
  await sim.start("n2");
  await sim.run(ET);
  const first = leader.addVoter("n1");
  await assert.rejects(leader.addVoter("n2"), isCode("failed_precondition", /voter-set change \(version 3 \(term 1\): n0, n1\) is still pending/));
  await assert.rejects(leader.removeVoter("n1"), isCode("failed_precondition", /still pending/));
  await sim.run(3 * ET, 10, () => leader.status().configCommitted);
  await first;
  assert.deepEqual(leader.status().config.voters, ["n0", "n1"]);
  await assert.rejects(sim.node("n1").election!.addVoter("n2"), isCode("failed_precondition", /only on the leader/));
  // A pending change fails with the leadership: both others die before acking it.
  const second = leader.addVoter("n2");
  second.catch(() => undefined);
  sim.crash("n1");
  sim.crash("n2");
  await sim.run(3 * ET);
  await assert.rejects(second, isCode("unavailable", /lost the scheduler leadership/));
  for (const id of sim.ids()) sim.crash(id);
});

test("the leader grows the voters to 3, removes one on request, and refuses to remove the last", async () => {
  const sim = new ElectionSim({ n: 3, seed: 9, maxVoters: 3 });
  for (const id of sim.ids()) await sim.start(id, id === "n0");
  await sim.run(20 * ET, 10, () => sim.latestCommitted()?.voters.length === 3);
  assert.deepEqual(sim.latestCommitted()?.voters, ["n0", "n1", "n2"]);
  const leader = sim.node(sim.acting()[0]!).election!;
  const other = leader.status().config.voters.find((v) => v !== leader.id)!;
  sim.crash(other); // removal must work with the removed node down
  const removed = leader.removeVoter(other);
  await sim.run(3 * ET, 10, () => leader.status().configCommitted);
  await removed;
  assert.equal(leader.status().config.voters.length, 2);
  assert.deepEqual(sim.violations, []);
  for (const id of sim.ids()) sim.crash(id);
  const solo = new ElectionSim({ n: 1, seed: 1 });
  await solo.start("n0", true);
  await solo.run(3 * ET, 10, () => solo.node("n0").election!.status().configCommitted);
  await assert.rejects(solo.node("n0").election!.removeVoter("n0"), isCode("failed_precondition", /last voter/));
  solo.crash("n0");
});

test("non-voters hear every few heartbeats, still twice per election timeout, and stay with the leader", async () => {
  const sim = new ElectionSim({ n: 5, seed: 4, maxVoters: 3, loss: 0 });
  for (const id of sim.ids()) await sim.start(id, id === "n0");
  await sim.run(20 * ET, 10, () => sim.latestCommitted()?.voters.length === 3);
  const voters = sim.latestCommitted()!.voters;
  const leader = sim.acting()[0]!;
  const observers = sim.ids().filter((id) => !voters.includes(id));
  assert.equal(observers.length, 2);
  sim.heartbeatsTo.clear();
  await sim.run(20 * ET, 10, () => false);
  const every = Math.floor(ET / (2 * LOCAL_TIMERS.heartbeatInterval));
  for (const v of voters.filter((x) => x !== leader)) assert.ok(sim.heartbeatsTo.get(v)! >= 20 * ET / LOCAL_TIMERS.heartbeatInterval - 2, `voter ${v}: a beat every interval`);
  for (const o of observers) {
    const got = sim.heartbeatsTo.get(o) ?? 0;
    assert.ok(got <= Math.ceil(20 * ET / LOCAL_TIMERS.heartbeatInterval / every) + 1, `observer ${o}: one beat in ${every} (${got} beats)`);
    assert.ok(got >= 2 * 20 - 2, `observer ${o}: at least twice per election timeout (${got})`);
    assert.equal(sim.node(o).election!.status().leader, leader, "the observer still names the leader");
  }
  assert.equal(sim.acting().length, 1);
  assert.deepEqual(sim.violations, []);
  for (const id of sim.ids()) sim.crash(id);
});

test("fence() works while the lease holds and stops as soon as it lapses", async () => {
  const sim = new ElectionSim({ n: 3, seed: 3, maxVoters: 3 });
  for (const id of sim.ids()) await sim.start(id, id === "n0");
  await sim.run(20 * ET, 10, () => sim.latestCommitted()?.voters.length === 3 && sim.acting().length === 1);
  const id = sim.acting()[0]!;
  const leader = sim.node(id).election!;
  assert.equal(leader.fence(), leader.status().term);
  sim.partition([[id]]);
  const t0 = sim.clock.now();
  await sim.run(ET, 1, () => !leader.isActing());
  const lapsed = sim.clock.now() - t0;
  assert.ok(lapsed <= LOCAL_TIMERS.leaseDuration, `the lease outlived its duration: ${lapsed} ms`);
  assert.equal(leader.status().role, "leader", "still leader (check-quorum has not run), but not acting");
  assert.throws(() => leader.fence(), isCode("unavailable", /lease lost: a majority of voters has not answered within 240 ms/));
  await sim.run(2 * ET);
  assert.throws(() => leader.fence(), isCode("unavailable", /not the leader/));
  for (const n of sim.ids()) sim.crash(n);
});

test("Fence refuses a lower term, durably across a reopen", async () => {
  const store = new MemoryFenceStore();
  const f = await Fence.open(store);
  await f.accept(5, "place vm-1");
  await f.accept(5, "place vm-2");
  await assert.rejects(f.accept(4, "place vm-3"), isCode("aborted", /stale leader term 4: this node has seen term 5; the command \(place vm-3\) came from a deposed leader/));
  assert.equal(store.highest, 5, "saved before accept resolved");
  const g = await Fence.open(store);
  await assert.rejects(g.accept(4, "place vm-3"), isCode("aborted"));
  await g.observe(8);
  await assert.rejects(g.accept(7, "x"), isCode("aborted", /seen term 8/));
  await assert.rejects(g.accept(8 + 1e9 + 1, "x"), isCode("invalid_argument"));
  await assert.rejects(g.accept(-1, "x"), isCode("invalid_argument"));
  assert.equal((await Fence.open(store)).highestTerm, 8);
});

test("an idle follower sets fewer timers than it hears heartbeats, and still stands once the heartbeats stop", async () => {
  const clock = new FakeClock(0);
  let timers = 0;
  const counting = { now: () => clock.now(), after: (ms: number, fn: () => void) => { timers++; return clock.after(ms, fn); } };
  let asked = 0;
  const transport: ElectionTransport = { requestVote: () => { asked++; return new Promise(() => {}); }, heartbeat: () => new Promise(() => {}) };
  const e = new Election({ id: "a", store: new MemoryElectionStore(three), transport, clock: counting, random: seededRandom(1), ...LOCAL_TIMERS, probeLeader: async () => "alive" });
  await e.start();
  await clock.advance(ET);
  await e.handleHeartbeat(hb(1, "b"));
  const before = timers;
  for (let i = 0; i < 50; i++) {
    await clock.advance(LOCAL_TIMERS.heartbeatInterval);
    await e.handleHeartbeat(hb(1, "b"));
  }
  // A pending timer re-arms when it fires before its (moved) deadline: the election timer about once per
  // timeout, the leader probe once per 1.5-2.5 heartbeats; re-arming on every heartbeat set two per heartbeat.
  assert.ok(timers - before <= 40, `${timers - before} timers set for 50 heartbeats`);
  assert.equal(asked, 0, "no election while the leader's heartbeats arrive");
  await clock.advance(2 * ET + 10);
  assert.ok(asked > 0, "the follower stood for election once the heartbeats stopped");
  e.stop();
});
