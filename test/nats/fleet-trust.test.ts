// Fleet trust against a real nats-server started with the configuration `switchboard fleet
// init` generates: each attack of issue 22 is a test named after the promise it keeps.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { headers, type Msg } from '@nats-io/transport-node';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { Orchestrator, type OrchestratorOptions } from '../../src/index.js';
import { ALLOW_ALL } from '../../src/testing/index.js';
import { main } from '../../src/cli/main.js';
import { NodeConnection } from '../../src/nats/connection.js';
import { natsTransport, type NatsTransportOptions } from '../../src/nats/index.js';
import { keysFromSeed } from '../../src/nats/keys.js';
import { DIGEST_BODY_HASH, DIGEST_EVERY, Proofs, readRecordedDigest, readRecordedProof } from '../../src/nats/proofs.js';
import { SqliteAuditLog } from '../../src/audit/sqlite.js';
import type { PeerDigestEntry } from '../../src/audit/types.js';
import { loadRoster, RosterIndex } from '../../src/nats/roster.js';
import { Subjects } from '../../src/nats/subjects.js';
import { messageLine } from '../../src/nats/wire.js';
import { denials, signedFrame } from '../support/fleet.js';
import { natsBin, natsUrl, skip } from './context.js';
import { startNatsServer, type NatsServer } from './server.js';

if (skip !== '') console.warn(`[nats] fleet-trust.test.ts skipped: ${skip}`);

const quiet = { out: () => {}, err: (l: string) => console.error(l) };
const dir = mkdtempSync(join(tmpdir(), 'switchboard-fleet-'));
const cfg = join(dir, 'fleet');
const seed = (holder: string) => readFileSync(join(cfg, `${holder}.nk`), 'utf8');
const rosterPath = join(cfg, 'roster.json');
const BUS = 'shop';
const FLEET = { dir: cfg, bus: BUS };
const subjects = new Subjects(BUS);
const buses: Orchestrator[] = [];
const conns: NodeConnection[] = [];

