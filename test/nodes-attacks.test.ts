// A hostile (or compromised) peer node: every InboundMessage field, every sink and responder
// call and its order, every reply payload is the attacker's. Each test names the promise the
// seam keeps against one attack.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { Orchestrator, type OrchestratorOptions, type PolicyRule } from '../src/index.js';
import type { InboundMessage, OutboundHandle, Responder } from '../src/pipeline/transport.js';
import { closeBuses, hang, makeBus, rejectionOf, settle } from './support/helpers.js';
import { recordingResponder } from './support/loopback.js';
import { brokenAudit, heldCarriage, inboundMessage, twoNodes } from './support/nodes.js';

afterEach(closeBuses);

const inbound = inboundMessage;

/** Node n2 serving `b` (echo), node n1 serving `a`: n1's transport injects as a hostile peer would. */
function receiver(options: OrchestratorOptions = {}) {
  const nodes = twoNodes({}, options);
  const calls: unknown[] = [];
  nodes.n2.register('b', { handlers: { echo: (p) => (calls.push(p), { ok: true }) } });
  nodes.n1.register('a');
  return { ...nodes, calls };
}

const hops = () => settle(40);

describe('a hostile peer cannot make the receiver spend without bound', () => {
  it('remembers a repeated id only for a message it admitted, so no peer can burn another node’s ids', async () => {
    const { net, t1, calls } = receiver();
    makeBus({ node: 'n3', transport: net.transport() }).register('x');
    // Node n3 says it is n1 to burn n1's next id; then sends junk under n1's next-but-one id.
    const lie = recordingResponder();
    t1.inject('n2', inbound({ id: 'next', from: 'x', fromNode: 'n1' }), lie);
    t1.inject('n2', inbound({ id: 'later', to: 'b'.repeat(1_000_000) }), recordingResponder());
    t1.inject('n2', inbound({ id: 'later', intent: '' }), recordingResponder());
    await hops();
    expect(lie.errors.map((e) => e.code)).toEqual(['POLICY_DENIED']);
    const honest = [recordingResponder(), recordingResponder()];
    t1.inject('n2', inbound({ id: 'next' }), honest[0]!);
    t1.inject('n2', inbound({ id: 'later' }), honest[1]!);
    await hops();
    expect(honest.map((r) => r.replies)).toEqual([['{"ok":true}'], ['{"ok":true}']]);
    expect(calls).toHaveLength(2);
  });

  it('audits a dropped repeat, and a repeat is neither delivered nor answered', async () => {
    const { t1, n2, calls } = receiver();
    const message = inbound();
    const first = recordingResponder();
    const again = recordingResponder();
    t1.inject('n2', message, first);
    await hops();
    t1.inject('n2', message, again);
    await hops();
    expect(calls).toHaveLength(1);
    expect(again.replies).toEqual([]);
    expect(again.errors).toEqual([]);
    const rows = n2.getMessageLog({ agentId: 'b', type: 'ask' });
    expect(rows.map((r) => r.decision).sort()).toEqual(['allowed', 'denied']);
    expect(rows.find((r) => r.decision === 'denied')).toMatchObject({ messageId: message.id, node: 'n2', peerNode: 'n1' });
    expect(rows.find((r) => r.decision === 'denied')!.reason).toContain('repeated message id');
    expect(n2.verifyAuditLog().ok).toBe(true);
  });

  it("never shows the original's outcome on the row of a repeat that came while the original was in flight", async () => {
    const nodes = twoNodes();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    nodes.n2.register('b', { handlers: { echo: async () => (await gate, { ok: true }) } });
    nodes.n1.register('a');
    const message = inbound();
    const first = recordingResponder();
    nodes.t1.inject('n2', message, first);
    await hops();
    nodes.t1.inject('n2', message, recordingResponder()); // the replay, while the handler still runs
    await hops();
    release();
    await hops();
    expect(first.replies).toEqual(['{"ok":true}']);
    const rows = nodes.n2.getMessageLog({ agentId: 'b', type: 'ask' });
    expect(rows.map((r) => [r.decision, r.outcome])).toEqual([
      ['denied', undefined],
      ['allowed', 'replied'],
    ]);
    // Every view of the log agrees: by conversation and by id-less listing too.
    expect(nodes.n2.getMessageLog({ conversationId: message.conversationId, type: 'ask' }).map((r) => r.outcome)).toEqual([undefined, 'replied']);
  });

  it('gives senders its directory does not know one shared bucket, so fake sender ids buy no fresh rate', async () => {
    const { t1, calls } = receiver({ limits: { rate: { perSecond: 1, burst: 2 } } });
    const codes: string[] = [];
    for (let i = 0; i < 5; i++) {
      const r = recordingResponder();
      t1.inject('n2', inbound({ from: `fake-${i}`, fromNode: `node-${i}` }), r);
      await hops();
      codes.push(r.errors[0]?.code ?? 'ok');
    }
    expect(codes).toEqual(['ok', 'ok', 'RATE_LIMITED', 'RATE_LIMITED', 'RATE_LIMITED']);
    expect(calls).toHaveLength(2);
  });

  it('refuses deeply nested JSON within the size limit with INVALID_PAYLOAD, without a stack overflow', async () => {
    const { t1, n2, calls } = receiver({ limits: { maxPayloadBytes: 1024 * 1024 } });
    const depth = 400_000;
    const r = recordingResponder();
    t1.inject('n2', inbound({ payloadJson: '['.repeat(depth) + ']'.repeat(depth) }), r);
    await hops();
    expect(r.errors.map((e) => e.code)).toEqual(['INVALID_PAYLOAD']);
    expect(calls).toHaveLength(0);
    expect(n2.verifyAuditLog().ok).toBe(true);
  });

  it('refuses a huge payloadJson unread with PAYLOAD_TOO_LARGE, and records huge fields in a bounded row', async () => {
    const { t1, n2 } = receiver({ limits: { maxPayloadBytes: 1024 } });
    const big = recordingResponder();
    t1.inject('n2', inbound({ payloadJson: `"${'x'.repeat(5_000_000)}"` }), big);
    const huge = 'h'.repeat(5_000_000);
    t1.inject('n2', inbound({ id: huge, from: huge, fromNode: huge, to: huge, intent: huge, conversationId: huge, causationId: huge }), recordingResponder());
    await hops();
    expect(big.errors.map((e) => e.code)).toEqual(['PAYLOAD_TOO_LARGE']);
    const rows = n2.getMessageLog({ decision: 'denied' });
    expect(rows).toHaveLength(2);
    for (const row of rows) expect(JSON.stringify(row).length).toBeLessThan(4000);
    expect(n2.verifyAuditLog().ok).toBe(true);
  });
});

