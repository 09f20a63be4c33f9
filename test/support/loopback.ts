// A Transport in memory: two (or more) Orchestrators in one process act as nodes of one bus.
// Claims live in a shared map; a send reaches the peer's InboundPort in a later microtask,
// and its answers come back the same way. `down` simulates a broker that cannot be reached.
import { BusError } from '../../src/errors.js';
import type {
  InboundHandle,
  InboundMessage,
  InboundPort,
  Location,
  OutboundHandle,
  OutboundMessage,
  OutboundSink,
  RemoteAgent,
  Responder,
  Transport,
} from '../../src/pipeline/transport.js';

/** The shared "broker": who claims which id, and each node's inbound port. */
export class LoopbackNetwork {
  readonly claims = new Map<string, RemoteAgent>();
  readonly ports = new Map<string, InboundPort>();
  /** While true, every send fails at once with TRANSPORT_UNAVAILABLE (the broker is down). */
  down = false;

  /** A transport for one node of this network. */
  transport(): LoopbackTransport {
    return new LoopbackTransport(this);
  }
}

/** One node's end of a {@link LoopbackNetwork}. `sent` records every message it carried. */
export class LoopbackTransport implements Transport {
  readonly #net: LoopbackNetwork;
  node = '';
  /** Every outbound message handed to `send` (a spy for "local sends never touch the transport"). */
  readonly sent: OutboundMessage[] = [];

  constructor(net: LoopbackNetwork) {
    this.#net = net;
  }

  attach(node: string, port: InboundPort): void {
    this.node = node;
    this.#net.ports.set(node, port);
  }

  locate(agentId: string): Location {
    const claim = this.#net.claims.get(agentId);
    return claim !== undefined && claim.node !== this.node ? 'remote' : 'unknown';
  }

  nodeOf(agentId: string): string | undefined {
    const claim = this.#net.claims.get(agentId);
    return claim !== undefined && claim.node !== this.node ? claim.node : undefined;
  }

  remoteAgents(): readonly RemoteAgent[] {
    return [...this.#net.claims.values()].filter((a) => a.node !== this.node);
  }

  claim(agent: RemoteAgent): Promise<void> | undefined {
    const held = this.#net.claims.get(agent.id);
    if (held !== undefined && held.node !== agent.node) {
      return Promise.reject(new BusError('DUPLICATE_AGENT', `"${agent.id}" is held by node ${held.node}`, { agentId: agent.id }));
    }
    this.#net.claims.set(agent.id, { ...agent });
    return undefined;
  }

  release(agentId: string): void {
    if (this.#net.claims.get(agentId)?.node === this.node) this.#net.claims.delete(agentId);
  }

  send(outbound: OutboundMessage, sink: OutboundSink): OutboundHandle {
    this.sent.push(outbound);
    if (this.#net.down) {
      sink.error('TRANSPORT_UNAVAILABLE', 'the broker cannot be reached');
      return { cancel: () => undefined };
    }
    const port = this.#net.ports.get(outbound.node);
    if (port === undefined) {
      sink.error('UNKNOWN_AGENT', `no node "${outbound.node}" answers`);
      return { cancel: () => undefined };
    }
    const e = outbound.envelope;
    const inbound: InboundMessage = {
      id: e.id,
      type: e.type as InboundMessage['type'],
      from: e.from,
      fromNode: this.node,
      to: e.to,
      intent: e.intent,
      payloadJson: outbound.payloadJson,
      conversationId: e.conversationId,
      ...(e.causationId !== undefined ? { causationId: e.causationId } : {}),
      priority: e.priority,
      depth: e.depth,
      ...(outbound.budgetMs !== undefined ? { budgetMs: outbound.budgetMs } : {}),
      ...(outbound.traceparent !== undefined ? { traceparent: outbound.traceparent } : {}),
    };
    let handle: InboundHandle | undefined;
    let cancelled: string | undefined;
    queueMicrotask(() => {
      if (cancelled !== undefined) return;
      handle = port.receive(inbound, later(sink));
    });
    return {
      cancel: (reason) => {
        cancelled = reason;
        queueMicrotask(() => handle?.cancel(reason));
      },
    };
  }

  /** Hands `inbound` straight to `node`'s port, as a hostile peer could: for the attack tests. */
  inject(node: string, inbound: InboundMessage, responder: Responder): InboundHandle {
    return this.#net.ports.get(node)!.receive(inbound, responder);
  }

  ready(): Promise<void> {
    return Promise.resolve();
  }

  close(): Promise<void> {
    for (const [id, claim] of this.#net.claims) if (claim.node === this.node) this.#net.claims.delete(id);
    this.#net.ports.delete(this.node);
    return Promise.resolve();
  }
}

/** The receiver's answers, carried back to the sender's sink in a later microtask. */
function later(sink: OutboundSink): Responder {
  return {
    reply: (json) => queueMicrotask(() => sink.reply(json)),
    error: (code, message) => queueMicrotask(() => sink.error(code, message)),
    progress: (fraction, note) => queueMicrotask(() => sink.progress(fraction, note)),
  };
}

/** What a {@link recordingResponder} was told. */
export interface RecordingResponder extends Responder {
  readonly replies: string[];
  readonly errors: { code: string; message: string }[];
  readonly progressed: number[];
}

/** A responder that records what it was told, for injected messages. */
export function recordingResponder(): RecordingResponder {
  const replies: string[] = [];
  const errors: { code: string; message: string }[] = [];
  const progressed: number[] = [];
  return {
    replies,
    errors,
    progressed,
    reply: (json) => void replies.push(json),
    error: (code, message) => void errors.push({ code, message }),
    progress: (fraction) => void progressed.push(fraction),
  };
}
