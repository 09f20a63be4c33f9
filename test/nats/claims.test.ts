import { afterEach, describe, expect, it } from 'vitest';
import { Claims } from '../../src/nats/claims.js';
import { NodeConnection } from '../../src/nats/connection.js';
import { Subjects } from '../../src/nats/subjects.js';
import { natsUrl, natsVersion, skip } from './context.js';

if (skip !== '') console.warn(`[nats] claims.test.ts skipped: ${skip}`);

let seq = 0;
const opened: Array<() => Promise<void>> = [];

async function node(subjects: Subjects, name: string, extra: { leaseMs?: number; now?: () => number; onLost?: (a: string, h: string) => void } = {}) {
  const conn = await NodeConnection.open({ servers: natsUrl, inboxPrefix: subjects.inboxPrefix(name) });
  const claims = await Claims.open({ connection: conn, subjects, node: name, ...extra }).catch(async (e: unknown) => {
    await conn.close();
    throw e;
  });
  opened.push(async () => {
    await claims.close();
    await conn.close();
  });
  return claims;
}

afterEach(async () => {
  for (const close of opened.splice(0)) await close();
});

describe.skipIf(skip !== '')(`Claims (nats-server ${natsVersion})`, () => {
  it('claims an id once bus-wide: a second node gets DUPLICATE_AGENT naming the holder', async () => {
    const subjects = new Subjects(`c${process.pid}x${seq++}`);
    const one = await node(subjects, 'node-1');
    const two = await node(subjects, 'node-2');
    await one.claim('svc.billing:1', { capabilities: ['pay'], trust: 2 });
    await expect(two.claim('svc.billing:1')).rejects.toMatchObject({ code: 'DUPLICATE_AGENT', agentId: 'svc.billing:1', message: expect.stringContaining('"node-1"') });
    expect(one.holds('svc.billing:1')).toBe(true);
  });

  it('lists every live claim of every node with its capabilities, trust and node', async () => {
    const subjects = new Subjects(`c${process.pid}x${seq++}`);
    const one = await node(subjects, 'node-1');
    const two = await node(subjects, 'node-2');
    await one.claim('a', { capabilities: ['x'], trust: 1 });
    await two.claim('b', { capabilities: [], trust: 3 });
    const expected = [
      { agent: 'a', node: 'node-1', capabilities: ['x'], trust: 1 },
      { agent: 'b', node: 'node-2', capabilities: [], trust: 3 },
    ];
    expect(await one.list()).toEqual(expected);
    expect(await two.list()).toEqual(expected);
  });

  it('frees an id on release so another node can claim it', async () => {
    const subjects = new Subjects(`c${process.pid}x${seq++}`);
    const one = await node(subjects, 'node-1');
    const two = await node(subjects, 'node-2');
    await one.claim('a');
    await one.release('a');
    expect(await two.list()).toEqual([]);
    await two.claim('a');
    expect((await one.list()).map((c) => c.node)).toEqual(['node-2']);
  });

  it("lets another node take over a dead node's claim after its lease, and not before", async () => {
    const subjects = new Subjects(`c${process.pid}x${seq++}`);
    let now = Date.now();
    const dead = await node(subjects, 'node-dead', { leaseMs: 1000 });
    await dead.claim('a');
    dead.abandon(); // stops renewing, as a SIGKILLed node would
    const taker = await node(subjects, 'node-2', { leaseMs: 1000, now: () => now });
    await expect(taker.claim('a')).rejects.toMatchObject({ code: 'DUPLICATE_AGENT' });
    now += 1500; // the lease ran out
    expect(await taker.list()).toEqual([]);
    await taker.claim('a');
    expect(taker.holds('a')).toBe(true);
  });

  it('reports a claim lost when another node took it while this one missed its renewals', async () => {
    const subjects = new Subjects(`c${process.pid}x${seq++}`);
    const lost: Array<[string, string]> = [];
    let now = Date.now();
    const slow = await node(subjects, 'node-slow', { leaseMs: 1000, onLost: (a, h) => lost.push([a, h]) });
    await slow.claim('a');
    const taker = await node(subjects, 'node-2', { leaseMs: 1000, now: () => (now += 2000) });
    await taker.claim('a');
    await slow.renew();
    expect(lost).toEqual([['a', 'node-2']]);
    expect(slow.holds('a')).toBe(false);
  });

  it('never reports its own claim lost: renewals do not overlap, and a claim that still names this node is kept', async () => {
    const subjects = new Subjects(`c${process.pid}x${seq++}`);
    const lost: Array<[string, string]> = [];
    const one = await node(subjects, 'node-1', { onLost: (a, h) => lost.push([a, h]) });
    await one.claim('x');
    await Promise.all([one.renew(), one.renew(), one.renew()]);
    expect(lost).toEqual([]);
    // Another connection of the same node id rewrites the claim (as a write of this node's
    // own whose answer was lost would): the next renewal adopts it instead of reporting a loss.
    const again = await node(subjects, 'node-1');
    await again.claim('x');
    await one.renew();
    await one.renew();
    expect(lost).toEqual([]);
    expect(one.holds('x')).toBe(true);
  });

  it('keeps a synchronous snapshot that follows other nodes claiming and releasing', async () => {
    const subjects = new Subjects(`c${process.pid}x${seq++}`);
    const one = await node(subjects, 'node-1');
    const two = await node(subjects, 'node-2');
    await one.claim('early', { capabilities: ['x'], trust: 1 });
    expect(one.snapshot()).toEqual([]);
    // lookup() reads one claim now, before (or without) the watch.
    expect(await one.lookup('early')).toEqual({ agent: 'early', node: 'node-1', capabilities: ['x'], trust: 1 });
    expect(await one.lookup('nobody')).toBeUndefined();
    expect(one.snapshot().map((c) => c.agent)).toEqual(['early']);
    await two.watch();
    expect(two.snapshot()).toEqual([{ agent: 'early', node: 'node-1', capabilities: ['x'], trust: 1 }]);
    const changed = () => new Promise<void>((r) => {
      const stop = two.onChange(() => {
        stop();
        r();
      });
    });
    let next = changed();
    await one.claim('late');
    await next;
    expect(two.snapshot().map((c) => c.agent)).toEqual(['early', 'late']);
    next = changed();
    await one.release('early');
    await next;
    expect(two.snapshot().map((c) => c.agent)).toEqual(['late']);
  });

  it('rejects a bad lease with INVALID_ARGUMENT', async () => {
    const subjects = new Subjects(`c${process.pid}x${seq++}`);
    await expect(node(subjects, 'n', { leaseMs: 10 })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });
});