describe('a hostile peer cannot bypass the receiver’s checks', () => {
  it('refuses a message that claims to come from the receiving node itself', async () => {
    const { t1, n2, calls } = receiver();
    const r = recordingResponder();
    t1.inject('n2', inbound({ from: 'ghost', fromNode: 'n2' }), r);
    await hops();
    expect(r.errors.map((e) => e.code)).toEqual(['POLICY_DENIED']);
    expect(calls).toHaveLength(0);
    expect(n2.getMessageLog({ decision: 'denied' })[0]).toMatchObject({ from: 'ghost', node: 'n2', peerNode: 'n2' });
  });

  it('takes trust from its own directory even when the message carries a trust field', async () => {
    const rules: PolicyRule[] = [{ from: '*', to: 'b', allow: ['ask'], minTrust: 50 }];
    const { t1, calls } = receiver({ policies: rules });
    const r = recordingResponder();
    t1.inject('n2', inbound({ trust: 100 } as never), r);
    await hops();
    expect(r.errors.map((e) => e.code)).toEqual(['POLICY_DENIED']);
    expect(calls).toHaveLength(0);
  });

  it.each([
    ['a NaN budget', { budgetMs: Number.NaN }, 'INVALID_ARGUMENT'],
    ['a budget past setTimeout’s limit', { budgetMs: 2 ** 31 }, 'INVALID_ARGUMENT'],
    ['a negative depth', { depth: -1 }, 'INVALID_ARGUMENT'],
    ['a depth past the safe integers (wrap-around)', { depth: 2 ** 53 }, 'INVALID_ARGUMENT'],
    ['an intent with a lone surrogate', { intent: 'echo\uD800' }, 'INVALID_ARGUMENT'],
    ['an id with a lone surrogate', { id: 'm\uDC00' }, 'INVALID_ARGUMENT'],
    ['a conversation id over 256 characters', { conversationId: 'c'.repeat(257) }, 'INVALID_ARGUMENT'],
    ['a sender id that is not an agent id', { from: 'a b' }, 'INVALID_ARGUMENT'],
    ['a node id that is not one', { fromNode: '' }, 'INVALID_ARGUMENT'],
    ['a payload that is not a string', { payloadJson: { x: 1 } }, 'INVALID_PAYLOAD'],
  ])('refuses %s with a typed code, audited with the node and the peer', async (_name, patch, code) => {
    const { t1, n2, calls } = receiver();
    const r = recordingResponder();
    t1.inject('n2', inbound(patch), r);
    await hops();
    expect(r.errors.map((e) => e.code)).toEqual([code]);
    expect(calls).toHaveLength(0);
    const rows = n2.getMessageLog({ decision: 'denied' });
    expect(rows.map((e) => e.code)).toEqual([code]);
    expect(rows[0]!.node).toBe('n2');
    expect(n2.verifyAuditLog().ok).toBe(true);
  });

  it('refuses and audits an inbound message whose getter throws, reading each field once', async () => {
    const { t1, n2, calls } = receiver();
    let reads = 0;
    const hostile = {
      ...inbound(),
      get to() {
        reads++;
        return 'b';
      },
      get payloadJson(): string {
        throw new Error('boom');
      },
    };
    const r = recordingResponder();
    t1.inject('n2', hostile as InboundMessage, r);
    await hops();
    expect(r.errors.map((e) => e.code)).toEqual(['INVALID_ARGUMENT']);
    expect(reads).toBe(1);
    expect(calls).toHaveLength(0);
    const rows = n2.getMessageLog({ decision: 'denied' });
    expect(rows).toHaveLength(1);
    expect(rows[0]!.reason).toContain('could not be read');
    expect(n2.verifyAuditLog().ok).toBe(true);
  });

  it('answers AUDIT_UNAVAILABLE and delivers nothing when the receipt of a notify cannot be committed', async () => {
    const { t1, calls } = receiver({ audit: brokenAudit() });
    const r = recordingResponder();
    t1.inject('n2', inbound({ type: 'notify', intent: 'echo', budgetMs: undefined }), r);
    await hops();
    expect(r.errors.map((e) => e.code)).toEqual(['AUDIT_UNAVAILABLE']);
    expect(r.replies).toEqual([]);
    expect(calls).toEqual([]);
  });

  it('answers AUDIT_UNAVAILABLE and holds nothing when the pending row of an ask held for approval cannot be committed', async () => {
    const { t1, n2, calls } = receiver({ audit: brokenAudit(), policies: [{ from: '*', to: 'b', allow: ['ask'], requireApproval: true }] });
    const r = recordingResponder();
    t1.inject('n2', inbound(), r);
    await hops();
    expect(r.errors.map((e) => e.code)).toEqual(['AUDIT_UNAVAILABLE']);
    expect(n2.approvals.list()).toEqual([]);
    expect(calls).toEqual([]);
  });

  it('takes any number of cancels from the peer, of any reason, after and before settlement', async () => {
    const { t1, n2, calls } = receiver();
    const r = recordingResponder();
    const handle = t1.inject('n2', inbound(), r);
    for (let i = 0; i < 100; i++) handle.cancel({ toString: () => 'x'.repeat(100_000) } as unknown as string);
    await hops();
    expect(r.errors.map((e) => e.code)).toEqual(['CANCELLED']);
    expect(calls).toHaveLength(0);
    const row = n2.getMessageLog({ agentId: 'b', type: 'ask' })[0]!;
    expect(row.outcome).toBe('cancelled');
    expect(JSON.stringify(row).length).toBeLessThan(4000);
  });

  it('refuses and audits an inbound value that is not an object', async () => {
    const { t1, n2 } = receiver();
    const r = recordingResponder();
    t1.inject('n2', null as unknown as InboundMessage, r);
    await hops();
    expect(r.errors.map((e) => e.code)).toEqual(['INVALID_ARGUMENT']);
    expect(n2.getMessageLog({ decision: 'denied' })).toHaveLength(1);
  });
});

