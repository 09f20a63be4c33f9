import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { BusError } from '../../src/errors.js';
import { NodeConnection } from '../../src/nats/connection.js';
import { Link, type DeadAnswer, type DeniedFrame, type LinkInbound, type RejectedInbound, type LinkResponder } from '../../src/nats/link.js';
import { Subjects } from '../../src/nats/subjects.js';
import { decodeAnswer, encodeAbout, encodeMessage } from '../../src/nats/wire.js';
import { natsBin, natsUrl, skip } from './context.js';
import { startNatsServer, type NatsServer } from './server.js';

if (skip !== '') console.warn(`[nats] link.test.ts skipped: ${skip}`);

let seq = 0;
const bus = () => `t${process.pid}x${seq++}`;

interface Node {
  conn: NodeConnection;
  link: Link;
  dead: DeadAnswer[];
  rejected: RejectedInbound[];
  denied: DeniedFrame[];
  /** Resolves when a dead letter for `id` has arrived. */
  deadFor(id: string): Promise<DeadAnswer>;
}

async function node(url: string, subjects: Subjects, name: string, maxPayloadBytes = 64 * 1024): Promise<Node> {
  const conn = await NodeConnection.open({ servers: url, inboxPrefix: subjects.inboxPrefix(name), name });
  const dead: DeadAnswer[] = [];
  const rejected: RejectedInbound[] = [];
  const denied: DeniedFrame[] = [];
  const waiters = new Map<string, (d: DeadAnswer) => void>();
  const onDead = (d: DeadAnswer) => {
    dead.push(d);
    waiters.get(d.id)?.(d);
  };
  const link = new Link({ connection: conn, subjects, node: name, maxPayloadBytes, dedupeWindow: 100, onDead, onRejected: (r) => rejected.push(r), onDenied: (d) => denied.push(d) });
  const deadFor = (id: string) => {
    const found = dead.find((d) => d.id === id);
    return found !== undefined ? Promise.resolve(found) : new Promise<DeadAnswer>((r) => waiters.set(id, r));
  };
  return { conn, link, dead, rejected, denied, deadFor };
}

/** A frame as an insecure fleet's node sends it: an unsigned proof line, then the frame. */
const unsigned = (node: string, frame: Uint8Array) => Buffer.concat([Buffer.from(`p ${node} - -\n`), frame]);
/** The frame inside an answer (its proof line dropped). */
const inner = (data: Uint8Array) => data.subarray(data.indexOf(0x0a) + 1);

/** Resolves with the next call of one callback. */
function outcome() {
  let resolve!: (v: { reply?: unknown; error?: BusError }) => void;
  const done = new Promise<{ reply?: unknown; error?: BusError }>((r) => (resolve = r));
  const progress: unknown[] = [];
  let progressed: (() => void) | undefined;
  const progressCount = (count: number) => (progress.length >= count ? Promise.resolve() : new Promise<void>((r) => (progressed = () => progress.length >= count && r())));
  const onProgress = (p: unknown) => {
    progress.push(p);
    progressed?.();
  };
  return { done, progress, progressCount, callbacks: { reply: (json: string) => resolve({ reply: JSON.parse(json) as unknown }), error: (error: BusError) => resolve({ error }), progress: onProgress } };
}

let n = 0;
const msg = (from: string, to: string, type: 'ask' | 'delegate', payload: unknown = { n: 1 }, budgetMs = 5000) => ({
  id: `m${n++}`,
  type,
  from,
  to,
  intent: 'work',
  ts: Date.now(),
  conversationId: 'c1',
  depth: 0,
  priority: 'normal' as const,
  budgetMs,
  payloadJson: JSON.stringify(payload),
});

