import { z } from 'zod';
import type { AuditLog, ChainHead } from './audit/types.js';
import { MIN_WAL_BYTES } from './audit/sqlite.js';
import type { Clock } from './clock.js';
import type { Contracts } from './contracts.js';
import type { PolicyRule } from './policy.js';
import type { RateSpec } from './limits.js';
import { AGENT_ID_PATTERN } from './ids.js';
import { isTransport, type Transport } from './pipeline/transport.js';
import { INBOUND_SHARE_DEFAULTS, type InboundShareSpec } from './pipeline/inbound-share.js';
import { parseOptions } from './options-schema.js';
import { isTelemetry, NOOP_TELEMETRY, type Telemetry } from './telemetry-port.js';

/** Options of `new Orchestrator(options)`. Every key is optional; a misspelled key is an error. */
export interface OrchestratorOptions<C extends Contracts = Contracts> {
  /**
   * The policy rules. Default deny: with no rules, every message is refused.
   * @default []
   */
  policies?: readonly PolicyRule[];
  /** Typed intents from `defineContracts()`. */
  contracts?: C;
  limits?: {
    /** Largest payload, in UTF-8 bytes of its JSON. @default 102400 */
    maxPayloadBytes?: number;
    /** Each sender's token bucket (one token per send; replies are free), or `false`. @default { perSecond: 10, burst: 10 } */
    rate?: RateSpec | false;
    /** A bucket shared by all senders, so many ids cannot evade the per-sender one. @default false */
    globalRate?: RateSpec | false;
    /** Longest causal chain (hops). @default 8 */
    maxDepth?: number;
    /** Most agents registered at once. @default 10000 */
    maxAgents?: number;
    /** Default mailbox bound per agent (messages waiting). @default 1000 */
    maxQueue?: number;
    /**
     * Each peer node's fair share of this node, so that one node sending as fast as it can
     * does not starve this node's own senders: at most `maxInFlight` of its messages admitted
     * and unanswered at once (one held for approval does not count), at most `perTurn`
     * admitted per turn of the event loop (the rest wait for a later turn, after the local
     * work queued meanwhile), and at most `maxQueued` waiting; beyond that a message is
     * refused at once with `MAILBOX_FULL`. Time spent waiting comes off its budget. Senders
     * this node's directory does not place on their node share one share. `false` admits
     * everything at once (no fair share). See docs/nodes.md.
     * @default { maxInFlight: 4, perTurn: 2, maxQueued: 1000, maxQueuedBytes: 8388608 }
     */
    inboundPerNode?: InboundPerNode | false;
  };
  timeouts?: {
    /** Deadline of an ask. @default 30000 */
    askMs?: number;
    /** Deadline of a delegate. @default 30000 */
    delegateMs?: number;
    /** How long `close()` waits for running handlers. @default 1000 */
    closeMs?: number;
  };
  /**
   * The audit log: a SQLite database (`:memory:` or a file), `false` for none, or your
   * own {@link AuditLog}.
   * @default { path: ':memory:', durability: 'normal' }
   */
  audit?: AuditOptions | false | AuditLog;
  approvals?: {
    /** How long a held notify waits for a decision (asks and delegates wait until their deadline). @default 300000 */
    ttlMs?: number;
    /** Most messages held at once. @default 1000 */
    maxPending?: number;
    /** Most messages held at once for one sender. @default 100 */
    maxPendingPerSender?: number;
  };
  diagnostics?: {
    /**
     * Record where each ask and delegate was made, so a TIMEOUT's stack points at the
     * caller rather than at the bus's deadline timer. Costs about as much as the rest of
     * an ask (a stack capture per send), so it is off by default: turn it on while
     * debugging. @default false
     */
    callSites?: boolean;
  };
  /** Where the bus reads the time. @default Date.now */
  clock?: Clock;
  /** Message id generator; must return unique strings. @default a random prefix and a counter */
  ids?: () => string;
  /** This process's node id (follows the agent id pattern). @default `node-` and a random suffix */
  node?: string;
  /**
   * How messages reach agents of other nodes (e.g. `natsTransport()` from
   * `agent-switchboard/nats`). @default in-process: one node, nothing to set up
   */
  transport?: Transport;
  /**
   * The trust this node grants agents of other nodes, by id, for rules with `minTrust`. A
   * node never believes another node's word about its own agents' trust (their claims
   * carry one, and a compromised node could raise it), so a remote agent not listed here
   * has trust 0 on this node. @default {} (every remote agent has trust 0)
   * @example remoteTrust: { payment: 5 }
   */
  remoteTrust?: Record<string, number>;
  /**
   * Where the bus reports its sends, handler runs, refusals, commits, mailbox depths and
   * held approvals: `openTelemetry()` from `agent-switchboard/otel` for OpenTelemetry spans
   * and metrics, or your own {@link Telemetry}. A telemetry that throws never breaks the bus
   * (the first throw is reported as a process warning). @default NOOP_TELEMETRY (nothing
   * is built or reported)
   */
  telemetry?: Telemetry;
}