describe('a hostile transport cannot crash or wedge the receiver', () => {
  it('survives a responder that throws and one whose methods are getters, answering each at most once', async () => {
    const { t1, calls } = receiver();
    const throwing: Responder = {
      reply: () => {
        throw new Error('network gone');
      },
      error: () => {
        throw new Error('network gone');
      },
      progress: () => undefined,
    };
    t1.inject('n2', inbound(), throwing);
    let got = 0;
    const getters = {
      get reply() {
        got++;
        return () => undefined;
      },
      get error() {
        throw new Error('no');
      },
      progress: () => undefined,
    } as unknown as Responder;
    t1.inject('n2', inbound(), getters);
    t1.inject('n2', inbound({ id: 42 }), getters);
    await hops();
    expect(calls).toHaveLength(2);
    expect(got).toBe(1);
  });

  it('survives a responder that re-enters receive() with the same message', async () => {
    const { t1, calls } = receiver();
    const message = inbound();
    const outer = recordingResponder();
    const reentrant: Responder = {
      reply: (json) => {
        outer.reply(json);
        t1.inject('n2', message, outer);
      },
      error: outer.error,
      progress: outer.progress,
    };
    t1.inject('n2', message, reentrant);
    await hops();
    expect(calls).toHaveLength(1);
    expect(outer.replies).toEqual(['{"ok":true}']);
  });

  it('leaves no pending entry or timer after close, whatever the peer had in flight', async () => {
    vi.useFakeTimers();
    const { net, t1, n2 } = twoNodes();
    const port = net.ports.get('n2')!;
    n2.register('b', { handlers: { echo: (_p, ctx) => hang(ctx) } });
    const r = recordingResponder();
    for (let i = 0; i < 5; i++) t1.inject('n2', inbound({ budgetMs: 1_000_000 }), r);
    await vi.advanceTimersByTimeAsync(0);
    await n2.close();
    expect(r.errors.map((e) => e.code)).toEqual(['CLOSED', 'CLOSED', 'CLOSED', 'CLOSED', 'CLOSED']);
    const late = recordingResponder();
    port.receive(inbound(), late);
    expect(late.errors.map((e) => e.code)).toEqual(['CLOSED']);
    expect(vi.getTimerCount()).toBe(0);
  });
});