describe.skipIf(skip !== '')('Link between two nodes', () => {
  let subjects: Subjects;
  let a: Node;
  let b: Node;
  const inbox: Array<{ inbound: LinkInbound; responder: LinkResponder }> = [];
  let nextInbound: ((x: { inbound: LinkInbound; responder: LinkResponder }) => void) | undefined;
  const received = () => new Promise<{ inbound: LinkInbound; responder: LinkResponder }>((r) => (nextInbound = r));

  beforeAll(async () => {
    subjects = new Subjects(bus());
    a = await node(natsUrl, subjects, 'node-a');
    b = await node(natsUrl, subjects, 'node-b', 1024);
    await b.link.serve('worker.1', (inbound, responder) => {
      inbox.push({ inbound, responder });
      nextInbound?.({ inbound, responder });
    });
    await a.link.serve('client:1', () => {});
  });
  afterAll(async () => {
    a.link.close();
    b.link.close();
    await a.conn.close();
    await b.conn.close();
  });
  afterEach(() => {
    inbox.length = 0;
    nextInbound = undefined;
  });

  it('carries an ask with its metadata and brings back the reply', async () => {
    const got = received();
    const o = outcome();
    const m = { ...msg('client:1', 'worker.1', 'ask', { q: 'hi' }), causationId: 'm-prev', depth: 3, priority: 'high' as const };
    a.link.request(m, o.callbacks);
    const { inbound, responder } = await got;
    expect(inbound).toMatchObject({ id: m.id, type: 'ask', from: 'client:1', to: 'worker.1', intent: 'work', payloadJson: '{"q":"hi"}', causationId: 'm-prev', depth: 3, priority: 'high', conversationId: 'c1' });
    expect(inbound.budgetMs).toBeLessThanOrEqual(5000);
    expect(responder.reply('{"a":42}')).toBe(true);
    expect(responder.reply('{"a":43}')).toBe(false);
    expect(await o.done).toEqual({ reply: { a: 42 } });
    expect(a.link.pendingCount).toBe(0);
  });

  it('brings back a peer error as a BusError with its code and message only', async () => {
    const got = received();
    const o = outcome();
    a.link.request(msg('client:1', 'worker.1', 'ask'), o.callbacks);
    (await got).responder.error({ code: 'NO_HANDLER', message: 'worker.1 has no handler for "work"' });
    const { error } = await o.done;
    expect(error).toBeInstanceOf(BusError);
    expect(error).toMatchObject({ code: 'NO_HANDLER', message: 'worker.1 has no handler for "work"' });
  });

  it('carries delegate progress to the sender and a cancel to the receiver signal', async () => {
    const got = received();
    const o = outcome();
    const handle = a.link.request(msg('client:1', 'worker.1', 'delegate'), o.callbacks);
    const { inbound, responder } = await got;
    const aborted = new Promise<unknown>((r) => inbound.signal.addEventListener('abort', () => r(inbound.signal.reason)));
    responder.progress('{"pct":10}');
    responder.progress('{"pct":50}');
    await o.progressCount(2);
    expect(o.progress).toEqual([{ pct: 10 }, { pct: 50 }]);
    handle.cancel('no longer needed');
    expect(await aborted).toMatchObject({ code: 'CANCELLED', reason: 'no longer needed' });
    // The answer after the cancel is a dead letter at the sender, not a settlement.
    responder.reply('"late"');
    expect(await a.deadFor(inbound.id)).toEqual({ id: inbound.id, from: 'client:1', to: 'worker.1', answer: { kind: 'reply', payloadJson: '"late"' } });
  });

  it('carries a notify without a reply subject', async () => {
    const got = received();
    const m = msg('client:1', 'worker.1', 'ask');
    a.link.notify({ ...m, type: 'notify' });
    const { inbound, responder } = await got;
    expect(inbound).toMatchObject({ id: m.id, type: 'notify', from: 'client:1' });
    expect(responder.reply('1')).toBe(false);
  });

  it('times out at the sender and reports the late reply as dead', async () => {
    const got = received();
    const o = outcome();
    const m = msg('client:1', 'worker.1', 'ask', {}, 50);
    a.link.request(m, o.callbacks);
    const { responder, inbound } = await got;
    const { error } = await o.done;
    expect(error).toMatchObject({ code: 'TIMEOUT', messageId: m.id, timeoutMs: 50 });
    // The receiver's own deadline aborts its signal too.
    if (!inbound.signal.aborted) await new Promise((r) => inbound.signal.addEventListener('abort', r));
    expect(inbound.signal.reason).toMatchObject({ code: 'TIMEOUT' });
    responder.reply('{"too":"late"}');
    expect(await a.deadFor(m.id)).toMatchObject({ id: m.id, answer: { kind: 'reply', payloadJson: '{"too":"late"}' } });
  });

  it('fails at once with UNKNOWN_AGENT when no node serves the recipient (no responders)', async () => {
    const o = outcome();
    a.link.request(msg('client:1', 'nobody', 'ask', {}, 10_000), o.callbacks);
    const { error } = await o.done;
    expect(error).toMatchObject({ code: 'UNKNOWN_AGENT', agentId: 'nobody' });
  });

  it('drops a repeated message id at the receiver', async () => {
    const m = msg('client:1', 'worker.1', 'ask');
    const first = received();
    a.link.request(m, outcome().callbacks);
    await first;
    // Replay the same id on the wire, then a fresh message: only the fresh one arrives.
    a.conn.nc.publish(subjects.inbound('worker.1', 'client:1', 'ask'), unsigned('node-a', encodeMessage(m, m.payloadJson)));
    const fresh = msg('client:1', 'worker.1', 'ask');
    const second = received();
    a.link.request(fresh, outcome().callbacks);
    expect((await second).inbound.id).toBe(fresh.id);
    expect(inbox.map((x) => x.inbound.id)).toEqual([m.id, fresh.id]);
    expect(b.denied.at(-1)?.error.message).toMatch(/admitted already \(a replay\)/);
  });

  it("refuses a replay of an id it no longer remembers: its node's messages signed at or before that one are refused", async () => {
    // b remembers 100 ids (dedupeWindow): 101 newer notifies push the first out.
    const notify = (id: string, ts: number) => {
      const frame = encodeMessage({ id, intent: 'work', ts, conversationId: 'c1', depth: 0, priority: 'normal' }, '1');
      a.conn.nc.publish(subjects.inbound('worker.1', 'client:1', 'notify'), unsigned('node-a', frame));
    };
    const old = Date.now() - 10_000;
    notify('mfloor-0', old);
    for (let i = 1; i <= 101; i++) notify(`mfloor-${i}`, Date.now());
    await vi.waitFor(() => expect(inbox.length).toBe(102));
    notify('mfloor-0', old);
    notify('mfloor-x', old - 1);
    notify('mfloor-fresh', Date.now());
    await vi.waitFor(() => expect(inbox.at(-1)?.inbound.id).toBe('mfloor-fresh'));
    expect(inbox).toHaveLength(103);
    expect(b.denied.slice(-2).map((d) => d.error.message)).toEqual([
      expect.stringMatching(/mfloor-0 refused: it was signed at or before the newest message of node "node-a" this node no longer remembers/),
      expect.stringMatching(/mfloor-x refused: it was signed at or before/),
    ]);
  });

  it('answers a payload over the receiver limit with PAYLOAD_TOO_LARGE instead of delivering it', async () => {
    const o = outcome();
    a.link.request(msg('client:1', 'worker.1', 'ask', 'x'.repeat(2000)), o.callbacks);
    expect((await o.done).error).toMatchObject({ code: 'PAYLOAD_TOO_LARGE' });
    expect(inbox).toHaveLength(0);
  });

  it('answers a malformed request with an error instead of leaving its sender to time out', async () => {
    const m = msg('client:1', 'worker.1', 'ask');
    const frame = Buffer.from(encodeMessage(m, m.payloadJson)).toString('utf8').replace(' 0 normal ', ' -5 normal ');
    const answer = await a.conn.nc.request(subjects.inbound('worker.1', 'client:1', 'ask'), unsigned('node-a', Buffer.from(frame)), { timeout: 5000 });
    expect(decodeAnswer(inner(answer.data), 1024)).toMatchObject({ kind: 'error', id: m.id, error: { code: 'INVALID_ARGUMENT', message: expect.stringContaining('field depth') } });
    expect(inbox).toHaveLength(0);
    expect(b.rejected.at(-1)?.error.code).toBe('INVALID_ARGUMENT');
  });

  it('ignores progress for a delegate from anyone but its recipient', async () => {
    const got = received();
    const o = outcome();
    const m = msg('client:1', 'worker.1', 'delegate');
    a.link.request(m, o.callbacks);
    const { responder } = await got;
    // Another agent (served on node b's connection, which here is unrestricted) claims to report progress.
    b.conn.nc.publish(subjects.inbound('client:1', 'someone-else', 'progress'), unsigned('node-b', encodeAbout(m.id, '{"pct":99}')));
    responder.progress('{"pct":1}');
    await o.progressCount(1);
    responder.reply('null');
    await o.done;
    expect(o.progress).toEqual([{ pct: 1 }]);
  });

  it('refuses requests past maxInbound unanswered ones with MAILBOX_FULL', async () => {
    const c = await node(natsUrl, subjects, 'node-c');
    const d = await node(natsUrl, subjects, 'node-d');
    const small = new Link({ connection: d.conn, subjects, node: 'node-d2', maxPayloadBytes: 1024, maxInbound: 1 });
    let first!: () => void;
    const arrived = new Promise<void>((r) => (first = r));
    await small.serve('busy', () => first());
    c.link.request(msg('client:4', 'busy', 'ask'), outcome().callbacks);
    await arrived;
    const o = outcome();
    c.link.request(msg('client:4', 'busy', 'ask'), o.callbacks);
    expect((await o.done).error).toMatchObject({ code: 'MAILBOX_FULL' });
    for (const x of [c, d]) x.link.close();
    small.close();
    await c.conn.close();
    await d.conn.close();
  });

  it('refuses a send after close with CLOSED and fails what was in flight', async () => {
    const c = await node(natsUrl, subjects, 'node-c');
    const o = outcome();
    c.link.request(msg('client:3', 'worker.1', 'ask', {}, 10_000), o.callbacks);
    c.link.close();
    expect((await o.done).error).toMatchObject({ code: 'CLOSED' });
    expect(() => c.link.notify({ ...msg('client:3', 'worker.1', 'ask'), type: 'notify' })).toThrow(expect.objectContaining({ code: 'CLOSED' }));
    await c.conn.close();
  });
});

