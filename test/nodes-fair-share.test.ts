// A receiving node's fair share per peer node (limits.inboundPerNode), with two nodes on the
// in-memory transport and the event loop counted turn by turn: a peer flooding at its full
// rate gets its share of each turn, and the node's own senders keep theirs.
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { OrchestratorOptions, PolicyRule } from '../src/index.js';
import { closeBuses, deferred, rejectionOf } from './support/helpers.js';
import { recordingResponder, type RecordingResponder } from './support/loopback.js';
import { inboundMessage, twoNodes } from './support/nodes.js';

afterEach(closeBuses);

// Taken before any test fakes timers: the turns of the real event loop.
const realSetImmediate = globalThis.setImmediate;
const nextTurn = () => new Promise<void>((resolve) => realSetImmediate(resolve));

const SHARE = { maxInFlight: 64, perTurn: 16, maxQueued: 1000 };
type Limits = NonNullable<OrchestratorOptions['limits']>;
const FAST: Limits = { rate: false, maxQueue: 100_000, inboundPerNode: SHARE };

/** n2 serves `b` (the flood's target) and two local agents; n1's `a` is the flooding peer's sender. */
function floodedNode(limits: Limits = FAST, policies?: PolicyRule[]) {
  const nodes = twoNodes({ limits: { rate: false } }, { limits, ...(policies === undefined ? {} : { policies }) });
  let inboundRuns = 0;
  nodes.n2.register('b', { concurrency: 100_000, handlers: { echo: () => void inboundRuns++ } });
  nodes.n2.register('l2', { concurrency: 100_000, handlers: { echo: () => 'ok' } });
  const l1 = nodes.n2.register('l1');
  nodes.n1.register('a');
  const flood = (count: number): RecordingResponder[] =>
    Array.from({ length: count }, () => {
      const r = recordingResponder();
      nodes.t1.inject('n2', inboundMessage({ from: 'a', fromNode: 'n1', to: 'b' }), r);
      return r;
    });
  return { ...nodes, l1, flood, inboundRuns: () => inboundRuns };
}

/** A local agent of `node` sends (refused or not, it is local work): the shares hold from now on. */
function localSend(node: ReturnType<typeof twoNodes>['n2']): void {
  node.register(`local-${Math.random().toString(36).slice(2)}`).notify('tick', {}, { to: [] }).catch(() => undefined);
}