describe('what a hostile peer sends back cannot hurt the sender', () => {
  it('records at most one dead letter per kind (late reply, dead report) for a carried message, however often the peer repeats it', async () => {
    const { n1, a, carried } = heldCarriage();
    const dead: string[] = [];
    n1.events.on('message:dead', (e) => dead.push(e.reason));
    const answer = a.ask('b', 'x', {});
    await hops();
    const sink = carried[0]!.sink;
    sink.reply('"first"');
    await expect(answer).resolves.toBe('first');
    for (let i = 0; i < 1000; i++) {
      sink.reply('"again"');
      sink.dead('late', '"x"');
      sink.error('POLICY_DENIED', 'after the reply');
      sink.progress(0.5);
    }
    await hops();
    expect(dead).toHaveLength(2);
    expect(n1.getMessageLog({ type: 'reply' }).filter((e) => e.outcome === 'late-reply')).toHaveLength(2);
    expect(n1.getMessageLog({ agentId: 'b', type: 'ask' })[0]).toMatchObject({ outcome: 'replied' });
    expect(n1.verifyAuditLog().ok).toBe(true);
  });

  it('coalesces a burst of remote progress into its latest report, so a flood holds one report per delegate', async () => {
    const { a, carried } = heldCarriage();
    const job = a.delegate('b', 'x', {});
    const reports: unknown[] = [];
    job.onProgress((r) => reports.push(r));
    await hops();
    const sink = carried[0]!.sink;
    for (let i = 0; i <= 10_000; i++) sink.progress(i / 10_000, `step ${i}`);
    await hops();
    expect(reports).toEqual([{ fraction: 1, note: 'step 10000' }]);
    sink.progress(0.5);
    await hops();
    expect(reports).toHaveLength(2);
    sink.reply('"done"');
    await expect(job).resolves.toBe('done');
  });

  it('fails a reply that breaks the output contract with HANDLER_FAILED, audited with the peer node', async () => {
    const output = { '~standard': { version: 1, vendor: 't', validate: (v: unknown) => (typeof v === 'number' ? { value: v } : { issues: [{ message: 'a number' }] }) } };
    const input = { '~standard': { version: 1, vendor: 't', validate: (v: unknown) => ({ value: v }) } };
    const { n1, a, carried } = heldCarriage({ contracts: { sum: { type: 'ask', input, output } } } as OrchestratorOptions);
    const answer = rejectionOf(a.ask('b', 'sum', {}));
    await hops();
    carried[0]!.sink.reply('"not a number"');
    const e = await answer;
    expect(e.code).toBe('HANDLER_FAILED');
    expect(e.message).toContain('contract');
    expect(n1.getMessageLog({ agentId: 'b', type: 'ask' })[0]).toMatchObject({ outcome: 'failed', code: 'HANDLER_FAILED', node: 'n1', peerNode: 'n2' });
  });

  it('answers TIMEOUT at the deadline when the transport never answers, and leaves nothing tracked', async () => {
    vi.useFakeTimers();
    const { n1, a, carried } = heldCarriage();
    const answer = rejectionOf(a.ask('b', 'x', {}, { timeoutMs: 500 }));
    const receipt = a.notify('news', {}, { to: ['b'] });
    await vi.advanceTimersByTimeAsync(0);
    expect(carried).toHaveLength(2);
    await vi.advanceTimersByTimeAsync(500);
    expect((await answer).code).toBe('TIMEOUT');
    await vi.advanceTimersByTimeAsync(30_000);
    await expect(receipt).resolves.toMatchObject({ failed: ['b'] });
    expect(vi.getTimerCount()).toBe(0);
    expect(n1.getMessageLog({ agentId: 'b', type: 'ask' })[0]).toMatchObject({ outcome: 'expired', peerNode: 'n2' });
  });

  it.each([
    ['whose cancel throws', () => ({ cancel: () => { throw new Error('socket closed'); } })],
    ['that is not an object', () => undefined as unknown as OutboundHandle],
    ['without a cancel method', () => ({}) as OutboundHandle],
  ])('settles the caller even when transport.send returns a handle %s', async (_name, handle) => {
    vi.useFakeTimers();
    const { a, carried } = heldCarriage({}, handle);
    const timedOut = rejectionOf(a.ask('b', 'x', {}, { timeoutMs: 100 }));
    const cancelled = new AbortController();
    const aborted = rejectionOf(a.ask('b', 'x', {}, { timeoutMs: 10_000, signal: cancelled.signal }));
    await vi.advanceTimersByTimeAsync(0);
    expect(carried).toHaveLength(2);
    cancelled.abort('stop');
    expect((await aborted).code).toBe('CANCELLED');
    await vi.advanceTimersByTimeAsync(100);
    expect((await timedOut).code).toBe('TIMEOUT');
  });

  it('refuses with UNKNOWN_AGENT, never carrying it, when the transport names a node that is not a node id', async () => {
    const { n1, t1, a, carried } = heldCarriage();
    t1.nodeOf = () => 'n'.repeat(100_000);
    const e = await rejectionOf(a.ask('b', 'x', {}));
    expect(e.code).toBe('UNKNOWN_AGENT');
    expect(carried).toHaveLength(0);
    expect(JSON.stringify(n1.getMessageLog({ agentId: 'b' })).length).toBeLessThan(2000);
  });

  it('fails with TRANSPORT_UNAVAILABLE, audited, when transport.send throws despite its contract', async () => {
    const { n1, t1, a } = heldCarriage();
    t1.send = () => {
      throw new Error('bug in the transport');
    };
    const e = await rejectionOf(a.ask('b', 'x', {}));
    expect(e.code).toBe('TRANSPORT_UNAVAILABLE');
    await n1.flush();
    expect(n1.getMessageLog({ agentId: 'b', type: 'ask' })[0]).toMatchObject({ outcome: 'failed', code: 'TRANSPORT_UNAVAILABLE' });
  });

  it('survives a sink called re-entrantly from inside transport.send', async () => {
    const { t1, a, carried } = heldCarriage();
    const original = t1.send.bind(t1);
    t1.send = (outbound, sink) => {
      sink.reply('"sync"');
      sink.reply('"twice"');
      sink.error('POLICY_DENIED', 'and an error');
      return original(outbound, sink);
    };
    await expect(a.ask('b', 'x', {})).resolves.toBe('sync');
    expect(carried).toHaveLength(1);
  });
});

