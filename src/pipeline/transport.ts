import type { Approvals } from '../approvals.js';
import type { Envelope, RuleType } from '../envelope.js';
import type { BusEventSource } from '../events.js';
import type { ErrorCode } from '../errors.js';
import { freezeClass } from '../frozen.js';

// The seam between "decide and record" (the pipeline) and "carry the message" (a
// transport). The pipeline never carries a message to another node itself, and a
// transport never decides anything: it locates ids, claims them, and moves bytes.
//
// Who does what, for a message from node A's agent `a` to node B's agent `b`:
//  1. A's pipeline finds `b` is not local and asks `locate('b')`: 'remote'.
//  2. A runs its own checks (arguments, codec, contract, size, rate, policy), commits the
//     attempt row, then calls `send(outbound, sink)`. TIMEOUT is decided at A.
//  3. The transport carries `outbound` to B and calls B's `InboundPort.receive(inbound,
//     responder)`. B re-runs its own checks (codec, size, contract, a rate bucket per
//     sender, policy with the trust it grants the sender (`remoteTrust`), depth, a repeated id), commits its
//     receipt, delivers to `b`'s mailbox, and answers through `responder`.
//  4. The transport carries the answer back and calls the matching method of A's `sink`.

/** Where an agent id lives, as the transport knows it. */
export type Location = 'remote' | 'unknown';

/** An agent served by another node, for `agents()`, `discover()` and broadcast notify. */
export interface RemoteAgent {
  readonly id: string;
  readonly node: string;
  readonly capabilities: readonly string[];
  /**
   * The trust its own node registered it with, as that node claims it. Informational only:
   * no other node decides on it (they use their own `remoteTrust`).
   */
  readonly trust: number;
}

/**
 * A message leaving this node. Built by the pipeline after its checks passed and the
 * attempt row was committed. The transport only serializes and carries it.
 */
export interface OutboundMessage {
  /**
   * The frozen envelope as the sender's node recorded it: `id` (kept on both sides),
   * `type`, `from`, `to`, `intent`, `ts`, `conversationId`, `causationId?`, `priority`,
   * `depth`. Its `deadline` is this node's clock: send `budgetMs` instead.
   */
  readonly envelope: Envelope;
  /** The payload as JSON text (UTF-8 when encoded; at most `maxPayloadBytes`). */
  readonly payloadJson: string;
  /** Ms left until the sender's deadline (ask, delegate); undefined for a notify. */
  readonly budgetMs: number | undefined;
  /** The node that serves `envelope.to` (as `locate` / `directory` told). */
  readonly node: string;
  /** W3C trace context of the send (`traceparentOf(envelope)`), when the sender's bus has telemetry on: carry it (NATS: a header). */
  readonly traceparent?: string;
  /** The deciding rule says `sealed`: encrypt the payload (and what comes back) for the recipient node, or fail the send. */
  readonly sealed?: boolean;
}

/**
 * How the answer to one outbound message comes back. The transport calls at most one of
 * `reply` / `error`, at most once; `progress` and `dead` any number of times before that.
 * Calls after the request settled locally (TIMEOUT, cancel) are ignored by the pipeline.
 */
export interface OutboundSink {
  /**
   * The recipient's reply payload as JSON text: the pipeline parses, checks and audits it.
   * `proof`: the replying node's proof as the transport verified it (JSON), kept in the
   * reply row so the sender's log proves what the peer answered.
   */
  reply(payloadJson: string, proof?: string): void;
  /**
   * A refusal or failure from the receiving node (`POLICY_DENIED`, `HANDLER_FAILED`, …),
   * or `TRANSPORT_UNAVAILABLE` when the broker cannot be reached. An unknown code is
   * turned into `TRANSPORT_UNAVAILABLE`.
   */
  error(code: ErrorCode, message: string): void;
  /** A delegate's progress report (fraction in 0..1). */
  progress(fraction: number, note?: string): void;
  /** A reply that arrived after the receiving side had settled (`message:dead`). */
  dead(reason: string, payloadJson?: string): void;
}

/** What the sender keeps for one outbound message. */
export interface OutboundHandle {
  /** The sender cancelled (or its deadline passed): tell the receiver to abort `ctx.signal`. */
  cancel(reason: string): void;
}

