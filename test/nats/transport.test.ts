import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { main } from '../../src/cli/main.js';
import type { Envelope } from '../../src/envelope.js';
import type { ErrorCode } from '../../src/errors.js';
import { NodeConnection } from '../../src/nats/connection.js';
import { natsTransport, type NatsTransportOptions } from '../../src/nats/index.js';
import { Subjects } from '../../src/nats/subjects.js';
import { decodeAnswer, encodeMessage } from '../../src/nats/wire.js';
import type { InboundMessage, OutboundMessage, OutboundSink, Responder, Transport } from '../../src/pipeline/transport.js';
import { natsBin, natsUrl, skip } from './context.js';
import { startNatsServer, type NatsServer } from './server.js';

if (skip !== '') console.warn(`[nats] transport.test.ts skipped: ${skip}`);

let seq = 0;
const newBus = () => `tt${process.pid}x${seq++}`;
const opened: Transport[] = [];

afterEach(async () => {
  await Promise.allSettled(opened.splice(0).map((t) => t.close()));
});

/** A fake InboundPort: records what arrives and lets the test answer it. */
interface Received {
  inbound: InboundMessage;
  responder: Responder;
  /** Resolves with the reason when the transport calls the InboundHandle's cancel. */
  cancelled: Promise<string>;
}

interface TestNode {
  transport: Transport;
  received: Received[];
  /** The next inbound (or one already waiting). */
  next(): Promise<Received>;
}

async function startNode(bus: string, node: string, agents: string[], extra: Partial<NatsTransportOptions> & { url?: string } = {}): Promise<TestNode> {
  const { url = natsUrl, ...rest } = extra;
  const transport = await natsTransport({ servers: url, bus, insecure: true, ...rest });
  opened.push(transport);
  const received: Received[] = [];
  const waiters: Array<(r: Received) => void> = [];
  let taken = 0;
  transport.attach(node, {
    receive(inbound, responder) {
      let cancel!: (reason: string) => void;
      const cancelled = new Promise<string>((r) => (cancel = r));
      const r = { inbound, responder, cancelled };
      received.push(r);
      waiters.shift()?.(r);
      return { cancel };
    },
  });
  for (const id of agents) await transport.claim({ id, node, capabilities: [`cap-${id}`], trust: 2 });
  await transport.ready();
  const next = () => {
    const i = taken++;
    return i < received.length ? Promise.resolve(received[i]!) : new Promise<Received>((r) => waiters.push(r));
  };
  return { transport, received, next };
}

/** A fake OutboundSink recording every call; `done` settles on reply or error. */
function sink() {
  const calls: Array<[string, ...unknown[]]> = [];
  let settle!: (v: { reply?: string; error?: { code: ErrorCode; message: string } }) => void;
  const done = new Promise<{ reply?: string; error?: { code: ErrorCode; message: string } }>((r) => (settle = r));
  let onDead!: (v: { reason: string; payloadJson?: string }) => void;
  const dead = new Promise<{ reason: string; payloadJson?: string }>((r) => (onDead = r));
  let onProgress: (() => void) | undefined;
  const progress: Array<[number, string | undefined]> = [];
  const s: OutboundSink = {
    reply: (payloadJson) => {
      calls.push(['reply', payloadJson]);
      settle({ reply: payloadJson });
    },
    error: (code, message) => {
      calls.push(['error', code, message]);
      settle({ error: { code, message } });
    },
    progress: (fraction, note) => {
      calls.push(['progress', fraction, note]);
      progress.push([fraction, note]);
      onProgress?.();
    },
    dead: (reason, payloadJson) => {
      calls.push(['dead', reason, payloadJson]);
      onDead({ reason, ...(payloadJson === undefined ? {} : { payloadJson }) });
    },
  };
  const progressed = () => (progress.length > 0 ? Promise.resolve() : new Promise<void>((r) => (onProgress = r)));
  return { sink: s, calls, done, dead, progress, progressed };
}

let n = 0;
function out(from: string, to: string, node: string, type: 'ask' | 'delegate' | 'notify' = 'ask', extra: Partial<OutboundMessage> & { payloadJson?: string } = {}): OutboundMessage {
  const envelope = { id: `m${process.pid}-${n++}`, type, from, to, intent: 'work', payload: undefined, ts: Date.now(), conversationId: 'conv-1', causationId: 'm-prev', priority: 'high', depth: 2 } as unknown as Envelope;
  return { envelope, payloadJson: '{"q":"hi"}', budgetMs: type === 'notify' ? undefined : 5000, node, ...extra };
}