afterEach(async () => {
  await Promise.allSettled(buses.splice(0).map((b) => b.close()));
  await Promise.allSettled(conns.splice(0).map((c) => c.close()));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let server: NatsServer;

/** A node of the secure fleet: an Orchestrator over a natsTransport with the roster and its seed. */
async function startNode(node: string, options: Partial<NatsTransportOptions> = {}, bus: Partial<OrchestratorOptions> = {}): Promise<Orchestrator> {
  const transport = await natsTransport({ servers: server.url, bus: BUS, roster: rosterPath, nkeySeed: seed(node), ...options });
  const o = new Orchestrator({ node, transport, policies: ALLOW_ALL, ...bus });
  buses.push(o);
  return o;
}

/** A raw client with a node's credentials: what a compromised node (or a thief of its seed) can do. */
async function raw(node: string): Promise<NodeConnection> {
  const c = await NodeConnection.open({ servers: server.url, inboxPrefix: subjects.inboxPrefix(node), nkeySeed: seed(node) });
  conns.push(c);
  return c;
}

describe.skipIf(skip !== '')('a fleet built by `switchboard fleet init` on a nats-server with its auth.conf', () => {
  beforeAll(async () => {
    const file = join(dir, 'fleet.json');
    writeFileSync(file, JSON.stringify({ bus: BUS, nodes: { n1: ['alice', 'carol', 'dave'], n2: ['bob', 'chat-*'], n3: ['erin'] }, operators: ['op'] }));
    expect(main(['fleet', 'init', file, '--out', cfg], quiet)).toBe(0);
    server = await startNatsServer(natsBin, { extraConfig: readFileSync(join(cfg, 'auth.conf'), 'utf8') });
    expect(await main(['fleet', 'bucket', '--servers', server.url, '--creds', join(cfg, 'op.nk'), '--roster', rosterPath], quiet)).toBe(0);
  });
  afterAll(async () => {
    await server?.dispose();
  });

  it("carries a signed ask and its reply; each log keeps the other node's proof (the ask's on the receiver, the reply's on the sender), which `switchboard verify --roster` checks", async () => {
    const db = join(dir, `n2-proof-${Date.now()}.db`);
    const db1 = join(dir, `n1-proof-${Date.now()}.db`);
    const n1 = await startNode('n1', {}, { audit: { path: db1 } });
    const n2 = await startNode('n2', {}, { audit: { path: db } });
    n2.register('bob', { handlers: { echo: (p) => ({ echo: p }) } });
    const alice = n1.register('alice');
    await Promise.all([n1.ready(), n2.ready()]);
    await expect(alice.ask('bob', 'echo', { x: 1 })).resolves.toEqual({ echo: { x: 1 } });
    const receipt = n2.getMessageLog({ agentId: 'bob' }).find((e) => e.type === 'ask')!;
    expect(receipt).toMatchObject({ from: 'alice', node: 'n2', peerNode: 'n1', decision: 'allowed' });
    expect(JSON.parse(receipt.proof!)).toMatchObject({ node: 'n1', key: loadRoster(rosterPath).nodes.n1!.signingKey });
    expect(receipt.unverified).toBeUndefined();
    const reply = n1.getMessageLog({ agentId: 'alice' }).find((e) => e.type === 'reply')!;
    expect(JSON.parse(reply.proof!)).toMatchObject({ node: 'n2', key: loadRoster(rosterPath).nodes.n2!.signingKey });
    await n2.close();
    await n1.close();
    const out: string[] = [];
    const cli = (roster: string, file = db) => main(['verify', file, '--roster', roster], { out: (l) => out.push(l), err: (l) => out.push(l) });
    expect(cli(rosterPath, db1)).toBe(0);
    expect(out.join('\n')).toMatch(/ok: 1 peer proof verified/);
    out.length = 0;
    expect(cli(rosterPath)).toBe(0);
    expect(out.join('\n')).toMatch(/ok: 1 peer proof verified against the roster of bus "shop"/);
    // Another fleet's roster (same node names, other keys) does not vouch for it.
    const other = join(dir, 'other');
    expect(main(['fleet', 'init', join(dir, 'fleet.json'), '--out', other], quiet)).toBe(0);
    out.length = 0;
    expect(cli(join(other, 'roster.json'))).toBe(1);
    expect(out.join('\n')).toMatch(/bad: seq \d+ \(message \S+ from "alice" of node "n1"\): the recorded key of node "n1" is not its roster key/);
  });

  it('refuses to start a node given another node\'s seed, naming both keys and nodes (not "JetStream enabled?")', async () => {
    const roster = loadRoster(rosterPath);
    const transport = await natsTransport({ servers: server.url, bus: BUS, roster: rosterPath, nkeySeed: seed('n2') });
    let error: unknown;
    try {
      new Orchestrator({ node: 'n1', transport, policies: ALLOW_ALL });
    } catch (e) {
      error = e;
    }
    await transport.close();
    expect(error).toMatchObject({ code: 'INVALID_ARGUMENT' });
    const message = (error as Error).message;
    expect(message).toContain(roster.nodes.n2!.signingKey);
    expect(message).toContain(roster.nodes.n1!.signingKey);
    expect(message).toMatch(/node "n1" was given the seed of key \S+ \(node "n2" in the roster\)/);
  });

  it("refuses to claim an agent outside the node's roster entry: ready() rejects naming the entry", async () => {
    const n1 = await startNode('n1');
    n1.register('bob');
    await expect(n1.ready()).rejects.toMatchObject({ code: 'POLICY_DENIED', message: expect.stringMatching(/node "n1" may not serve agent "bob": its roster entry lists \["alice","carol","dave"\]/) });
  });

  it("keeps every claim when a node publishes a rollup on its own claim key (the bucket denies rollups)", async () => {
    const n1 = await startNode('n1');
    const n2 = await startNode('n2');
    n2.register('bob', { handlers: { echo: () => 'ok' } });
    const alice = n1.register('alice');
    await Promise.all([n1.ready(), n2.ready()]);
    const attacker = await raw('n1');
    const h = headers();
    h.set('Nats-Rollup', 'all');
    await expect(jetstream(attacker.nc).publish(`$KV.${subjects.claimsBucket()}.alice`, '{}', { headers: h })).rejects.toThrow(/rollup/i);
    const kv = await new Kvm(attacker.nc).open(subjects.claimsBucket());
    expect((await kv.get('bob'))?.operation).toBe('PUT');
    await expect(alice.ask('bob', 'echo', {})).resolves.toBe('ok');
  });

  it('`switchboard fleet bucket` leaves a right stream as it is and names what is wrong with another', async () => {
    const out: string[] = [];
    const io = { out: (l: string) => out.push(l), err: (l: string) => out.push(l) };
    expect(await main(['fleet', 'bucket', '--servers', server.url, '--creds', join(cfg, 'op.nk')], io)).toBe(0);
    expect(out.join('\n')).toMatch(/claims bucket of bus "shop" ready/);
    // A roster of another bus whose stream an operator could not have made right: a node-less open server.
    const bus = `wrong${process.pid}`;
    const other = join(dir, 'wrong-roster.json');
    writeFileSync(other, JSON.stringify({ ...loadRoster(rosterPath), bus }));
    const conn = await NodeConnection.open({ servers: natsUrl, inboxPrefix: `${bus}._r.x` });
    conns.push(conn);
    const jsm = await jetstreamManager(conn.nc);
    await jsm.streams.add({ name: `KV_sb_${bus}_agents`, subjects: [`$KV.sb_${bus}_agents.>`], allow_rollup_hdrs: true, deny_purge: false });
    out.length = 0;
    expect(await main(['fleet', 'bucket', '--servers', natsUrl, '--roster', other], io)).toBe(1);
    expect(out.join('\n')).toMatch(/unexpected settings, refused: allow_rollup_hdrs is true .*; deny_purge is false/);
    await jsm.streams.delete(`KV_sb_${bus}_agents`);
  });

  it('never lets a node create, purge or delete the claims stream', async () => {
    const attacker = await raw('n1');
    const jsm = await jetstreamManager(attacker.nc);
    await expect(jsm.streams.add({ name: 'KV_sb_shop_agents', subjects: ['$KV.sb_shop_agents.>', 'shop.in.>'] })).rejects.toThrow(/Permissions Violation/);
    await expect(jsm.streams.purge('KV_sb_shop_agents')).rejects.toThrow(/Permissions Violation/);
    await expect(jsm.streams.delete('KV_sb_shop_agents')).rejects.toThrow(/Permissions Violation/);
  });

  it('ignores a claim that names another node than its signer, and one for an agent outside its signer\'s roster entry', async () => {
    const n1 = await startNode('n1');
    const n2 = await startNode('n2');
    n1.register('alice');
    n2.register('bob');
    await Promise.all([n1.ready(), n2.ready()]);
    // n2 serves `chat-*`, which the broker cannot pin: its credentials may write any claim key.
    const attacker = await raw('n2');
    const kv = await new Kvm(attacker.nc).open(subjects.claimsBucket());
    const keys = keysFromSeed(seed('n2'));
    const claim = (node: string, agent: string) => {
      const body = { v: 2, node, agent, capabilities: [], trust: 9, leaseMs: 60_000, ts: Date.now() };
      const sig = keys.sign(Buffer.from(`sb-claim1\n${BUS}\n${JSON.stringify(body)}`)).toString('base64');
      return JSON.stringify({ ...body, sig });
    };
    await kv.put('carol', claim('n3', 'carol')); // names n3, signed by n2
    await kv.put('dave', claim('n2', 'dave')); // n2's own signature, but dave is n1's in the roster
    const [carol, dave] = [await kv.get('carol'), await kv.get('dave')];
    expect([carol?.operation, dave?.operation]).toEqual(['PUT', 'PUT']);
    // A valid claim written after them: once n1's watch shows it, it has read the forged ones too.
    n2.register('chat-7');
    await n2.ready();
    await vi.waitFor(() => expect(n1.agents().map((a) => a.id)).toContain('chat-7'));
    expect(n1.agents().map((a) => a.id)).not.toContain('carol');
    expect(n1.agents().map((a) => a.id)).not.toContain('dave');
    // n1 may still serve dave: the forged claim is treated as absent and taken over.
    n1.register('dave');
    await expect(n1.ready()).resolves.toBeUndefined();
    await vi.waitFor(() => expect(n2.agents().find((a) => a.id === 'dave')).toMatchObject({ node: 'n1' }));
  });

  it('claims its own agent again when its claim goes missing, instead of reporting it taken over', async () => {
    const n1 = await startNode('n1', { leaseMs: 300 });
    const n2 = await startNode('n2');
    const lost: unknown[] = [];
    n1.events.on('agent:lost', (e) => lost.push(e));
    n1.register('alice', { handlers: { echo: () => 'still here' } });
    const bob = n2.register('bob');
    await Promise.all([n1.ready(), n2.ready()]);
    const kv = await new Kvm((await raw('n2')).nc).open(subjects.claimsBucket());
    const before = (await kv.get('alice'))!.revision;
    await kv.delete('alice');
    await vi.waitFor(async () => {
      const entry = await kv.get('alice');
      expect(entry?.operation).toBe('PUT');
      expect(entry!.revision).toBeGreaterThan(before + 1);
    });
    expect(lost).toEqual([]);
    await expect(n1.ready()).resolves.toBeUndefined();
    await vi.waitFor(() => expect(n2.agents().find((a) => a.id === 'alice')).toMatchObject({ node: 'n1' }));
    await expect(bob.ask('alice', 'echo', {})).resolves.toBe('still here');
  });

  it("refuses a message signed by a node that the roster does not let speak for its sender: denied and recorded, never delivered or answered", async () => {
    const n1 = await startNode('n1');
    const calls: unknown[] = [];
    n1.register('alice', { handlers: { echo: (p) => calls.push(p) } });
    n1.register('carol');
    await n1.ready();
    const denied = denials(n1);
    const attacker = await raw('n2');
    // n2 signs, with its own key, a message from carol (n1's agent) to alice.
    const forged = signedFrame(FLEET, 'n2', 'alice', 'carol');
    await expect(attacker.nc.request(forged.subject, forged.data, { timeout: 500 })).rejects.toThrow(/timeout/i);
    // An unsigned frame (an insecure node's) is refused the same way.
    await expect(attacker.nc.request(subjects.inbound('alice', 'chat-1', 'ask'), Buffer.from('p n2 - -\nsb2 m m1 echo 1 c - 0 normal 5000 - - n2\n{}'), { timeout: 500 })).rejects.toThrow(/timeout/i);
    // A frame that says n1 made it, signed with n2's key: the signature does not verify under n1's.
    const impostor = signedFrame(FLEET, 'n2', 'alice', 'carol');
    const renamed = Buffer.concat([Buffer.from('p n1'), Buffer.from(impostor.data).subarray('p n2'.length)]);
    await expect(attacker.nc.request(impostor.subject, renamed, { timeout: 500 })).rejects.toThrow(/timeout/i);
    await vi.waitFor(() => expect(denied).toHaveLength(3));
    expect(denied[0]).toMatchObject({ code: 'POLICY_DENIED', reason: expect.stringMatching(/node "n2" signed a ask from "carol", but the roster does not let it serve "carol"/) });
    expect(denied[1]!.reason).toMatch(/without a signature/);
    expect(denied[2]!.reason).toMatch(/the signature of node "n1" does not verify under its roster key/);
    expect(calls).toEqual([]);
    expect(n1.getMessageLog({ agentId: 'alice', decision: 'denied' }).length).toBe(3);
  });

  it('refuses a replayed message within the freshness window and a stale one signed long ago', async () => {
    const n1 = await startNode('n1');
    const n2 = await startNode('n2');
    const calls: unknown[] = [];
    n2.register('bob', { handlers: { pay: (p) => (calls.push(p), 'paid') } });
    const alice = n1.register('alice');
    await Promise.all([n1.ready(), n2.ready()]);
    // n2's credentials (a `chat-*` node) may read every inbound subject: capture alice's ask.
    const spy = await raw('n2');
    const captured: Msg[] = [];
    spy.nc.subscribe(subjects.inbound('bob', 'alice', 'ask'), { callback: (_e, m) => void captured.push(m) });
    await spy.nc.flush();
    await expect(alice.ask('bob', 'pay', { amount: 10 })).resolves.toBe('paid');
    await vi.waitFor(() => expect(captured).toHaveLength(1));
    const denied = denials(n2);
    spy.nc.publish(captured[0]!.subject, captured[0]!.data);
    // Signed with n1's key (a stolen capture) but ten minutes old.
    const stale = signedFrame(FLEET, 'n1', 'bob', 'alice', { intent: 'pay', ts: Date.now() - 10 * 60_000 });
    spy.nc.publish(stale.subject, stale.data);
    await vi.waitFor(() => expect(denied).toHaveLength(2));
    expect(denied.map((d) => d.reason).join('\n')).toMatch(/admitted already \(a replay\)[\s\S]*more than 120000 ms from this node's clock/);
    expect(calls).toHaveLength(1);
  });

  it('refuses a message captured before the receiver restarted (the ids it admitted are read back from its log)', async () => {
    const db = join(dir, `n2-${Date.now()}.db`);
    const n1 = await startNode('n1');
    let n2 = await startNode('n2', {}, { audit: { path: db } });
    const calls: unknown[] = [];
    n2.register('bob', { handlers: { pay: (p) => (calls.push(p), 'paid') } });
    const alice = n1.register('alice');
    await Promise.all([n1.ready(), n2.ready()]);
    const spy = await raw('n2');
    const captured: Msg[] = [];
    spy.nc.subscribe(subjects.inbound('bob', 'alice', 'ask'), { callback: (_e, m) => void captured.push(m) });
    await spy.nc.flush();
    await expect(alice.ask('bob', 'pay', { amount: 10 })).resolves.toBe('paid');
    await vi.waitFor(() => expect(captured).toHaveLength(1));
    await n2.close();
    n2 = await startNode('n2', {}, { audit: { path: db } });
    n2.register('bob', { handlers: { pay: (p) => (calls.push(p), 'paid again') } });
    await n2.ready();
    const denied = denials(n2);
    spy.nc.publish(captured[0]!.subject, captured[0]!.data);
    await vi.waitFor(() => expect(denied).toHaveLength(1));
    expect(denied[0]!.reason).toMatch(/admitted already \(a replay\)/);
    expect(calls).toHaveLength(1);
  });

  it("seals payloads and replies for the recipient node: a reader of the subject sees only ciphertext, both logs hash the plaintext", async () => {
    const n1 = await startNode('n1', { seal: 'always' });
    const n2 = await startNode('n2', { seal: 'always' });
    n2.register('bob', { handlers: { pay: (p) => ({ ok: true, card: (p as { card: string }).card.slice(-4) }) } });
    const alice = n1.register('alice');
    await Promise.all([n1.ready(), n2.ready()]);
    const spy = await raw('n2');
    const captured: Msg[] = [];
    spy.nc.subscribe(subjects.inbound('bob', 'alice', 'ask'), { callback: (_e, m) => void captured.push(m) });
    await spy.nc.flush();
    await expect(alice.ask('bob', 'pay', { card: '4111111111111111' })).resolves.toEqual({ ok: true, card: '1111' });
    await vi.waitFor(() => expect(captured).toHaveLength(1));
    expect(Buffer.from(captured[0]!.data).toString('latin1')).not.toContain('4111111111111111');
    const sent = n1.getMessageLog({ agentId: 'alice' }).find((e) => e.type === 'ask')!;
    const got = n2.getMessageLog({ agentId: 'bob' }).find((e) => e.type === 'ask')!;
    expect(got.payloadHash).toBe(sent.payloadHash);
    // An unsealed (but signed) frame is refused by a node that requires sealing.
    const denied = denials(n2);
    const plain = signedFrame(FLEET, 'n1', 'bob', 'alice', { intent: 'pay' }, '{"card":"4000"}');
    spy.nc.publish(plain.subject, plain.data);
    await vi.waitFor(() => expect(denied).toHaveLength(1));
    expect(denied[0]!.reason).toMatch(/unsealed frame/);
  });

  it("authenticates with a MAC under the pair's agreed key when proof: 'mac', and refuses a MAC made with another pair's key", async () => {
    const db = join(dir, `n2-mac-${Date.now()}.db`);
    const n1 = await startNode('n1', { proof: 'mac' });
    const n2 = await startNode('n2', {}, { audit: { path: db } });
    n2.register('bob', { handlers: { pay: () => 'paid' } });
    const alice = n1.register('alice');
    await Promise.all([n1.ready(), n2.ready()]);
    await expect(alice.ask('bob', 'pay', {})).resolves.toBe('paid');
    expect(JSON.parse(n2.getMessageLog({ agentId: 'bob' }).find((e) => e.type === 'ask')!.proof!)).toMatchObject({ node: 'n1', sig: expect.stringMatching(/^m\./) });
    // n3's key with n2, presented as n1's.
    const roster = new RosterIndex(loadRoster(rosterPath));
    const n3 = new Proofs({ bus: BUS, node: 'n3', roster, keys: keysFromSeed(seed('n3')), proof: 'mac' });
    const subject = subjects.inbound('bob', 'alice', 'ask');
    const line = messageLine({ id: 'mmac-1', intent: 'pay', ts: Date.now(), conversationId: 'c', depth: 0, priority: 'normal', budgetMs: 5000, node: 'n1' });
    const framed = Buffer.from(n3.wrap(subject, line, '{}', 'n2', false));
    const denied = denials(n2);
    (await raw('n2')).nc.publish(subject, Buffer.concat([Buffer.from('p n1'), framed.subarray('p n3'.length)]));
    await vi.waitFor(() => expect(denied).toHaveLength(1));
    expect(denied[0]!.reason).toMatch(/the MAC of node "n1" does not verify/);
    await n2.close();
    const out: string[] = [];
    expect(main(['verify', db, '--roster', rosterPath], { out: (l) => out.push(l), err: (l) => out.push(l) })).toBe(0);
    expect(out.join('\n')).toMatch(/1 authenticated by a MAC, provable to this fleet only/);
  });

  /** The digest records of the log at `db` (read as `switchboard verify` does: a read-only connection to the file). */
  function digestsIn(db: string): PeerDigestEntry[] {
    const log = new SqliteAuditLog({ path: db, readonly: true });
    try {
      return log.peerDigests({ limit: 10_000 });
    } finally {
      log.close();
    }
  }

  /** The MAC'd rows of `rows` that no signed row among them nor any digest record lists, checked as `verify --roster` does. */
  function uncovered(rows: ReadonlyArray<{ proof?: string; payloadHash: string }>, digests: readonly PeerDigestEntry[]): number {
    const roster = new RosterIndex(loadRoster(rosterPath));
    const covers = new Set<string>();
    const macs: string[] = [];
    for (const r of rows) {
      if (r.proof === undefined) continue;
      const read = readRecordedProof(r.proof, r.payloadHash, BUS, roster);
      if (read.kind === 'mac') macs.push(`${read.node}\0${read.cover}`);
      else if (read.kind === 'signed') for (const c of read.covers) covers.add(`${read.node}\0${c}`);
    }
    for (const d of digests) {
      const read = readRecordedDigest(d.proof, d.payloadHash, d.digestId, d.peerNode, BUS, roster);
      if (read.kind === 'signed') for (const c of read.covers) covers.add(`${read.node}\0${c}`);
    }
    return macs.filter((m) => !covers.has(m)).length;
  }

  it("with proof: 'digest', MACs routine frames, signs one in DIGEST_EVERY listing their covers, and sends the covers no signed frame listed within DIGEST_MS in a signed digest frame, recorded as a digest record: on a quiet log `switchboard verify --roster` proves every row, and refuses altered covers", async () => {
    const db = join(dir, `n2-digest-${Date.now()}.db`);
    const db1 = join(dir, `n1-digest-${Date.now()}.db`);
    const n1 = await startNode('n1', { proof: 'digest' }, { audit: { path: db1 }, limits: { rate: false } });
    const n2 = await startNode('n2', { proof: 'digest' }, { audit: { path: db }, limits: { rate: false } });
    n2.register('bob', { handlers: { echo: (p) => p } });
    const alice = n1.register('alice');
    await Promise.all([n1.ready(), n2.ready()]);
    // A burst: most frames go out within DIGEST_MS of a signed one, so they are MAC'd.
    const asks = 2 * DIGEST_EVERY + 5;
    await Promise.all(Array.from({ length: asks }, (_, i) => expect(alice.ask('bob', 'echo', i)).resolves.toBe(i)));
    // Then nothing: DIGEST_MS later n1 sends the covers still pending, and n2 records them.
    await vi.waitFor(() => expect(uncovered(n2.getMessageLog({ agentId: 'bob', limit: 1000 }), digestsIn(db))).toBe(0), { timeout: 5000, interval: 20 });
    // Likewise the replies in n1's log, covered by n2's signed frames and digest frames.
    await vi.waitFor(() => expect(uncovered(n1.getMessageLog({ agentId: 'alice', limit: 1000 }), digestsIn(db1))).toBe(0), { timeout: 5000, interval: 20 });
    expect(digestsIn(db1).every((d) => d.peerNode === 'n2' && d.node === 'n1')).toBe(true);
    expect(n1.getMessageLog({ limit: 1000 })).toHaveLength(2 * asks);
    const rows = n2.getMessageLog({ agentId: 'bob', limit: 1000 }).filter((e) => e.proof !== undefined);
    const proofs = rows.map((e) => JSON.parse(e.proof!) as { sig: string; covers?: string });
    const macs = proofs.filter((p) => p.sig.startsWith('m.')).length;
    expect(macs).toBeGreaterThan(0);
    expect(proofs.every((p) => p.covers === undefined || p.covers.split('.').length <= DIGEST_EVERY)).toBe(true);
    const digests = digestsIn(db);
    expect(digests.length).toBeGreaterThan(0);
    for (const d of digests) {
      expect(d).toMatchObject({ node: 'n2', peerNode: 'n1', payloadHash: DIGEST_BODY_HASH });
      expect(JSON.parse(d.proof)).toMatchObject({ node: 'n1', covers: expect.stringMatching(/^c\./), line: expect.stringContaining(` d ${d.digestId} `) });
    }
    // No agent sent a digest: n2's message log holds the asks received and the replies sent, nothing else.
    expect(rows).toHaveLength(asks);
    expect(n2.getMessageLog({ limit: 1000 })).toHaveLength(2 * asks);
    expect(n2.getMessageLog({ limit: 1000 }).every((e) => (e.type === 'ask' && e.from === 'alice') || (e.type === 'reply' && e.from === 'bob'))).toBe(true);
    await n2.close();
    await n1.close();
    const out: string[] = [];
    expect(main(['verify', db, '--roster', rosterPath], { out: (l) => out.push(l), err: (l) => out.push(l) })).toBe(0);
    expect(out.join('\n')).toContain(`ok: ${rows.length} peer proofs verified against the roster of bus "shop", and ${digests.length} signed digest record${digests.length === 1 ? '' : 's'}`);
    expect(out.join('\n')).toContain(`(${macs} of them MAC'd and covered by a signed digest)`);
    expect(out.join('\n')).not.toContain('provable to this fleet only');
    out.length = 0;
    expect(main(['verify', db1, '--roster', rosterPath], { out: (l) => out.push(l), err: (l) => out.push(l) })).toBe(0);
    expect(out.join('\n')).toContain(`ok: ${asks} peer proofs verified`);
    expect(out.join('\n')).not.toContain('provable to this fleet only');
    // A cover changed in a digest record: its signature no longer holds.
    const roster = new RosterIndex(loadRoster(rosterPath));
    const last = digests[digests.length - 1]!;
    const proof = JSON.parse(last.proof) as { covers: string };
    const altered = JSON.stringify({ ...proof, covers: `${proof.covers.slice(0, -1)}${proof.covers.endsWith('A') ? 'B' : 'A'}` });
    expect(readRecordedDigest(last.proof, last.payloadHash, last.digestId, 'n1', BUS, roster).kind).toBe('signed');
    expect(readRecordedDigest(altered, last.payloadHash, last.digestId, 'n1', BUS, roster)).toEqual({ kind: 'bad', why: 'the signature of node "n1" does not verify' });
    // A digest record written by whoever can write the file (chained, so `verify` alone passes), its proof
    // copied from a real one under another id: --roster refuses it, naming the record.
    const writer = new SqliteAuditLog({ path: db });
    writer.append([{ kind: 'digest', ts: Date.now(), digestId: 'dforged.1', payloadHash: last.payloadHash, node: 'n2', peerNode: 'n1', proof: last.proof }]);
    const forgedSeq = writer.head().seq;
    writer.close();
    out.length = 0;
    expect(main(['verify', db], { out: (l) => out.push(l), err: (l) => out.push(l) })).toBe(0);
    out.length = 0;
    expect(main(['verify', db, '--roster', rosterPath], { out: (l) => out.push(l), err: (l) => out.push(l) })).toBe(1);
    expect(out.join('\n')).toContain(`bad: seq ${forgedSeq} (digest dforged.1 of node "n1"): the signed line is not that of digest "dforged.1"`);
  });

  it("with proof: 'digest', close() sends the covers still pending before the connection drains", async () => {
    const db = join(dir, `n2-close-${Date.now()}.db`);
    const n1 = await startNode('n1', { proof: 'digest' }, { limits: { rate: false } });
    const n2 = await startNode('n2', { proof: 'digest' }, { audit: { path: db }, limits: { rate: false } });
    n2.register('bob', { handlers: { echo: (p) => p } });
    const alice = n1.register('alice');
    await Promise.all([n1.ready(), n2.ready()]);
    // The first frame to a peer is signed, the second (sent in the same turn) MAC'd; then n1 closes at once.
    await Promise.all([expect(alice.ask('bob', 'echo', 1)).resolves.toBe(1), expect(alice.ask('bob', 'echo', 2)).resolves.toBe(2)]);
    await n1.close();
    const log = () => n2.getMessageLog({ agentId: 'bob', limit: 100 });
    expect(log().filter((e) => e.type === 'ask' && JSON.parse(e.proof!).sig.startsWith('m.'))).toHaveLength(1);
    await vi.waitFor(() => expect(uncovered(log(), digestsIn(db))).toBe(0), { timeout: 2000, interval: 10 });
    expect(digestsIn(db)).toHaveLength(1);
  });

  it("refuses a peer's flood of valid digest frames beyond twice the rate an honest node sends them", async () => {
    const db = join(dir, `n2-flood-${Date.now()}.db`);
    const n2 = await startNode('n2', {}, { audit: { path: db }, limits: { rate: false } });
    n2.register('bob', { handlers: { echo: (p) => p } });
    await n2.ready();
    const denied = denials(n2);
    // n1's key, as a compromised n1 would use it: 60 distinct, fresh, validly signed digest frames at once.
    const n1 = new Proofs({ bus: BUS, node: 'n1', roster: new RosterIndex(loadRoster(rosterPath)), keys: keysFromSeed(seed('n1')), proof: 'digest' });
    const subject = subjects.inbound('bob', 'alice', 'ask');
    const route = subjects.inbound('bob', 'alice', 'digest');
    const line = (i: number) => messageLine({ id: `mflood-${i}`, intent: 'echo', ts: Date.now(), conversationId: 'c', depth: 0, priority: 'normal', budgetMs: 5000, node: 'n1' });
    n1.wrap(subject, line(0), '{}', 'n2', false, route);
    const pub = await raw('n1');
    for (let i = 1; i <= 60; i++) {
      n1.wrap(subject, line(i), '{}', 'n2', false, route);
      const [frame] = n1.digests();
      pub.nc.publish(frame!.subject, frame!.data);
    }
    await vi.waitFor(() => expect(digestsIn(db).length + denied.length).toBe(60));
    const taken = digestsIn(db).length;
    expect(taken).toBeGreaterThanOrEqual(8);
    expect(taken).toBeLessThan(60);
    expect(denied.every((d) => /node "n1" sent more than 20 digest frames a second \(burst 8\)/.test(d.reason))).toBe(true);
  });

  it('refuses a digest frame replayed or with its covers altered, and records it once', async () => {
    const db = join(dir, `n2-replay-${Date.now()}.db`);
    const n1 = await startNode('n1', { proof: 'digest' }, { limits: { rate: false } });
    const n2 = await startNode('n2', { proof: 'digest' }, { audit: { path: db }, limits: { rate: false } });
    n2.register('bob', { handlers: { echo: (p) => p } });
    const alice = n1.register('alice');
    await Promise.all([n1.ready(), n2.ready()]);
    const spy = await raw('n2');
    const captured: Msg[] = [];
    spy.nc.subscribe(subjects.inbound('bob', 'alice', 'digest'), { callback: (_e, m) => void captured.push(m) });
    await spy.nc.flush();
    // The first ask to a peer is signed; the next ones within DIGEST_MS are MAC'd and left for a digest.
    await Promise.all(Array.from({ length: 5 }, (_, i) => expect(alice.ask('bob', 'echo', i)).resolves.toBe(i)));
    await vi.waitFor(() => expect(captured).toHaveLength(1), { timeout: 5000, interval: 20 });
    await vi.waitFor(() => expect(digestsIn(db)).toHaveLength(1), { timeout: 5000, interval: 20 });
    const denied = denials(n2);
    const pub = await raw('n1');
    const frame = Buffer.from(captured[0]!.data);
    pub.nc.publish(captured[0]!.subject, frame);
    await vi.waitFor(() => expect(denied).toHaveLength(1));
    expect(denied[0]!.reason).toMatch(/digest d[0-9a-z.]+ refused: .*was taken already \(a replay\)/);
    // One byte of the covers changed: the signature fails before anything is recorded.
    const text = frame.toString('latin1');
    const at = text.indexOf(' c.') + 4;
    pub.nc.publish(captured[0]!.subject, Buffer.from(`${text.slice(0, at)}${text[at] === 'A' ? 'B' : 'A'}${text.slice(at + 1)}`, 'latin1'));
    await vi.waitFor(() => expect(denied).toHaveLength(2));
    expect(denied[1]!.reason).toMatch(/the signature of node "n1" does not verify/);
    expect(digestsIn(db)).toHaveLength(1);
    // Neither the digest nor its refused copies is a message: bob's log holds the five asks and replies.
    expect(n2.getMessageLog({ agentId: 'bob' }).filter((e) => e.decision === 'allowed')).toHaveLength(10);
  });

  it('refuses a digest frame captured before the receiver restarted (the digest records of its log are read back at open)', async () => {
    const db = join(dir, `n2-digest-restart-${Date.now()}.db`);
    const n1 = await startNode('n1', { proof: 'digest' }, { limits: { rate: false } });
    let n2 = await startNode('n2', { proof: 'digest' }, { audit: { path: db }, limits: { rate: false } });
    n2.register('bob', { handlers: { echo: (p) => p } });
    const alice = n1.register('alice');
    await Promise.all([n1.ready(), n2.ready()]);
    const spy = await raw('n2');
    const captured: Msg[] = [];
    spy.nc.subscribe(subjects.inbound('bob', 'alice', 'digest'), { callback: (_e, m) => void captured.push(m) });
    await spy.nc.flush();
    await Promise.all(Array.from({ length: 5 }, (_, i) => expect(alice.ask('bob', 'echo', i)).resolves.toBe(i)));
    await vi.waitFor(() => expect(digestsIn(db)).toHaveLength(1), { timeout: 5000, interval: 20 });
    expect(captured).toHaveLength(1);
    await n2.close();
    n2 = await startNode('n2', { proof: 'digest' }, { audit: { path: db }, limits: { rate: false } });
    n2.register('bob', { handlers: { echo: (p) => p } });
    await n2.ready();
    const denied = denials(n2);
    (await raw('n1')).nc.publish(captured[0]!.subject, captured[0]!.data);
    await vi.waitFor(() => expect(denied).toHaveLength(1));
    expect(denied[0]!.reason).toMatch(/digest d[0-9a-z.]+ refused: .*was taken already \(a replay\)/);
    expect(digestsIn(db)).toHaveLength(1);
  });

  it('seals what a `sealed: true` rule allows, and the receiving node refuses such a message unsealed', async () => {
    const policies = [{ from: 'alice', to: 'bob', allow: ['ask' as const], sealed: true }];
    const n1 = await startNode('n1', {}, { policies });
    const n2 = await startNode('n2', {}, { policies });
    n2.register('bob', { handlers: { pay: () => 'paid' } });
    const alice = n1.register('alice');
    await Promise.all([n1.ready(), n2.ready()]);
    const spy = await raw('n2');
    const captured: Msg[] = [];
    spy.nc.subscribe(subjects.inbound('bob', 'alice', 'ask'), { callback: (_e, m) => void captured.push(m) });
    await spy.nc.flush();
    await expect(alice.ask('bob', 'pay', { card: '4111111111111111' })).resolves.toBe('paid');
    await vi.waitFor(() => expect(captured).toHaveLength(1));
    expect(Buffer.from(captured[0]!.data).toString('latin1')).not.toContain('4111111111111111');
    const denied = denials(n2);
    const plain = signedFrame(FLEET, 'n1', 'bob', 'alice', { intent: 'pay' }, '{"card":"4000"}');
    await expect(spy.nc.request(plain.subject, plain.data, { timeout: 5000 })).resolves.toBeDefined();
    await vi.waitFor(() => expect(denied).toHaveLength(1));
    expect(denied[0]).toMatchObject({ code: 'POLICY_DENIED', reason: expect.stringMatching(/sealed' requires sealing, and this message from node n1 arrived unsealed/) });
  });
});

describe.skipIf(skip !== '')('natsTransport on an open server', () => {
  it('refuses to start without a roster unless insecure: true, which warns once', async () => {
    await expect(natsTransport({ servers: natsUrl, bus: 'open' })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/no roster given/) });
    const warn = vi.spyOn(process, 'emitWarning').mockImplementation(() => {});
    try {
      const a = await natsTransport({ servers: natsUrl, bus: 'open', insecure: true });
      const b = await natsTransport({ servers: natsUrl, bus: 'open', insecure: true });
      await Promise.all([a.close(), b.close()]);
      const ours = warn.mock.calls.filter((c) => (c[1] as { code?: string } | undefined)?.code === 'SWITCHBOARD_INSECURE_FLEET');
      expect(ours).toHaveLength(1);
    } finally {
      warn.mockRestore();
    }
  });

  it('marks every cross-node entry of an insecure fleet unverified, on both nodes', async () => {
    const bus = `open${process.pid}`;
    const n1 = new Orchestrator({ node: 'n1', transport: await natsTransport({ servers: natsUrl, bus, insecure: true }), policies: ALLOW_ALL });
    const n2 = new Orchestrator({ node: 'n2', transport: await natsTransport({ servers: natsUrl, bus, insecure: true }), policies: ALLOW_ALL });
    buses.push(n1, n2);
    n2.register('bob', { handlers: { echo: () => 'ok' } });
    const alice = n1.register('alice');
    await Promise.all([n1.ready(), n2.ready()]);
    await expect(alice.ask('bob', 'echo', {})).resolves.toBe('ok');
    for (const entry of [...n1.getMessageLog(), ...n2.getMessageLog()]) {
      expect(entry.unverified).toBe(true);
      expect(entry.proof).toBeUndefined();
    }
    expect(n2.getMessageLog()).not.toHaveLength(0);
  });

  it('refuses a claims stream made beforehand with an extra subject, naming it', async () => {
    const bus = `evil${process.pid}`;
    const conn = await NodeConnection.open({ servers: natsUrl, inboxPrefix: `${bus}._r.x` });
    conns.push(conn);
    const jsm = await jetstreamManager(conn.nc);
    await jsm.streams.add({ name: `KV_sb_${bus}_agents`, subjects: [`$KV.sb_${bus}_agents.>`, `${bus}.in.>`], allow_rollup_hdrs: true });
    const node = new Orchestrator({ node: 'n1', transport: await natsTransport({ servers: natsUrl, bus, insecure: true }), policies: ALLOW_ALL });
    buses.push(node);
    await expect(node.ready()).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      message: expect.stringMatching(new RegExp(`subjects .*${bus}\\.in\\.>.*allow_rollup_hdrs is true`)),
    });
    await jsm.streams.delete(`KV_sb_${bus}_agents`);
  });
});