describe('the receiver decides a remote sender’s trust', () => {
  const rules: PolicyRule[] = [{ from: '*', to: 'b', allow: ['ask'], minTrust: 50 }];

  it('never from the sending node’s claim: a remote agent claiming trust 90 has trust 0 here', async () => {
    const { n1, n2, net, t1 } = twoNodes({}, { policies: rules });
    n2.register('b', { handlers: { echo: () => 'ok' } });
    n1.register('a', { trust: 90 });
    net.claims.set('a', { id: 'a', node: 'n1', capabilities: [], trust: 90 });
    const answer = recordingResponder();
    t1.inject('n2', inbound(), answer);
    await hops();
    expect(answer.errors.map((e) => e.code)).toEqual(['POLICY_DENIED']);
    expect(n2.agents().find((x) => x.id === 'a')).toMatchObject({ trust: 0, node: 'n1' });
  });

  it('from its own remoteTrust option, read once', async () => {
    const remoteTrust: Record<string, number> = { a: 60 };
    const { n1, n2, t1 } = twoNodes({}, { policies: rules, remoteTrust });
    remoteTrust.a = 0; // the bus copied the map at construction
    n2.register('b', { handlers: { echo: () => 'ok' } });
    n1.register('a', { trust: 0 });
    const answer = recordingResponder();
    t1.inject('n2', inbound(), answer);
    await hops();
    expect(answer.replies).toEqual(['"ok"']);
    expect(n2.agents().find((x) => x.id === 'a')).toMatchObject({ trust: 60 });
  });

  it('refuses a remoteTrust that is not a map of agent ids to finite numbers, naming it', () => {
    expect(() => new Orchestrator({ remoteTrust: { 'bad id': 1 } })).toThrow(/remoteTrust/);
    expect(() => new Orchestrator({ remoteTrust: { a: Number.NaN } })).toThrow(/remoteTrust/);
  });
});