/** `limits.inboundPerNode`: each peer node's fair share of this node. Every key is optional. */
export interface InboundPerNode {
  /** Messages from one node admitted and not yet answered at once. @default 4 */
  maxInFlight?: number;
  /** Messages from one node admitted per turn of the event loop. @default 2 */
  perTurn?: number;
  /** Messages from one node waiting for their turn; beyond it, `MAILBOX_FULL` at once. @default 1000 */
  maxQueued?: number;
  /** Payload bytes (UTF-16 units of the JSON text) of one node's waiting messages; beyond it, `MAILBOX_FULL` at once. @default 8388608 */
  maxQueuedBytes?: number;
}

/** Options of the default SQLite audit log. */
export interface AuditOptions {
  /** `:memory:` or a file path. @default ':memory:' */
  path?: string;
  /** `normal` survives a process crash; `full` also a power loss (an fsync per commit). @default 'normal' */
  durability?: 'normal' | 'full';
  /** Key for an HMAC hash chain, so a writer without it cannot forge rows. */
  key?: string | Uint8Array;
  /** How long a write waits for a lock held by another connection before failing closed. @default 50 */
  busyTimeoutMs?: number;
  /**
   * Write the log from a worker thread, so SQLite and the hash chain run on another
   * core while the bus keeps this one (queries stay synchronous). A `:memory:` log stays on
   * this thread unless this is `true` (a thread per bus costs test suites more than it saves).
   * @default true for a file, false for ':memory:'
   */
  worker?: boolean;
  /**
   * Keep at most this many records: the oldest go first, and verification starts at the
   * oldest kept one. @default 1_000_000 for ':memory:', unbounded for a file
   */
  maxRows?: number;
  /**
   * The most a file log's `-wal` file may hold, in bytes (at least 1 MiB). Past a quarter, the
   * writer checkpoints and truncates it; past three quarters, commits wait for a checkpoint
   * (backpressure, the `audit:backpressure` event) rather than let it grow; if none can be
   * made within 5 s (a reader holds an old snapshot), that batch fails closed with
   * `AUDIT_UNAVAILABLE`, and so do the episode's later ones, at once, until one can. With
   * `worker: false` that one wait blocks this thread. `close()` leaves no WAL behind. A `:memory:` log has no WAL (`maxRows` bounds it).
   * @default 67_108_864 (64 MiB)
   */
  maxWalBytes?: number;
  /** Called after every audit commit with the new head `{ seq, hash }`, e.g. to ship it elsewhere. */
  onCommit?: (head: ChainHead) => void;
}

const positiveInt = z.number().int().positive();
const ms = z.number().int().positive().max(2_147_483_647);
const rate = z.strictObject({ perSecond: z.number().positive().finite(), burst: z.number().int().positive() });

const schema = z.strictObject({
  policies: z.array(z.unknown()).optional(),
  contracts: z.record(z.string(), z.unknown()).optional(),
  limits: z
    .strictObject({
      maxPayloadBytes: positiveInt.optional(),
      rate: z.union([rate, z.literal(false)]).optional(),
      globalRate: z.union([rate, z.literal(false)]).optional(),
      maxDepth: z.number().int().min(0).max(1000).optional(),
      maxAgents: positiveInt.optional(),
      maxQueue: z.number().int().min(0).optional(),
      inboundPerNode: z
        .union([
          z.literal(false),
          z.strictObject({
            maxInFlight: z.number().int().min(1).max(1_000_000).optional(),
            perTurn: z.number().int().min(1).max(1_000_000).optional(),
            maxQueued: z.number().int().min(0).max(10_000_000).optional(),
            maxQueuedBytes: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).optional(),
          }),
        ])
        .optional(),
    })
    .optional(),
  timeouts: z.strictObject({ askMs: ms.optional(), delegateMs: ms.optional(), closeMs: z.number().int().min(0).max(2_147_483_647).optional() }).optional(),
  audit: z
    .union([
      z.literal(false),
      z.custom<AuditLog>(isAuditLog, 'an AuditLog has append, query, verify and close methods'),
      z.strictObject({
        path: z.string().min(1).optional(),
        durability: z.enum(['normal', 'full']).optional(),
        key: z.union([z.string().min(1), z.instanceof(Uint8Array)]).optional(),
        busyTimeoutMs: z.number().int().min(0).max(60_000).optional(),
        worker: z.boolean().optional(),
        maxRows: positiveInt.optional(),
        maxWalBytes: z.number().int().min(MIN_WAL_BYTES).max(Number.MAX_SAFE_INTEGER).optional(),
        onCommit: z.custom<(head: ChainHead) => void>((v) => typeof v === 'function', 'onCommit must be a function').optional(),
      }),
    ])
    .optional(),
  approvals: z
    .strictObject({ ttlMs: ms.optional(), maxPending: z.number().int().min(0).optional(), maxPendingPerSender: z.number().int().min(0).optional() })
    .optional(),
  diagnostics: z.strictObject({ callSites: z.boolean().optional() }).optional(),
  clock: z.custom<Clock>((v) => typeof (v as Clock | null)?.now === 'function', 'a clock has a now() method').optional(),
  ids: z.custom<() => string>((v) => typeof v === 'function', 'ids must be a function returning a string').optional(),
  node: z.string().regex(AGENT_ID_PATTERN, 'a node id follows the agent id pattern').optional(),
  transport: z.custom<Transport>(isTransport, 'a transport implements the Transport interface (attach, locate, nodeOf, remoteAgents, claim, release, send, ready, close)').optional(),
  remoteTrust: z.record(z.string().regex(AGENT_ID_PATTERN, 'remoteTrust keys are agent ids'), z.number().finite()).optional(),
  telemetry: z
    .custom<Telemetry>(
      isTelemetry,
      'a telemetry implements the Telemetry interface (enabled, sendStarted, sendRefused, sendHeld, sendCommitted, sendSettled, handlerStarted, handlerEnded, commitTimed, mailboxDepth, agentRemoved, approvalsHeld): use openTelemetry() from agent-switchboard/otel',
    )
    .optional(),
});