describe.skipIf(skip !== '')('Link when the broker stops', () => {
  let server: NatsServer;
  beforeAll(async () => {
    server = await startNatsServer(natsBin);
  });
  afterAll(async () => {
    await server.dispose();
  });

  it('fails sends at once with TRANSPORT_UNAVAILABLE while down, and carries them again after reconnecting', async () => {
    const subjects = new Subjects(bus());
    const a = await node(server.url, subjects, 'na');
    const b = await node(server.url, subjects, 'nb');
    await b.link.serve('w', (_i, r) => r.reply('"pong"'));
    const down = new Promise<void>((r) => a.conn.onChange((up) => !up && r()));
    await server.stop();
    await down;
    expect(a.conn.up).toBe(false);
    expect(() => a.link.request(msg('c', 'w', 'ask'), outcome().callbacks)).toThrow(expect.objectContaining({ code: 'TRANSPORT_UNAVAILABLE' }));

    const upA = new Promise<void>((r) => a.conn.onChange((up) => up && r()));
    const upB = new Promise<void>((r) => b.conn.onChange((up) => up && r()));
    await server.restart();
    await Promise.all([upA, upB]);
    await b.conn.nc.flush();
    const o = outcome();
    a.link.request(msg('c', 'w', 'ask'), o.callbacks);
    expect(await o.done).toEqual({ reply: 'pong' });
    a.link.close();
    b.link.close();
    await a.conn.close();
    await b.conn.close();
  });

  it('rejects connecting to a server that is not there with TRANSPORT_UNAVAILABLE', async () => {
    await expect(NodeConnection.open({ servers: 'nats://127.0.0.1:1', inboxPrefix: 'x._r.y', connectTimeoutMs: 500 })).rejects.toMatchObject({ code: 'TRANSPORT_UNAVAILABLE' });
  });
});