describe.skipIf(skip !== '')('natsTransport: directory and claims', () => {
  it("shows another node's claims in locate, nodeOf and remoteAgents, and not its own", async () => {
    const bus = newBus();
    const one = await startNode(bus, 'node-1', ['svc.billing:1', 'a2']);
    const two = await startNode(bus, 'node-2', ['b']);
    expect(two.transport.locate('svc.billing:1')).toBe('remote');
    expect(two.transport.nodeOf('svc.billing:1')).toBe('node-1');
    expect(two.transport.remoteAgents()).toEqual([
      { id: 'a2', node: 'node-1', capabilities: ['cap-a2'], trust: 2 },
      { id: 'svc.billing:1', node: 'node-1', capabilities: ['cap-svc.billing:1'], trust: 2 },
    ]);
    expect(two.transport.locate('b')).toBe('unknown');
    expect(two.transport.locate('nobody')).toBe('unknown');
    expect(two.transport.nodeOf('nobody')).toBeUndefined();
    // A claim made later reaches the peer through its watch, without a call to the bucket.
    await one.transport.claim({ id: 'late', node: 'node-1', capabilities: [], trust: 0 });
    await vi.waitFor(() => expect(two.transport.nodeOf('late')).toBe('node-1'), { timeout: 5000, interval: 10 });
    one.transport.release('late');
    await vi.waitFor(() => expect(two.transport.locate('late')).toBe('unknown'), { timeout: 5000, interval: 10 });
  });

  it('answers remoteAgents with the same frozen empty array when no other node serves an agent', async () => {
    const only = await startNode(newBus(), 'alone', ['x']);
    const first = only.transport.remoteAgents();
    expect(first).toEqual([]);
    expect(only.transport.remoteAgents()).toBe(first);
    expect(Object.isFrozen(first)).toBe(true);
  });

  it('rejects a claim of a live id with DUPLICATE_AGENT naming the holder, and ready() rejects with it', async () => {
    const bus = newBus();
    await startNode(bus, 'node-1', ['payment']);
    const two = await startNode(bus, 'node-2', []);
    await expect(two.transport.claim({ id: 'payment', node: 'node-2', capabilities: [], trust: 0 })).rejects.toMatchObject({
      code: 'DUPLICATE_AGENT',
      message: expect.stringContaining('"node-1"'),
    });
    await expect(two.transport.ready()).rejects.toMatchObject({ code: 'DUPLICATE_AGENT', agentId: 'payment' });
  });

  it("survives a SIGKILLed node: its pending ask ends by the deadline, new ones are UNKNOWN_AGENT, its ids free up after the lease", async () => {
    const bus = newBus();
    const child = spawn(process.execPath, ['--import', 'tsx', join(import.meta.dirname, '..', 'fixtures', 'nats-transport-child.ts'), natsUrl, bus, '1000', 'worker'], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let log = '';
    await new Promise<void>((resolve, reject) => {
      child.stdout!.on('data', (c: Buffer) => {
        log += c.toString();
        if (log.includes('ready')) resolve();
      });
      child.once('exit', (code) => reject(new Error(`child exited (${code}): ${log}`)));
    });
    const peer = await startNode(bus, 'peer', ['asker']);
    expect(peer.transport.nodeOf('worker')).toBe('child');
    await expect(peer.transport.claim({ id: 'worker', node: 'peer', capabilities: [], trust: 0 })).rejects.toMatchObject({ code: 'DUPLICATE_AGENT' });
    // An ask in flight when the child dies ends by its deadline; the next one fails at once.
    const pending = sink();
    const msg = out('asker', 'worker', 'child', 'ask', { budgetMs: 1500 });
    const delivered = new Promise<void>((r) => child.stdout!.on('data', () => log.includes(`got ${msg.envelope.id}`) && r()));
    peer.transport.send(msg, pending.sink);
    await Promise.race([delivered, pending.done.then((r) => Promise.reject(new Error(`the ask ended before the child got it: ${JSON.stringify(r)}`)))]);
    const exited = new Promise((r) => child.once('exit', r));
    process.kill(child.pid!, 'SIGKILL');
    await exited;
    expect((await pending.done).error?.code).toBe('TIMEOUT');
    const after = sink();
    peer.transport.send(out('asker', 'worker', 'child', 'ask', { budgetMs: 60_000 }), after.sink);
    expect((await after.done).error?.code).toBe('UNKNOWN_AGENT');
    await vi.waitFor(() => expect(peer.transport.locate('worker')).toBe('unknown'), { timeout: 5000, interval: 20 });
    await peer.transport.claim({ id: 'worker', node: 'peer', capabilities: [], trust: 0 });
    await peer.transport.ready();
  });

  it('stops receiving for a released id: a send to it is UNKNOWN_AGENT at once', async () => {
    const bus = newBus();
    const one = await startNode(bus, 'node-1', ['client']);
    const two = await startNode(bus, 'node-2', ['gone']);
    two.transport.release('gone');
    await vi.waitFor(() => expect(one.transport.locate('gone')).toBe('unknown'), { timeout: 5000, interval: 10 });
    const s = sink();
    one.transport.send(out('client', 'gone', 'node-2', 'ask', { budgetMs: 60_000 }), s.sink);
    expect((await s.done).error?.code).toBe('UNKNOWN_AGENT');
    expect(two.received).toEqual([]);
  });

  it("close() fails what is in flight with CLOSED and deletes the node's claims at once", async () => {
    const bus = newBus();
    const one = await startNode(bus, 'node-1', ['client']);
    const two = await startNode(bus, 'node-2', ['worker']);
    const got = two.next();
    const s = sink();
    one.transport.send(out('client', 'worker', 'node-2', 'ask', { budgetMs: 60_000 }), s.sink);
    await got;
    await one.transport.close();
    expect((await s.done).error?.code).toBe('CLOSED');
    await vi.waitFor(() => expect(two.transport.locate('client')).toBe('unknown'), { timeout: 5000, interval: 10 });
    const after = sink();
    one.transport.send(out('client', 'worker', 'node-2'), after.sink);
    expect(after.calls).toEqual([['error', 'CLOSED', expect.stringContaining('closed')]]);
    await expect(one.transport.ready()).rejects.toMatchObject({ code: 'CLOSED' });
  });

  it('answers a send before attach with TRANSPORT_UNAVAILABLE, inside send()', async () => {
    const t = await natsTransport({ servers: natsUrl, bus: newBus(), insecure: true });
    opened.push(t);
    const s = sink();
    t.send(out('a', 'b', 'n2'), s.sink);
    expect(s.calls).toEqual([['error', 'TRANSPORT_UNAVAILABLE', expect.stringContaining('not connected')]]);
  });

  it('refuses a bad node id, a second attach, and ready() before attach', async () => {
    const t = await natsTransport({ servers: natsUrl, bus: newBus(), insecure: true });
    opened.push(t);
    await expect(t.ready()).rejects.toMatchObject({ code: 'TRANSPORT_UNAVAILABLE' });
    expect(() => t.attach('bad node', { receive: () => ({ cancel() {} }) })).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    t.attach('n1', { receive: () => ({ cancel() {} }) });
    expect(() => t.attach('n2', { receive: () => ({ cancel() {} }) })).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('"n1"') }));
    await t.ready();
  });

  it('exposes no connection, credentials or internals through the transport object', async () => {
    const target = await natsTransport({ servers: natsUrl, bus: newBus(), insecure: true });
    opened.push(target);
    target.attach('n1', { receive: () => ({ cancel() {} }) });
    await target.ready();
    expect(Object.keys(target)).toEqual([]);
    expect(Object.getOwnPropertyNames(target)).toEqual([]);
    expect(JSON.stringify(target)).toBe('{}');
    const proto = Object.getPrototypeOf(target) as object;
    expect(Object.getOwnPropertyNames(proto).sort()).toEqual(['attach', 'claim', 'close', 'constructor', 'locate', 'nodeOf', 'ready', 'release', 'remoteAgents', 'send', 'unverified'].sort());
  });
});