/** A message arriving from another node, untrusted: the receiving pipeline checks all of it. */
export interface InboundMessage {
  readonly id: string;
  readonly type: RuleType;
  /** The sending agent; the transport vouches only that it belongs to `fromNode`. */
  readonly from: string;
  readonly fromNode: string;
  readonly to: string;
  readonly intent: string;
  readonly payloadJson: string;
  readonly conversationId: string;
  readonly causationId?: string;
  readonly priority: string;
  readonly depth: number;
  /** Ms left of the sender's deadline when it was sent; the receiver's signal aborts after it. */
  readonly budgetMs?: number;
  /** W3C trace context from the sender, when its bus traces: untrusted like the rest, checked with `checkTraceparent()` by the receiving pipeline. */
  readonly traceparent?: string;
  /**
   * The sending node's proof, as the transport verified it against its roster (JSON: node,
   * key, signature and what it covers): kept with the receipt so the log proves what the
   * peer sent. Absent when the transport cannot prove the sender (`unverified`).
   */
  readonly proof?: string;
  /** True when the transport could not verify who sent it (an insecure fleet). */
  readonly unverified?: boolean;
  /** True when it arrived encrypted for this node. */
  readonly sealed?: boolean;
}

/**
 * A frame the transport refused before anything of it was read: a signature that does not
 * verify, a signer the roster does not list or does not let speak for `from`, an unsealed
 * frame where sealing is required, a stale or repeated message. Every field is as the frame
 * or its subject says (unverified), for the record only.
 */
export interface RefusedInbound {
  readonly id?: string;
  readonly type?: string;
  readonly from?: string;
  readonly to?: string;
  /** The node the frame names (not verified). */
  readonly fromNode?: string;
  readonly code: ErrorCode;
  /** Why, naming the signature, the roster or the replay. */
  readonly reason: string;
}

/** A peer node's signed digest frame, as the transport verified it. */
export interface DigestReport {
  /** The digest frame's id, as the signing node wrote it. */
  readonly id: string;
  /** The signing node. */
  readonly fromNode: string;
  /** The proof to keep (JSON: signature and covers). */
  readonly proof: string;
  /** The SHA-256 (hex) of the frame's body, which the signature covers. */
  readonly payloadHash: string;
}

/** How the receiving node answers one inbound message (each method at most once, but progress). */
export interface Responder {
  reply(payloadJson: string): void;
  error(code: ErrorCode, message: string): void;
  progress(fraction: number, note?: string): void;
}

/** What the transport keeps for one inbound message. */
export interface InboundHandle {
  /** The sender cancelled: aborts the handler's `ctx.signal` (or withdraws it from the mailbox). */
  cancel(reason: string): void;
}

/** The narrow port a transport calls on the receiving node. */
export interface InboundPort {
  receive(inbound: InboundMessage, responder: Responder): InboundHandle;
  /**
   * A claim this node held was taken by `holder` after this node missed its renewals (a
   * pause, a partition): the local agent is unregistered (its handle is dead), `agent:lost`
   * is emitted and `ready()` rejects with DUPLICATE_AGENT until the id is registered here
   * again, so one id is never served by two nodes. Stop serving the id before calling, and
   * report only the claim still current (not one released or claimed again since).
   */
  claimLost?(agentId: string, holder: string): void;
  /**
   * The transport refused a frame for its proof (signature, roster, sealing) or as a replay:
   * it was neither delivered nor answered. The receiving node records a `denied` row and
   * emits `message:denied`.
   */
  refused?(report: RefusedInbound): void;
  /**
   * A peer node's signed digest (verified by the transport): the covers of frames it sent
   * this node authenticated by a MAC only. The receiving node records it in its log as a
   * `digest` record (no agent, no conversation: never a message entry), where `switchboard
   * verify --roster` reads it as the proof of the rows it covers.
   */
  digest?(report: DigestReport): void;
  /**
   * The cross-node messages this node's log recorded at or after `since` (epoch ms): a
   * restarted node refuses their repeats (a replay captured before the restart). At most
   * `limit`, newest first. Undefined when the log does not outlive the process (`:memory:`,
   * `audit: false`): there is nothing to read back, so the transport refuses every message
   * signed before it started instead.
   */
  admitted?(since: number, limit: number): Array<{ id: string; from: string; to: string; ts: number }> | undefined;
  /**
   * The peer nodes' digest frames this node's log recorded at or after `since` (epoch ms), at
   * most `limit`, newest first: a restarted node refuses their repeats too.
   */
  admittedDigests?(since: number, limit: number): Array<{ id: string; node: string; ts: number }>;
  /**
   * This node's approval queue and its events, for a transport that lets the fleet's
   * operators list and decide held messages (NATS: `fleetApprovals`). The transport checks
   * who asks; the queue decides each message once.
   */
  readonly desk?: ApprovalDeskPort;
}