describe('a node under a peer node’s flood (limits.inboundPerNode)', () => {
  it('keeps its local asks’ throughput while the peer floods at its full rate: the peer gets at most perTurn a turn, and its share', async () => {
    // The slice of FairYield never ends: every turn's work finishes in that turn, so counts are exact.
    vi.useFakeTimers({ toFake: ['performance'] });
    const { l1, flood, inboundRuns } = floodedNode();
    const LOCAL = 32;
    const TURNS = 40;
    const perTurn: { local: number; inbound: number }[] = [];
    let localDone = 0;
    const refusals: RecordingResponder[] = [];
    for (let turn = 0; turn < TURNS; turn++) {
      const before = { local: localDone, inbound: inboundRuns() };
      for (let i = 0; i < LOCAL; i++) void l1.ask('l2', 'echo', {}).then(() => localDone++);
      // The peer sends far more every turn than its share admits.
      refusals.push(...flood(200));
      await nextTurn();
      perTurn.push({ local: localDone - before.local, inbound: inboundRuns() - before.inbound });
    }
    // Every local ask of a turn was answered in that turn, as without the flood.
    expect(perTurn.map((t) => t.local)).toEqual(Array(TURNS).fill(LOCAL));
    // The peer had its share of each turn and no more: the first window holds two turns (the
    // macrotask the flood arrived in, and the next one), every later window one.
    expect(perTurn[0]!.inbound).toBe(2 * SHARE.perTurn);
    expect(perTurn.slice(1).map((t) => t.inbound)).toEqual(Array(TURNS - 1).fill(SHARE.perTurn));
    // What it sent over its queue was refused at once, not left to time out.
    const full = refusals.filter((r) => r.errors[0]?.code === 'MAILBOX_FULL');
    expect(full.length).toBeGreaterThan(0);
    expect(full[0]!.errors[0]!.message).toContain('node n1 has');
  });

  it('keeps at most maxInFlight of a node’s messages unanswered while local agents send; answering one admits the next', async () => {
    const clock = { now: () => 1_000 };
    const { n2, t1 } = twoNodes({}, { clock, limits: { rate: false, inboundPerNode: { maxInFlight: 2 } } });
    localSend(n2);
    const gates: ReturnType<typeof deferred<void>>[] = [];
    let started = 0;
    n2.register('b', {
      concurrency: 100,
      handlers: {
        slow: async () => {
          started++;
          const gate = deferred<void>();
          gates.push(gate);
          await gate.promise;
          return 'done';
        },
      },
    });
    const responders = Array.from({ length: 4 }, () => {
      const r = recordingResponder();
      t1.inject('n2', inboundMessage({ intent: 'slow' }), r);
      return r;
    });
    for (let i = 0; i < 3; i++) await nextTurn();
    expect(started).toBe(2);
    gates[0]!.resolve();
    for (let i = 0; i < 3; i++) await nextTurn();
    expect(responders[0]!.replies).toEqual(['"done"']);
    expect(started).toBe(3);
    for (const gate of gates) gate.resolve();
  });

  it('does not count a message held for approval against its node’s share', async () => {
    const rules: PolicyRule[] = [{ from: 'a', to: 'b', allow: ['ask'], requireApproval: true }];
    const clock = { now: () => 1_000 };
    const { n2, t1 } = twoNodes({}, { clock, policies: rules, limits: { rate: false, inboundPerNode: { maxInFlight: 1 } } });
    localSend(n2);
    n2.register('b', { handlers: { echo: () => 'ok' } });
    for (let i = 0; i < 3; i++) t1.inject('n2', inboundMessage(), recordingResponder());
    for (let i = 0; i < 4; i++) await nextTurn();
    expect(n2.approvals.list()).toHaveLength(3);
  });

  it('refuses with TIMEOUT, audited, a message whose budget ran out while it waited for its turn', async () => {
    let now = 1_000;
    const clock = { now: () => now };
    const { n2, t1 } = twoNodes({}, { clock, limits: { rate: false, inboundPerNode: { maxInFlight: 1 } } });
    localSend(n2);
    const gate = deferred<void>();
    n2.register('b', { handlers: { slow: () => gate.promise.then(() => 'done') } });
    t1.inject('n2', inboundMessage({ intent: 'slow', budgetMs: 60_000 }), recordingResponder());
    const late = recordingResponder();
    t1.inject('n2', inboundMessage({ intent: 'slow', budgetMs: 100 }), late);
    now += 150;
    gate.resolve();
    for (let i = 0; i < 3; i++) await nextTurn();
    expect(late.errors).toEqual([{ code: 'TIMEOUT', message: expect.stringContaining("waited 150ms for its turn in node n1's share here") }]);
    await n2.flush();
    expect(n2.getMessageLog({ agentId: 'b', decision: 'denied' })[0]).toMatchObject({ code: 'TIMEOUT', peerNode: 'n1' });
  });

  it('never queues a payload over maxPayloadBytes: refused at once with PAYLOAD_TOO_LARGE, even when the share is full', async () => {
    const clock = { now: () => 1_000 };
    const { n2, t1 } = twoNodes({}, { clock, limits: { rate: false, maxPayloadBytes: 100, inboundPerNode: { maxInFlight: 1 } } });
    localSend(n2);
    const gate = deferred<void>();
    n2.register('b', { handlers: { slow: () => gate.promise.then(() => 'done') } });
    t1.inject('n2', inboundMessage({ intent: 'slow' }), recordingResponder());
    const big = recordingResponder();
    t1.inject('n2', inboundMessage({ intent: 'slow', payloadJson: JSON.stringify('x'.repeat(200)) }), big);
    expect(big.errors.map((e) => e.code)).toEqual(['PAYLOAD_TOO_LARGE']);
    gate.resolve();
  });

  it('admits a peer’s messages as they come while no local agent has sent lately: the share yields to local work only', async () => {
    const { flood, inboundRuns } = floodedNode();
    flood(100);
    await nextTurn();
    expect(inboundRuns()).toBe(100);
  });

  it('admits everything at once with inboundPerNode: false', async () => {
    const { flood, inboundRuns } = floodedNode({ rate: false, maxQueue: 100_000, inboundPerNode: false });
    flood(100);
    await nextTurn();
    expect(inboundRuns()).toBe(100);
  });

  it.each([
    [{ maxInFlight: 0 }, 'limits.inboundPerNode.maxInFlight'],
    [{ perTurn: 1.5 }, 'limits.inboundPerNode.perTurn'],
    [{ maxQueued: -1 }, 'limits.inboundPerNode.maxQueued'],
    [{ perturn: 4 }, 'perturn'],
    [true, 'limits.inboundPerNode'],
  ])('refuses limits.inboundPerNode %j with INVALID_ARGUMENT naming it', async (bad, named) => {
    const e = await rejectionOf(Promise.resolve().then(() => twoNodes({}, { limits: { inboundPerNode: bad as never } })));
    expect(e.code).toBe('INVALID_ARGUMENT');
    expect(e.message).toContain(named);
  });
});