describe.skipIf(skip !== '')('natsTransport: messages between two nodes', () => {
  let bus: string;
  let one: TestNode;
  let two: TestNode;
  beforeAll(async () => {
    bus = newBus();
    one = await startNode(bus, 'node-1', ['client']);
    two = await startNode(bus, 'node-2', ['worker.1']);
    opened.splice(0); // closed in afterAll, not after each test
  });
  afterAll(async () => {
    await one.transport.close();
    await two.transport.close();
  });

  it('carries an ask with its envelope fields, budget and traceparent, and brings back the reply', async () => {
    const traceparent = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
    const got = two.next();
    const s = sink();
    const msg = out('client', 'worker.1', 'node-2', 'ask', { traceparent });
    one.transport.send(msg, s.sink);
    const { inbound, responder } = await got;
    expect(inbound).toMatchObject({
      id: msg.envelope.id,
      type: 'ask',
      from: 'client',
      fromNode: 'node-1',
      to: 'worker.1',
      intent: 'work',
      payloadJson: '{"q":"hi"}',
      conversationId: 'conv-1',
      causationId: 'm-prev',
      priority: 'high',
      depth: 2,
      traceparent,
    });
    expect(inbound.budgetMs).toBeGreaterThan(0);
    expect(inbound.budgetMs).toBeLessThanOrEqual(5000);
    expect(Object.isFrozen(inbound)).toBe(true);
    responder.reply('{"answer":42}');
    responder.reply('{"answer":43}');
    expect(await s.done).toEqual({ reply: '{"answer":42}' });
    expect(s.calls).toEqual([['reply', '{"answer":42}']]);
  });

  it("maps the receiver's error onto the sink with its code and message", async () => {
    const got = two.next();
    const s = sink();
    one.transport.send(out('client', 'worker.1', 'node-2'), s.sink);
    (await got).responder.error('POLICY_DENIED', 'no rule lets client ask worker.1 for "work"');
    expect(await s.done).toEqual({ error: { code: 'POLICY_DENIED', message: 'no rule lets client ask worker.1 for "work"' } });
  });

  it("carries a delegate's progress to the sender and the sender's cancel to the receiver's InboundHandle", async () => {
    const got = two.next();
    const s = sink();
    const handle = one.transport.send(out('client', 'worker.1', 'node-2', 'delegate'), s.sink);
    const { inbound, responder, cancelled } = await got;
    expect(inbound.type).toBe('delegate');
    responder.progress(0.5, 'half way');
    await s.progressed();
    expect(s.progress).toEqual([[0.5, 'half way']]);
    handle.cancel('user gave up');
    expect(await cancelled).toMatch(/cancelled by its sender "client": user gave up/);
  });

  it('reports a reply that arrives after the TIMEOUT at the sender as dead, with its payload', async () => {
    const got = two.next();
    const s = sink();
    one.transport.send(out('client', 'worker.1', 'node-2', 'ask', { budgetMs: 200 }), s.sink);
    const { responder } = await got;
    expect((await s.done).error?.code).toBe('TIMEOUT');
    responder.reply('"too late"');
    const dead = await s.dead;
    expect(dead).toMatchObject({ payloadJson: '"too late"', reason: expect.stringContaining('after the request ended') });
  });

  it("carries a notify without a budget and brings back the receiver's one acknowledgement", async () => {
    const got = two.next();
    const s = sink();
    const msg = out('client', 'worker.1', 'node-2', 'notify');
    one.transport.send(msg, s.sink);
    const { inbound, responder } = await got;
    expect(inbound).toMatchObject({ id: msg.envelope.id, type: 'notify', fromNode: 'node-1', payloadJson: '{"q":"hi"}' });
    expect(inbound.budgetMs).toBeUndefined();
    expect(s.calls).toEqual([]);
    responder.reply('{"notify":"delivered"}');
    responder.error('HANDLER_FAILED', 'a second answer');
    expect(await s.done).toEqual({ reply: '{"notify":"delivered"}' });
    expect(s.calls).toEqual([['reply', '{"notify":"delivered"}']]);
  });

  it('fails a notify to an id no node serves with UNKNOWN_AGENT at once', async () => {
    const s = sink();
    one.transport.send(out('client', 'ghost', 'node-2', 'notify'), s.sink);
    expect((await s.done).error?.code).toBe('UNKNOWN_AGENT');
  });

  it('fails an ask to an id no node serves with UNKNOWN_AGENT from NATS no-responders, not at its deadline', async () => {
    const s = sink();
    one.transport.send(out('client', 'ghost', 'node-2', 'ask', { budgetMs: 60_000 }), s.sink);
    const { error } = await s.done;
    expect(error).toMatchObject({ code: 'UNKNOWN_AGENT', message: expect.stringContaining('"ghost"') });
  });

  it('never throws from send: a bad message is answered on the sink', () => {
    const s = sink();
    expect(() => one.transport.send(out('client', 'worker.1', 'node-2', 'ask', { budgetMs: undefined }), s.sink)).not.toThrow();
    expect(s.calls).toEqual([['error', 'INVALID_ARGUMENT', expect.stringContaining('budgetMs')]]);
    const t = sink();
    one.transport.send(out('client', 'worker.1', 'node-2', 'ask', { budgetMs: 0 }), t.sink);
    expect(t.calls).toEqual([['error', 'TIMEOUT', expect.any(String)]]);
  });

  it('reads each field of the outbound message once', async () => {
    const got = two.next();
    const s = sink();
    const base = out('client', 'worker.1', 'node-2');
    const reads = new Map<string, number>();
    const counted = <T extends object>(o: T): T =>
      new Proxy(o, {
        get(target, key, receiver) {
          if (typeof key === 'string') reads.set(key, (reads.get(key) ?? 0) + 1);
          return Reflect.get(target, key, receiver) as unknown;
        },
      });
    one.transport.send(counted({ ...base, envelope: counted(base.envelope) }), s.sink);
    (await got).responder.reply('1');
    expect(await s.done).toEqual({ reply: '1' });
    expect([...reads.values()].every((count) => count === 1)).toBe(true);
    expect(reads.get('envelope')).toBe(1);
  });

  it('refuses a hand-published message whose from is not claimed by the node its header names, before delivery', async () => {
    const subjects = new Subjects(bus);
    const conn = await NodeConnection.open({ servers: natsUrl, inboxPrefix: subjects.inboxPrefix('mallory') });
    try {
      const before = two.received.length;
      const forge = async (from: string, node: string | undefined) => {
        const frame = encodeMessage({ id: `forged-${n++}`, intent: 'work', ts: Date.now(), conversationId: 'c', depth: 0, priority: 'normal', budgetMs: 5000, ...(node === undefined ? {} : { node }) }, '{}');
        // An insecure fleet's proof line names a node and carries no signature.
        const answer = await conn.nc.request(subjects.inbound('worker.1', from, 'ask'), Buffer.concat([Buffer.from(`p ${node ?? 'node-x'} - -\n`), frame]), { timeout: 5000 });
        return decodeAnswer(answer.data.subarray(answer.data.indexOf(0x0a) + 1), 1024);
      };
      // `client` is node-1's, but the message says node-x sent it.
      expect(await forge('client', 'node-x')).toMatchObject({ kind: 'error', error: { code: 'POLICY_DENIED', message: expect.stringContaining('claimed by node "node-1"') } });
      // No node claims `mallory`.
      expect(await forge('mallory', 'node-x')).toMatchObject({ kind: 'error', error: { code: 'POLICY_DENIED', message: expect.stringContaining('claimed by no node') } });
      // No node header at all.
      expect(await forge('client', undefined)).toMatchObject({ kind: 'error', error: { code: 'POLICY_DENIED' } });
      // The receiver's own agent as sender: a local send never crosses the network.
      expect(await forge('worker.1', 'node-2')).toMatchObject({ kind: 'error', error: { code: 'POLICY_DENIED' } });
      expect(two.received.length).toBe(before);
    } finally {
      await conn.close();
    }
  });
});