function isAuditLog(value: unknown): value is AuditLog {
  const v = value as Partial<AuditLog> | null;
  return typeof v === 'object' && v !== null && typeof v.append === 'function' && typeof v.query === 'function' && typeof v.verify === 'function' && typeof v.close === 'function';
}

/** The options with every default filled in. */
export interface ResolvedOptions {
  policies: readonly unknown[];
  contracts: Contracts | undefined;
  maxPayloadBytes: number;
  rate: RateSpec | false;
  globalRate: RateSpec | false;
  maxDepth: number;
  maxAgents: number;
  maxQueue: number;
  inboundShare: InboundShareSpec | false;
  askMs: number;
  delegateMs: number;
  closeMs: number;
  audit: AuditOptions | false | AuditLog;
  approvalTtlMs: number;
  maxPending: number;
  maxPendingPerSender: number;
  clock: Clock | undefined;
  ids: (() => string) | undefined;
  callSites: boolean;
  node: string | undefined;
  transport: Transport | undefined;
  /** Read once from the validated copy: later changes to the caller's object change nothing. */
  remoteTrust: ReadonlyMap<string, number>;
  telemetry: Telemetry;
}

/** Validates the options once, strictly, and fills in the defaults. */
export function resolveOptions(input: unknown): ResolvedOptions {
  const o = parseOptions(schema, input ?? {}, 'Orchestrator');
  return {
    policies: o.policies ?? [],
    contracts: o.contracts as Contracts | undefined,
    maxPayloadBytes: o.limits?.maxPayloadBytes ?? 102_400,
    rate: o.limits?.rate ?? { perSecond: 10, burst: 10 },
    globalRate: o.limits?.globalRate ?? false,
    maxDepth: o.limits?.maxDepth ?? 8,
    maxAgents: o.limits?.maxAgents ?? 10_000,
    maxQueue: o.limits?.maxQueue ?? 1000,
    inboundShare: inboundShareOf(o.limits?.inboundPerNode),
    askMs: o.timeouts?.askMs ?? 30_000,
    delegateMs: o.timeouts?.delegateMs ?? 30_000,
    closeMs: o.timeouts?.closeMs ?? 1000,
    audit: (o.audit ?? {}) as AuditOptions | false | AuditLog,
    approvalTtlMs: o.approvals?.ttlMs ?? 300_000,
    maxPending: o.approvals?.maxPending ?? 1000,
    maxPendingPerSender: o.approvals?.maxPendingPerSender ?? 100,
    clock: o.clock,
    ids: o.ids,
    callSites: o.diagnostics?.callSites ?? false,
    node: o.node,
    transport: o.transport,
    remoteTrust: new Map(Object.entries(o.remoteTrust ?? {})),
    telemetry: o.telemetry ?? NOOP_TELEMETRY,
  };
}

/** `limits.inboundPerNode` with its defaults filled in. */
function inboundShareOf(o: { [K in keyof InboundPerNode]?: number | undefined } | false | undefined): InboundShareSpec | false {
  if (o === false) return false;
  return Object.freeze({
    maxInFlight: o?.maxInFlight ?? INBOUND_SHARE_DEFAULTS.maxInFlight,
    perTurn: o?.perTurn ?? INBOUND_SHARE_DEFAULTS.perTurn,
    maxQueued: o?.maxQueued ?? INBOUND_SHARE_DEFAULTS.maxQueued,
    maxQueuedBytes: o?.maxQueuedBytes ?? INBOUND_SHARE_DEFAULTS.maxQueuedBytes,
  });
}
