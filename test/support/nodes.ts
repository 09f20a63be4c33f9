// Two-node fixtures for the pipeline's node tests: buses joined by a loopback network, an
// inbound message as a (possibly hostile) peer would send it, and an audit log that fails.
import type { OrchestratorOptions } from '../../src/index.js';
import type { InboundMessage, OutboundHandle, OutboundMessage, OutboundSink } from '../../src/pipeline/transport.js';
import { makeBus } from './helpers.js';
import { LoopbackNetwork } from './loopback.js';

/** Nodes n1 and n2 of one loopback network (closed by `closeBuses()`). */
export function twoNodes(o1: OrchestratorOptions = {}, o2: OrchestratorOptions = {}) {
  const net = new LoopbackNetwork();
  const t1 = net.transport();
  const t2 = net.transport();
  const n1 = makeBus({ node: 'n1', transport: t1, ...o1 });
  const n2 = makeBus({ node: 'n2', transport: t2, ...o2 });
  return { net, t1, t2, n1, n2 };
}

/** One message n1 handed to its transport: what was sent, the sink to answer it, the cancels it got. */
export interface Carried {
  readonly outbound: OutboundMessage;
  readonly sink: OutboundSink;
  readonly cancelled: string[];
}

/**
 * Two nodes whose n1 → n2 carriage is held by the test: it gets each sink and answers itself.
 * `handle` is what n1's transport returns for a message (by default one recording cancels).
 */
export function heldCarriage(o1: OrchestratorOptions = {}, handle: (carried: Carried) => OutboundHandle = (c) => ({ cancel: (reason) => void c.cancelled.push(reason) })) {
  const nodes = twoNodes(o1);
  const carried: Carried[] = [];
  nodes.t1.send = (outbound: OutboundMessage, sink: OutboundSink): OutboundHandle => {
    const entry: Carried = { outbound, sink, cancelled: [] };
    carried.push(entry);
    return handle(entry);
  };
  nodes.n2.register('b');
  const a = nodes.n1.register('a');
  return { ...nodes, a, carried };
}

let counter = 0;

/** An inbound message as node n1 would send it to n2's agent `b`, with `patch` applied (a fresh id each call). */
export function inboundMessage(patch: Partial<Record<keyof InboundMessage, unknown>> = {}): InboundMessage {
  return {
    id: `m-${++counter}`,
    type: 'ask',
    from: 'a',
    fromNode: 'n1',
    to: 'b',
    intent: 'echo',
    payloadJson: '{"x":1}',
    conversationId: 'c-1',
    priority: 'normal',
    depth: 0,
    budgetMs: 5000,
    ...patch,
  } as InboundMessage;
}

/** An audit log whose every append fails: the bus must fail closed. */
export function brokenAudit() {
  return {
    append: () => {
      throw new Error('disk full');
    },
    query: () => [],
    verify: () => ({ ok: true, checked: 0 }),
    close: () => undefined,
  };
}
