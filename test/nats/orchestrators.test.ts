// Two Orchestrators joined by natsTransport over a real nats-server: the pipeline and the
// NATS transport together, end to end.
import { afterEach, describe, expect, it } from 'vitest';
import { Claims } from '../../src/nats/claims.js';
import { NodeConnection } from '../../src/nats/connection.js';
import { natsTransport } from '../../src/nats/index.js';
import { Subjects } from '../../src/nats/subjects.js';
import { decodeAnswer, encodeMessage } from '../../src/nats/wire.js';
import { closeBuses, makeBus } from '../support/helpers.js';
import { natsUrl, skip } from './context.js';

if (skip !== '') console.warn(`[nats] orchestrators.test.ts skipped: ${skip}`);

afterEach(closeBuses);
let seq = 0;

async function twoNodes() {
  const bus = `ob${process.pid}x${seq++}`;
  const n1 = makeBus({ node: 'n1', transport: await natsTransport({ servers: natsUrl, bus, insecure: true }) });
  const n2 = makeBus({ node: 'n2', transport: await natsTransport({ servers: natsUrl, bus, insecure: true }) });
  return { n1, n2, bus };
}

describe.skipIf(skip !== '')('two Orchestrators over natsTransport', () => {
  it('answers an ask across nodes, including a reentrant one (n1 → n2 → n1)', async () => {
    const { n1, n2 } = await twoNodes();
    n2.register('b', {
      handlers: {
        echo: (p) => ({ echoed: p }),
        back: async (_p, ctx) => ({ via: await ctx.ask('a', 'hello', {}) }),
      },
    });
    const a = n1.register('a', { handlers: { hello: () => 'hi from a' } });
    await Promise.all([n1.ready(), n2.ready()]);
    await expect(a.ask('b', 'echo', { x: 1 })).resolves.toEqual({ echoed: { x: 1 } });
    await expect(a.ask('b', 'back', {})).resolves.toEqual({ via: 'hi from a' });
  });

  it("refuses a payload that is not JSON at the receiving node's pipeline with INVALID_PAYLOAD, audited there, never delivered", async () => {
    const { n1, n2, bus } = await twoNodes();
    const calls: unknown[] = [];
    n2.register('b', { handlers: { echo: (p) => calls.push(p) } });
    n1.register('a');
    await Promise.all([n1.ready(), n2.ready()]);
    // Hand-published as a's node would (an open server): the wire passes the text, the pipeline parses it.
    const subjects = new Subjects(bus);
    const conn = await NodeConnection.open({ servers: natsUrl, inboxPrefix: subjects.inboxPrefix('raw') });
    try {
      const frame = encodeMessage({ id: 'mraw-1', intent: 'echo', ts: Date.now(), conversationId: 'c', depth: 0, priority: 'normal', budgetMs: 5000, node: 'n1' }, '{not json');
      const answer = await conn.nc.request(subjects.inbound('b', 'a', 'ask'), Buffer.concat([Buffer.from('p n1 - -\n'), frame]), { timeout: 5000 });
      expect(decodeAnswer(answer.data.subarray(answer.data.indexOf(0x0a) + 1), 1024)).toMatchObject({ kind: 'error', id: 'mraw-1', error: { code: 'INVALID_PAYLOAD' } });
    } finally {
      await conn.close();
    }
    expect(calls).toHaveLength(0);
    await n2.flush();
    expect(n2.getMessageLog({ agentId: 'b', decision: 'denied' })[0]).toMatchObject({ code: 'INVALID_PAYLOAD', node: 'n2', peerNode: 'n1' });
  });

  it('fails an ask to an id no node serves with UNKNOWN_AGENT', async () => {
    const { n1, n2 } = await twoNodes();
    const a = n1.register('a');
    await Promise.all([n1.ready(), n2.ready()]);
    await expect(a.ask('ghost', 'echo', {}, { timeoutMs: 60_000 })).rejects.toMatchObject({ code: 'UNKNOWN_AGENT' });
  });

  it("carries a delegate's progress and result, and a broadcast notify reaches the other node's agent", async () => {
    const { n1, n2 } = await twoNodes();
    let sawProgress!: () => void;
    const progressed = new Promise<void>((r) => (sawProgress = r));
    const notified: unknown[] = [];
    let gotNotify!: () => void;
    const notifyArrived = new Promise<void>((r) => (gotNotify = r));
    n2.register('b', {
      handlers: {
        work: async (_p, ctx) => {
          ctx.progress(0.5, 'half');
          await progressed;
          return 'done';
        },
        note: (p) => {
          notified.push(p);
          gotNotify();
        },
      },
    });
    const a = n1.register('a');
    await Promise.all([n1.ready(), n2.ready()]);
    const job = a.delegate('b', 'work', {});
    const progress: Array<{ fraction: number; note?: string }> = [];
    job.onProgress((report) => {
      progress.push(report);
      sawProgress();
    });
    await expect(job).resolves.toBe('done');
    expect(progress).toEqual([{ fraction: 0.5, note: 'half' }]);
    const receipt = await a.notify('note', { n: 1 });
    expect(receipt).toMatchObject({ delivered: ['b'] });
    await notifyArrived;
    expect(notified).toEqual([{ n: 1 }]);
  });

  it('delivers a notify to each of several agents of one remote node, and its receipt lists each as delivered', async () => {
    const { n1, n2 } = await twoNodes();
    const got: string[] = [];
    let arrived!: () => void;
    const both = new Promise<void>((r) => (arrived = r));
    for (const id of ['b', 'c', 'd']) {
      n2.register(id, {
        handlers: {
          note: () => {
            got.push(id);
            if (got.length === 3) arrived();
          },
        },
      });
    }
    const a = n1.register('a');
    await Promise.all([n1.ready(), n2.ready()]);
    const failed: unknown[] = [];
    n1.events.on('message:failed', (e) => failed.push(e));
    const listed = await a.notify('note', { n: 1 }, { to: ['b', 'c', 'd'] });
    expect(listed).toMatchObject({ delivered: ['b', 'c', 'd'], failed: [], denied: [], pending: [] });
    const broadcast = await a.notify('note', { n: 2 });
    expect([...broadcast.delivered].sort()).toEqual(['b', 'c', 'd']);
    await both;
    expect(failed).toEqual([]);
  });

  it("holds at the sender's node a message its own rule holds, carries it once approved there, and the receiver's rule decides again", async () => {
    const bus = `ob${process.pid}x${seq++}`;
    const hold = [{ from: 'a', to: 'b', allow: ['ask' as const], requireApproval: true }];
    const n1 = makeBus({ node: 'n1', policies: hold, transport: await natsTransport({ servers: natsUrl, bus, insecure: true }) });
    const n2 = makeBus({ node: 'n2', policies: [{ from: 'a', to: 'b', allow: ['ask'] }], transport: await natsTransport({ servers: natsUrl, bus, insecure: true }) });
    const paid: unknown[] = [];
    n2.register('b', { handlers: { pay: (p) => (paid.push(p), 'paid') } });
    const a = n1.register('a');
    await Promise.all([n1.ready(), n2.ready()]);
    const answer = a.ask('b', 'pay', { amount: 5 });
    // Held at once, before anything was published.
    const held = n1.approvals.list();
    expect(held).toHaveLength(1);
    expect(paid).toEqual([]);
    n1.approvals.approve(held[0]!.id);
    await expect(answer).resolves.toBe('paid');
    expect(paid).toEqual([{ amount: 5 }]);
  });

  it('rejects a second node registering a taken id: ready() names the holder', async () => {
    const { n1, n2 } = await twoNodes();
    n1.register('payment');
    await n1.ready();
    try {
      n2.register('payment');
    } catch (e) {
      // The id may already be visible in n2's directory: refused at once.
      expect(e).toMatchObject({ code: 'DUPLICATE_AGENT' });
      return;
    }
    await expect(n2.ready()).rejects.toMatchObject({ code: 'DUPLICATE_AGENT', message: expect.stringContaining('"n1"') });
  });

  it('kills the handle of an agent whose claim another node took over at run time, and says so (agent:lost)', async () => {
    const bus = `ob${process.pid}x${seq++}`;
    const n1 = makeBus({ node: 'n1', transport: await natsTransport({ servers: natsUrl, bus, insecure: true, leaseMs: 300 }) });
    const payment = n1.register('payment');
    await n1.ready();
    const lost = new Promise<{ agentId: string; holder: string }>((resolve) => n1.events.on('agent:lost', resolve));
    // Another node whose clock says n1's lease ran out takes the id over, as after a long pause of n1.
    const subjects = new Subjects(bus);
    const conn = await NodeConnection.open({ servers: natsUrl, inboxPrefix: subjects.inboxPrefix('n3') });
    const taker = await Claims.open({ connection: conn, subjects, node: 'n3', leaseMs: 300, now: () => Date.now() + 10_000 });
    try {
      await taker.claim('payment');
      // n1 finds out at its next renewal (a third of its lease).
      await expect(lost).resolves.toMatchObject({ agentId: 'payment', holder: 'n3' });
      expect(payment.alive).toBe(false);
      await expect(n1.ready()).rejects.toMatchObject({ code: 'DUPLICATE_AGENT', message: expect.stringContaining('"n3"') });
      expect(taker.holds('payment')).toBe(true); // n1 did not release the new holder's claim
    } finally {
      await taker.close();
      await conn.close();
    }
  });
});