describe.skipIf(skip !== '')('natsTransport when the broker stops', () => {
  let server: NatsServer;
  beforeAll(async () => {
    server = await startNatsServer(natsBin);
  });
  afterAll(async () => {
    await server.dispose();
  });

  it('rejects with TRANSPORT_UNAVAILABLE naming the servers when the first connect fails', async () => {
    await expect(natsTransport({ servers: 'nats://127.0.0.1:1', bus: 'x', insecure: true, connectTimeoutMs: 500 })).rejects.toMatchObject({
      code: 'TRANSPORT_UNAVAILABLE',
      message: expect.stringContaining('nats://127.0.0.1:1'),
    });
  });

  it('fails sends at once with TRANSPORT_UNAVAILABLE while down and carries them again after reconnecting', async () => {
    const bus = newBus();
    const a = await startNode(bus, 'na', ['client'], { url: server.url });
    const b = await startNode(bus, 'nb', ['w'], { url: server.url });
    await server.stop();
    // Once the client has noticed, the sink is told inside send() itself: nothing is buffered.
    await vi.waitFor(
      () => {
        const s = sink();
        a.transport.send(out('client', 'w', 'nb', 'ask', { budgetMs: 100 }), s.sink);
        expect(s.calls).toEqual([['error', 'TRANSPORT_UNAVAILABLE', expect.stringContaining('down')]]);
      },
      { timeout: 10_000, interval: 20 },
    );
    await server.restart();
    const answering = (async () => {
      for (;;) (await b.next()).responder.reply('"pong"');
    })();
    void answering;
    await vi.waitFor(
      async () => {
        const s = sink();
        a.transport.send(out('client', 'w', 'nb', 'ask', { budgetMs: 1000 }), s.sink);
        expect(await s.done).toEqual({ reply: '"pong"' });
      },
      { timeout: 15_000, interval: 50 },
    );
    // The claims watch resumed too: a claim made now reaches the peer's directory.
    await a.transport.claim({ id: 'after-restart', node: 'na', capabilities: [], trust: 0 });
    await vi.waitFor(() => expect(b.transport.nodeOf('after-restart')).toBe('na'), { timeout: 10_000, interval: 20 });
  });
});