/** A node's approval queue as a transport serves it to the fleet's operators. */
export interface ApprovalDeskPort {
  readonly events: BusEventSource;
  readonly approvals: Approvals;
  /**
   * The transport refused an operator's request (who signed it, its signature, its time, a
   * replay, its shape) before the queue saw it: the node emits `operator:refused`, or writes
   * a process warning when nobody listens.
   */
  refused?(report: RefusedDeskRequest): void;
}

/**
 * An operator's request the transport refused. `operator` and `messageId` are as the request
 * names them (unverified when the refusal is about who signed it), cut short.
 */
export interface RefusedDeskRequest {
  readonly request: 'list' | 'decide';
  readonly operator?: string;
  readonly messageId?: string;
  readonly code: ErrorCode;
  /** Why, naming the roster, the signature, the time or the field. */
  readonly reason: string;
}

/**
 * How messages reach agents on other nodes. One instance per orchestrator
 * (`new Orchestrator({ node, transport })`). Every method but `send`, `attach`, `ready`
 * and `close` is on the hot path and must be synchronous and allocation-free for ids it
 * does not serve.
 */
export interface Transport {
  /**
   * Called once, by the orchestrator's constructor: this node's id and the port inbound
   * messages go to. Connect here (or lazily); report the outcome through `ready()`.
   */
  attach(node: string, port: InboundPort): void;
  /** Only asked for ids that are not registered on this node. */
  locate(agentId: string): Location;
  /** The node serving `agentId`, when `locate` says 'remote'. */
  nodeOf(agentId: string): string | undefined;
  /**
   * Every agent served by another node (a snapshot; the same empty array when there are none).
   * Hand out a new array whenever the directory changes and the same one while it does not:
   * the receiving side indexes it once per array (by identity), so a changed array in place
   * would go unseen.
   */
  remoteAgents(): readonly RemoteAgent[];
  /**
   * Claims `agent.id` bus-wide for this node. Returns undefined when the claim is decided
   * at once (in-process), else a promise that rejects with `DUPLICATE_AGENT` naming the
   * holder; the orchestrator then kills the handle and `ready()` rejects.
   */
  claim(agent: RemoteAgent): Promise<void> | undefined;
  /** Gives up the claim (unregister, close). */
  release(agentId: string): void;
  /**
   * Carries one checked, committed message to `outbound.node`. Must not throw: a message
   * that cannot leave is answered with `sink.error('TRANSPORT_UNAVAILABLE', …)`.
   */
  send(outbound: OutboundMessage, sink: OutboundSink): OutboundHandle;
  /** Resolves when this node can reach and be reached by every node (claims settled). */
  ready(): Promise<void>;
  /** Disconnects; called by `bus.close()` after the pipeline shut down. */
  close(): Promise<void>;
  /**
   * True when this transport cannot prove which node sent a message (an insecure fleet):
   * every cross-node audit row is then marked unverified.
   */
  readonly unverified?: boolean;
}

const NONE: readonly RemoteAgent[] = Object.freeze([]);
const READY = Promise.resolve();

/**
 * The default transport: one process, no other nodes. Every id it is asked about is
 * unknown, claims are decided by the local registry alone, and nothing is ever sent.
 */
export class InProcessTransport implements Transport {
  attach(_node: string, _port: InboundPort): void {}
  locate(): Location {
    return 'unknown';
  }
  nodeOf(): string | undefined {
    return undefined;
  }
  remoteAgents(): readonly RemoteAgent[] {
    return NONE;
  }
  claim(): undefined {
    return undefined;
  }
  release(): void {}
  send(outbound: OutboundMessage, sink: OutboundSink): OutboundHandle {
    sink.error('TRANSPORT_UNAVAILABLE', `no transport carries messages to node "${outbound.node}"`);
    return { cancel: () => undefined };
  }
  ready(): Promise<void> {
    return READY;
  }
  close(): Promise<void> {
    return READY;
  }
}

/** True when `value` has every method of a Transport (for the options schema). */
export function isTransport(value: unknown): value is Transport {
  if (typeof value !== 'object' || value === null) return false;
  const t = value as Record<string, unknown>;
  return ['attach', 'locate', 'nodeOf', 'remoteAgents', 'claim', 'release', 'send', 'ready', 'close'].every((m) => typeof t[m] === 'function');
}

// Frozen like every face handed across the seam.
freezeClass(InProcessTransport);