describe.skipIf(skip !== '')('natsTransport with nats-config credentials', () => {
  const dir = mkdtempSync(join(tmpdir(), 'switchboard-natst-'));
  let server: NatsServer;
  const seed = (node: string) => readFileSync(join(dir, 'cfg', `${node}.nk`), 'utf8');
  beforeAll(async () => {
    const topo = join(dir, 'topo.json');
    writeFileSync(topo, JSON.stringify({ bus: 'auth', nodes: { n1: ['alice'], n2: ['bob'] }, operators: ['op'] }));
    expect(main(['nats-config', topo, '--out', join(dir, 'cfg')], { out: () => {}, err: () => {} })).toBe(0);
    server = await startNatsServer(natsBin, { extraConfig: readFileSync(join(dir, 'cfg', 'auth.conf'), 'utf8') });
    expect(await main(['fleet', 'bucket', '--servers', server.url, '--creds', join(dir, 'cfg', 'op.nk'), '--roster', join(dir, 'cfg', 'roster.json')], { out: () => {}, err: () => {} })).toBe(0);
  });
  afterAll(async () => {
    await server?.dispose();
    rmSync(dir, { recursive: true, force: true });
  });

  it("carries an ask between credentialed nodes and never delivers one sent as another node's agent", async () => {
    const one = await startNode('auth', 'n1', ['alice'], { url: server.url, nkeySeed: seed('n1') });
    const two = await startNode('auth', 'n2', ['bob'], { url: server.url, nkeySeed: seed('n2') });
    expect(one.transport.nodeOf('bob')).toBe('n2');
    // n1 tries to send as bob (n2's agent): the broker refuses the publish, and the sender
    // hears of it at once, not at the 60 s deadline.
    const forged = sink();
    one.transport.send(out('bob', 'bob', 'n2', 'ask', { budgetMs: 60_000 }), forged.sink);
    // A legitimate ask sent after it arrives first and alone.
    const got = two.next();
    const s = sink();
    const legit = out('alice', 'bob', 'n2');
    one.transport.send(legit, s.sink);
    const { inbound, responder } = await got;
    expect(inbound).toMatchObject({ id: legit.envelope.id, from: 'alice', fromNode: 'n1' });
    responder.reply('"hi alice"');
    expect(await s.done).toEqual({ reply: '"hi alice"' });
    expect((await forged.done).error).toMatchObject({ code: 'POLICY_DENIED', message: expect.stringContaining('as "bob"') });
    expect(two.received.map((r) => r.inbound.from)).toEqual(['alice']);
  });

  it("refuses a credentialed node claiming another node's agent id", async () => {
    const one = await startNode('auth', 'n1', [], { url: server.url, nkeySeed: seed('n1') });
    await expect(one.transport.claim({ id: 'bob', node: 'n1', capabilities: [], trust: 0 })).rejects.toMatchObject({ code: 'TRANSPORT_UNAVAILABLE', message: expect.stringMatching(/Permissions Violation/) });
  });
});
