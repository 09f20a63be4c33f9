import { nanoid } from 'nanoid';
import { z } from 'zod';
import { Agent, type AgentPort } from './agent.js';
import type { Approvals, ApproveOptions, PendingApproval, RejectOptions } from './approvals.js';
import { NullAuditLog } from './audit/null.js';
import { DEFAULT_MAX_WAL_BYTES, SqliteAuditLog } from './audit/sqlite.js';
import { WorkerAuditLog } from './audit/worker-log.js';
import { isHoldStore, type AuditLog, type ChainHead, type MessageLogEntry, type MessageLogQuery, type VerifyOptions, type VerifyResult } from './audit/types.js';
import { systemClock, type Clock } from './clock.js';
import { defineContracts, type AnyContracts, type Contracts } from './contracts.js';
import { RULE_TYPES, type RuleType } from './envelope.js';
import { BusError, describe, ErrorCode, toBusError } from './errors.js';
import { BusEmitter, eventsFace, type BusEventSource } from './events.js';
import { GroupCommit } from './group-commit.js';
import { freezeObject } from './frozen.js';
import type { AgentInfo, Handler, HandlerMap } from './types.js';
import { AGENT_ID_PATTERN } from './ids.js';
import { TokenBucket, type RateSpec } from './limits.js';
import { Mailbox } from './mailbox.js';
import { formatOptionIssues, safeParseInput } from './options-schema.js';
import { resolveOptions, type OrchestratorOptions, type ResolvedOptions } from './options.js';
import { lintRules, type PolicyLint, type PolicyRule } from './policy.js';
import { PolicyStore } from './policy-store.js';
import type { ApprovalResult } from './approvals.js';
import type { AgentRecord } from './pipeline/records.js';
import { RefusalSummaries } from './pipeline/refusal-summary.js';
import { Pipeline } from './pipeline/send.js';
import { InProcessTransport, type InboundPort, type RefusedDeskRequest, type Transport } from './pipeline/transport.js';
import { guardTelemetry, type Telemetry } from './telemetry-port.js';
import { WarningSummary } from './warning-summary.js';

/** Options of `bus.register(id, options)`. */
export interface RegisterOptions<C extends Contracts = AnyContracts> {
  /** Handlers by intent; `'*'` is the fallback. More can be added with `agent.handle()`. */
  handlers?: HandlerMap<C>;
  /** Handlers of this agent running at once. @default 1 */
  concurrency?: number;
  /** Messages waiting in its mailbox at most (MAILBOX_FULL beyond). @default limits.maxQueue (1000) */
  maxQueue?: number;
  /** Its own token bucket instead of `limits.rate`, or `false` for none. */
  rate?: RateSpec | false;
  /** What it can do, for `discover()`. @default [] */
  capabilities?: readonly string[];
  /** Its trust score, for rules with `minTrust`. @default 0 */
  trust?: number;
}

/** What `explain()` answers: the decision without sending. */
export interface Explanation {
  decision: 'allow' | 'deny' | 'approval';
  /** The deciding rule, when one decided. */
  rule?: PolicyRule;
  reason: string;
  /** The rule set version the decision was made under. */
  policyVersion: number;
}

const rateSchema = z.strictObject({ perSecond: z.number().positive().finite(), burst: z.number().int().positive() });
const registerSchema = z.strictObject({
  // Checked by hand below: zod's record reads `.constructor`, and intents may be named that.
  handlers: z.custom<Record<string, Handler>>((v) => typeof v === 'object' && v !== null, 'handlers must be an object').optional(),
  concurrency: z.union([z.number().int().positive(), z.literal(Infinity)]).optional(),
  maxQueue: z.number().int().min(0).optional(),
  rate: z.union([rateSchema, z.literal(false)]).optional(),
  capabilities: z.array(z.string().min(1).max(128)).max(256).optional(),
  trust: z.number().finite().optional(),
});

const explainSchema = z.strictObject({
  from: z.string(),
  to: z.string(),
  type: z.enum(RULE_TYPES),
  intent: z.string().min(1),
});

/**
 * The bus. Agents get handles from it and talk only through it; it checks every message
 * against the policy and limits, holds what needs a human, records everything in the audit
 * log before delivery, and enforces deadlines.
 *
 * @example
 * const bus = new Orchestrator({ policies: [{ from: 'research', to: 'writer', allow: ['ask'] }] });
 * bus.register('writer', { handlers: { clarify: (q) => ({ answer: 'for engineers' }) } });
 * const research = bus.register('research');
 * await research.ask('writer', 'clarify', { q: 'Audience?' }); // { answer: 'for engineers' }
 * await bus.close();
 */
// The default is `any`, not `AnyContracts`: `Orchestrator` written without a type argument is
// the untyped face, and a bus built with contracts must fit where it is expected (a helper
// taking `bus: Orchestrator`). Replies of an untyped bus still come out as `unknown`.
export class Orchestrator<C extends Contracts = any> {
  /** Subscribe to what happens on the bus. A listener that throws never breaks it. */
  readonly events: BusEventSource;
  /** The human approval queue. */
  readonly approvals: Approvals;

  readonly #options: ResolvedOptions;
  readonly #registry = new Map<string, AgentRecord>();
  readonly #emitter = new BusEmitter();
  readonly #policy: PolicyStore;
  readonly #audit: AuditLog;
  readonly #commit: GroupCommit;
  readonly #pipeline: Pipeline;
  readonly #transport: Transport;
  readonly #remoteTrust: ReadonlyMap<string, number>;
  readonly #clock: Clock;
  readonly #refusals: RefusalSummaries;
  /** The `telemetry` option, guarded: its calls never throw. */
  readonly #telemetry: Telemetry;
  /** Bus-wide id claims still in flight (with a transport); `ready()` waits for them. */
  readonly #claims = new Set<Promise<void>>();
  /** Ids another node took over at run time, until registered here again: `ready()` rejects with the first. */
  readonly #lostClaims = new Map<string, BusError>();
  /** Warnings of refused operator requests when nobody listens for `operator:refused`: a flood costs a few lines a minute. */
  readonly #operatorWarnings = new WarningSummary('SWITCHBOARD_OPERATOR_REFUSED', 'operator requests');
  #closing: Promise<void> | undefined;

  /** True once `close()` was called: nothing can be sent or decided any more (the approval page shows it). */
  get closed(): boolean {
    return this.#pipeline.closed;
  }

  /** This process's node id (`options.node`, default random). */
  readonly node: string;

  constructor(options: OrchestratorOptions<C> = {}) {
    const o = resolveOptions(options);
    this.#options = o;
    if (o.contracts !== undefined) defineContracts(o.contracts as Record<string, never>);
    this.#clock = o.clock ?? systemClock;
    this.#policy = new PolicyStore(o.policies);
    this.#audit = openAudit(o.audit, (walBytes, maxWalBytes) => {
      if (this.#emitter.has('audit:backpressure')) this.#emitter.emit('audit:backpressure', { walBytes, maxWalBytes });
    });
    this.#commit = new GroupCommit(o.audit === false ? undefined : this.#audit, 250, (error, records) => {
      if (this.#emitter.has('audit:error')) this.#emitter.emit('audit:error', { error, records });
    });
    const telemetry = (this.#telemetry = guardTelemetry(o.telemetry));
    if (telemetry.enabled) this.#commit.onTimed = (ms, records) => telemetry.commitTimed(ms, records);
    this.node = o.node ?? `node-${nanoid(10)}`;
    this.#transport = o.transport ?? new InProcessTransport();
    this.#remoteTrust = o.remoteTrust;
    const globalRate = o.globalRate === false ? undefined : new TokenBucket(o.globalRate, this.#clock.now());
    const registry = this.#registry;
    this.#refusals = new RefusalSummaries(
      (record) => this.#commit.stage(record),
      // A local sender's own rate; a remote or departed one gets what a remote sender gets here.
      (from) => {
        const sender = registry.get(from);
        return (sender !== undefined ? sender.bucket?.spec : o.rate === false ? undefined : o.rate) ?? globalRate?.spec;
      },
      // Ids no node is known to serve (a peer can make them up) share one bucket of refusal rows.
      (from) => (registry.has(from) || this.#transport.nodeOf(from) !== undefined ? from : UNKNOWN_SENDERS),
    );
    this.#pipeline = new Pipeline({
      registry: this.#registry,
      policy: this.#policy,
      commit: this.#commit,
      events: this.#emitter,
      clock: this.#clock,
      nextId: o.ids ?? defaultIds(),
      contracts: o.contracts,
      maxPayloadBytes: o.maxPayloadBytes,
      maxDepth: o.maxDepth,
      askMs: o.askMs,
      delegateMs: o.delegateMs,
      approvalTtlMs: o.approvalTtlMs,
      maxPending: o.maxPending,
      maxPendingPerSender: o.maxPendingPerSender,
      globalRate,
      callSites: o.callSites,
      transport: this.#transport,
      telemetry,
      node: this.node,
      remoteRate: o.rate,
      remoteTrust: o.remoteTrust,
      inboundShare: o.inboundShare,
      refusals: this.#refusals,
      holdStore: isHoldStore(this.#audit) ? this.#audit : undefined,
    });
    this.events = eventsFace(this.#emitter);
    const pipeline = this.#pipeline;
    this.approvals = Object.freeze({
      list: (): PendingApproval[] => pipeline.listApprovals(),
      approve: (id: string, opts?: ApproveOptions): ApprovalResult => pipeline.approve(id, opts),
      reject: (id: string, opts?: RejectOptions): void => pipeline.reject(id, opts),
    });
    this.#port = {
      request: (sender, type, to, intent, payload, opts, parent) => pipeline.request(sender, type, to, intent, payload, opts, parent),
      notify: (sender, intent, payload, opts, parent) => pipeline.notify(sender, intent, payload, opts, parent),
      reply: (sender, inReplyTo, payload) => pipeline.reply(sender, inReplyTo, payload),
      discover: (from, capability) => this.#discover(from, capability),
    };
    if (isHoldStore(this.#audit) && this.#audit.keepsHolds) {
      try {
        this.#pipeline.restore(this.#audit.holds());
      } catch (error) {
        // Nothing else holds the log yet: close it, or its worker would outlive this failed constructor.
        this.#pipeline.shutdown();
        this.#audit.close();
        throw toBusError(error, 'AUDIT_UNAVAILABLE');
      }
    }
    const inbound = this.#pipeline.inbound;
    this.#transport.attach(
      this.node,
      freezeObject({
        receive: (message, responder) => inbound.receive(message, responder),
        claimLost: (agentId: unknown, holder: unknown) => this.#claimLost(agentId, holder),
        refused: (report) => inbound.refused(report),
        digest: (report) => inbound.digest(report),
        admitted: (since, limit) => this.#admitted(since, limit),
        admittedDigests: (since, limit) => this.#admittedDigests(since, limit),
        desk: freezeObject({ events: this.events, approvals: this.approvals, refused: (report: RefusedDeskRequest) => this.#operatorRefused(report) }),
      } satisfies InboundPort),
    );
  }

  /**
   * The transport says another node took over an id this node served. Two nodes must never
   * serve one id, so the local agent goes (its handle dies, as with a DUPLICATE_AGENT at
   * registration), `ready()` rejects, and `agent:lost` says so (a warning when nobody listens).
   */
  #claimLost(agentId: unknown, holder: unknown): void {
    if (typeof agentId !== 'string' || this.#pipeline.closed) return;
    const record = this.#registry.get(agentId);
    if (record === undefined) return;
    const known = typeof holder === 'string' && AGENT_ID_PATTERN.test(holder);
    const by = known ? holder : 'another node';
    const error = new BusError('DUPLICATE_AGENT', `agent id "${agentId}" was taken over by ${known ? `node "${by}"` : by} after this node "${this.node}" missed its lease renewals; its handle here is dead`, { agentId });
    this.unregister(agentId);
    this.#lostClaims.set(agentId, error);
    if (this.#emitter.has('agent:lost')) this.#emitter.emit('agent:lost', { agentId, holder: by, error });
    else process.emitWarning(`agent-switchboard: ${error.message}`, { code: 'SWITCHBOARD_AGENT_LOST' });
  }

  /**
   * The transport refused an operator's request before the approval queue saw it: said as
   * `operator:refused`, or as a warning when nobody listens (a fleet's operator expects a
   * forged or replayed decision to leave a trace on the node it was aimed at).
   */
  #operatorRefused(report: RefusedDeskRequest): void {
    if (this.#closing !== undefined) return;
    const cut = (v: unknown, n: number): string | undefined => (typeof v === 'string' ? v.slice(0, n) : undefined);
    const request = report.request === 'list' ? 'list' : 'decide';
    const operator = cut(report.operator, 80);
    const messageId = cut(report.messageId, 300);
    const code: ErrorCode = typeof report.code === 'string' && Object.hasOwn(ErrorCode, report.code) ? report.code : 'POLICY_DENIED';
    const reason = cut(report.reason, 1024) ?? 'refused';
    if (this.#emitter.has('operator:refused')) {
      this.#emitter.emit('operator:refused', { request, ...(operator !== undefined ? { operator } : {}), ...(messageId !== undefined ? { messageId } : {}), code, reason });
      return;
    }
    const who = operator === undefined ? 'a request' : `a request naming operator ${JSON.stringify(operator)}`;
    this.#operatorWarnings.warn(code, `node "${this.node}" refused ${who} to ${request}${messageId !== undefined ? ` message ${JSON.stringify(messageId)}` : ''} (${code}): ${reason}`);
  }

  /**
   * The cross-node messages recorded since `since`, newest first: what a restarted node must
   * not take again. Undefined when the log does not outlive this process (nothing to read back).
   */
  #admitted(since: number, limit: number): Array<{ id: string; from: string; to: string; ts: number }> | undefined {
    if (this.#options.audit === false || (isHoldStore(this.#audit) && !this.#audit.keepsHolds)) return undefined;
    const out: Array<{ id: string; from: string; to: string; ts: number }> = [];
    let beforeSeq: number | undefined;
    while (out.length < limit) {
      const page = this.getMessageLog({ since, limit: Math.min(10_000, limit - out.length), ...(beforeSeq === undefined ? {} : { beforeSeq }) });
      for (const e of page) if (e.peerNode !== undefined && e.type !== 'reply') out.push({ id: e.messageId, from: e.from, to: e.to, ts: e.ts });
      if (page.length === 0) break;
      beforeSeq = page.at(-1)!.seq;
    }
    return out;
  }

  /** The peer digests recorded since `since`, newest first (a log without `peerDigests` has none to give). */
  #admittedDigests(since: number, limit: number): Array<{ id: string; node: string; ts: number }> {
    const log = this.#audit;
    if (log.peerDigests === undefined) return [];
    this.#flushAudit();
    const out: Array<{ id: string; node: string; ts: number }> = [];
    // Newest first, down to the first one recorded before `since`: a restart reads the window, not the whole log.
    for (let before = Number.MAX_SAFE_INTEGER; out.length < limit; ) {
      const page = log.peerDigests({ beforeSeq: before, limit: Math.min(10_000, limit - out.length) });
      for (const d of page) {
        if (d.ts < since) return out;
        out.push({ id: d.digestId, node: d.peerNode, ts: d.ts });
      }
      if (page.length === 0) break;
      before = page.at(-1)!.seq;
    }
    return out;
  }

  readonly #port: AgentPort;

  /**
   * Registers an agent and returns its handle: the only way to send as it.
   * Throws INVALID_ARGUMENT for a bad id or options, DUPLICATE_AGENT for a taken id.
   */
  register(id: string, options: RegisterOptions<C> = {}): Agent<C> {
    if (this.#pipeline.closed) throw new BusError('CLOSED', 'the orchestrator is closed');
    checkAgentId(id);
    if (this.#registry.has(id)) throw new BusError('DUPLICATE_AGENT', `an agent "${id}" is already registered`, { agentId: id });
    if (this.#registry.size >= this.#options.maxAgents) {
      throw new BusError('INVALID_ARGUMENT', `cannot register "${id}": ${this.#registry.size} agents are registered, the limit (limits.maxAgents)`);
    }
    const parsed = safeParseInput(registerSchema, options, `register("${id}") options`);
    if (!parsed.success) throw new BusError('INVALID_ARGUMENT', `register("${id}"): ${formatOptionIssues(parsed.error)}`);
    const o = parsed.data;
    const handlers = checkHandlers(id, o.handlers);
    const rate = o.rate ?? this.#options.rate;
    const record: AgentRecord = {
      id,
      handlers,
      mailbox: new Mailbox(o.concurrency ?? 1, o.maxQueue ?? this.#options.maxQueue),
      bucket: rate === false ? undefined : new TokenBucket(rate, this.#clock.now()),
      capabilities: Object.freeze([...(o.capabilities ?? [])]),
      trust: o.trust ?? 0,
      alive: true,
      outgoing: new Set(),
      incoming: new Set(),
      deliveries: new Set(),
    };
    const holder = this.#transport.remoteAgents().find((a) => a.id === id);
    if (holder !== undefined) {
      throw new BusError('DUPLICATE_AGENT', `an agent "${id}" is already registered on another node: "${String(holder.node).slice(0, 128)}"`, { agentId: id });
    }
    if (this.#telemetry.enabled) record.mailbox.onDepth = this.#depthReporter(record);
    this.#registry.set(id, record);
    this.#lostClaims.delete(id); // registered again: its own claim decides now
    const handle = new Agent<C>(record, this.#port);
    this.#pipeline.registered(record);
    const claim = this.#transport.claim({ id, node: this.node, capabilities: record.capabilities, trust: record.trust });
    if (claim !== undefined) {
      // A bus-wide claim in flight: a DUPLICATE_AGENT kills the handle, and ready() rejects.
      const settled = claim.then(
        () => undefined,
        (error: unknown) => {
          if (this.#registry.get(id) === record) this.unregister(id);
          throw toBusError(error, 'DUPLICATE_AGENT');
        },
      );
      settled.catch(() => undefined);
      this.#claims.add(settled);
    }
    return handle;
  }

  /**
   * Removes an agent: asks to it fail (UNKNOWN_AGENT), its own are cancelled, its handle is
   * dead for good. Returns false if no such agent was registered.
   */
  unregister(id: string): boolean {
    const record = this.#registry.get(id);
    if (record === undefined) return false;
    this.#registry.delete(id);
    this.#pipeline.unregister(record);
    this.#transport.release(id);
    this.#telemetry.agentRemoved(id);
    return true;
  }

  /** Reports an agent's mailbox depth while it is registered and the bus open. */
  #depthReporter(record: AgentRecord): (depth: number) => void {
    const telemetry = this.#telemetry;
    const pipeline = this.#pipeline;
    return (depth) => {
      if (record.alive && !pipeline.closed) telemetry.mailboxDepth(record.id, depth);
    };
  }

  /**
   * The registered agents (a snapshot): this node's, then those other nodes serve (with
   * `node`). There is no way to get another agent's handle.
   */
  agents(): readonly AgentInfo[] {
    const local: AgentInfo[] = Array.from(this.#registry.values(), (r) => Object.freeze({ id: r.id, capabilities: r.capabilities, trust: r.trust }));
    for (const r of this.#transport.remoteAgents()) {
      // The trust this node grants, never the one the other node claims for its agent.
      if (!this.#registry.has(r.id)) local.push(Object.freeze({ id: r.id, capabilities: r.capabilities, trust: this.#remoteTrust.get(r.id) ?? 0, node: r.node }));
    }
    return Object.freeze(local);
  }

  /**
   * Resolves when the bus can reach and be reached by every node of its transport, and
   * every bus-wide id claim made so far is settled (at once with the in-process default).
   * Rejects with DUPLICATE_AGENT when another node holds an id registered here.
   */
  async ready(): Promise<void> {
    await this.#transport.ready();
    while (this.#claims.size > 0) {
      const pending = [...this.#claims];
      this.#claims.clear();
      await Promise.all(pending);
    }
    for (const lost of this.#lostClaims.values()) throw lost;
  }

  /** Replaces the rule set atomically (a bad set changes nothing). Returns the new version. */
  setPolicies(rules: readonly PolicyRule[]): number {
    return this.#policy.replace(rules);
  }

  /** The rules in force (frozen). */
  policies(): readonly PolicyRule[] {
    return this.#policy.current.rules;
  }

  /** The version of the rules in force; every decision records it. */
  get policyVersion(): number {
    return this.#policy.current.version;
  }

  /** The contracts the bus was built with (the same object), or undefined without. Adapters read their schemas from it. */
  get contracts(): C | undefined {
    return this.#options.contracts as C | undefined;
  }

  /** Shadowed or never-matching rules in the set in force. */
  lintPolicies(): PolicyLint[] {
    return lintRules(this.#policy.current.rules);
  }

  /**
   * The policy's decision for a message, without sending it. The sender's and the
   * recipient's trust are what this node knows: an agent registered here has its own, one
   * of another node what `remoteTrust` grants it, any other 0.
   */
  explain(request: { from: string; to: string; type: RuleType; intent: string }): Explanation {
    const parsed = safeParseInput(explainSchema, request, 'explain()');
    if (!parsed.success) throw new BusError('INVALID_ARGUMENT', `explain(): ${formatOptionIssues(parsed.error)}`);
    const { from, to, type, intent } = parsed.data;
    const d = this.#policy.current.evaluate({ from, to, type, intent, trust: this.#trustOf(from), recipientTrust: this.#trustOf(to) });
    return { decision: d.decision, reason: d.reason, policyVersion: d.policyVersion, ...(d.rule !== undefined ? { rule: d.rule } : {}) };
  }

  /** Audit entries, newest first: one per message and recipient, with its latest outcome. */
  getMessageLog(query: MessageLogQuery = {}): MessageLogEntry[] {
    this.#flushAudit();
    return this.#audit.query(query);
  }

  /** Checks the audit log's hash chain end to end; given `head` (from {@link auditHead}), also that the log still holds it. */
  verifyAuditLog(options?: VerifyOptions): VerifyResult {
    this.#flushAudit();
    return this.#audit.verify(options);
  }

  /** The audit log's last committed record `{ seq, hash }`: keep it elsewhere to detect a truncated tail later. */
  auditHead(): ChainHead {
    this.#flushAudit();
    return this.#audit.head?.() ?? { seq: 0, hash: '0'.repeat(64) };
  }

  /**
   * The result of a message of this bus's audit log, sent before or after a restart: the
   * reply (resolved) or the `BusError` of its outcome (rejected). A message still in flight
   * or held is waited for. A restored message's reply is kept in the log until read here;
   * a reply that went to its (live) sender is not kept, and says so (INVALID_ARGUMENT).
   * Rejects with INVALID_ARGUMENT for an id the log does not hold, CLOSED once the bus closes.
   *
   * @example
   * const job = bus.approvals.list()[0]            // restored after a restart
   * bus.approvals.approve(job.id, { by: 'ops' })
   * const reply = await bus.result(job.envelope.id) // what the handler returned
   */
  result(messageId: string): Promise<unknown> {
    return this.#pipeline.result(messageId);
  }

  /**
   * Writes every staged audit row now (they are otherwise written at the end of the tick),
   * open refusal summaries included (otherwise written within a second).
   */
  async flush(): Promise<void> {
    this.#flushAudit();
  }

  /**
   * Resolves when nothing is in flight: no handler running or waiting, nothing staged for
   * the audit log. Held approvals and asks waiting for a reply from outside do not count.
   */
  async onIdle(): Promise<void> {
    for (;;) {
      this.#flushAudit();
      const busy = [...this.#registry.values()].filter((r) => r.mailbox.running + r.mailbox.queued > 0);
      if (busy.length === 0) {
        await Promise.resolve();
        const again = [...this.#registry.values()].some((r) => r.mailbox.running + r.mailbox.queued > 0);
        if (!again) return;
        continue;
      }
      await Promise.all(busy.map((r) => r.mailbox.onIdle()));
    }
  }

  /**
   * Stops new sends (CLOSED), fails pending asks with CLOSED, cancels held approvals (with a
   * file log they stay held in the file instead, for the next bus opened on it),
   * aborts running handlers and waits for them at most `timeouts.closeMs`, writes every
   * audit row, closes the database. Leaves no timer behind. Idempotent.
   */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    this.#pipeline.shutdown();
    this.#commit.flush();
    const running = [...this.#registry.values()].map((r) => r.mailbox.onIdle());
    let timer: ReturnType<typeof setTimeout> | undefined;
    if (this.#options.closeMs > 0 && running.length > 0) {
      await Promise.race([Promise.all(running), new Promise<void>((resolve) => (timer = setTimeout(resolve, this.#options.closeMs)))]);
    }
    if (timer !== undefined) clearTimeout(timer);
    this.#refusals.close();
    this.#operatorWarnings.close();
    this.#commit.flush();
    this.#commit.shutdown();
    this.#audit.close();
    if (this.#telemetry.enabled) {
      // The gauges of a closed bus would report its last values forever.
      for (const id of this.#registry.keys()) this.#telemetry.agentRemoved(id);
      this.#telemetry.approvalsHeld(0);
    }
    for (const id of this.#registry.keys()) this.#transport.release(id);
    await this.#transport.close();
    this.#emitter.clear();
  }

  /** Stages every open refusal summary, then writes everything staged. */
  #flushAudit(): void {
    this.#refusals.flush();
    this.#commit.flush();
  }

  /** The trust this node knows for `id`: its registered trust, else what `remoteTrust` grants it, else 0. */
  #trustOf(id: string): number {
    return this.#registry.get(id)?.trust ?? this.#remoteTrust.get(id) ?? 0;
  }

  #discover(from: AgentRecord, capability: string): string[] {
    const set = this.#policy.current;
    // An intent no rule names decides like every other such intent: test each named one and one more.
    const intents = new Set<string>();
    for (const rule of set.rules) for (const intent of rule.intents ?? []) intents.add(intent);
    let unnamed = '\u0000any';
    while (intents.has(unnamed)) unnamed += '_';
    intents.add(unnamed);
    const found: string[] = [];
    const consider = (id: string, capabilities: readonly string[], recipientTrust: number) => {
      if (id === from.id || !capabilities.includes(capability)) return;
      const reachable = (['ask', 'delegate'] as const).some((type) =>
        [...intents].some((intent) => set.evaluate({ from: from.id, to: id, type, intent, trust: from.trust, recipientTrust }).decision !== 'deny'),
      );
      if (reachable) found.push(id);
    };
    for (const record of this.#registry.values()) consider(record.id, record.capabilities, record.trust);
    for (const remote of this.#transport.remoteAgents()) if (!this.#registry.has(remote.id)) consider(remote.id, remote.capabilities, this.#remoteTrust.get(remote.id) ?? 0);
    return found;
  }
}

/** The refusal-summary key of every sender id that neither this node nor its transport knows. */
const UNKNOWN_SENDERS = '\u0000unknown senders';

function openAudit(audit: ResolvedOptions['audit'], onBackpressure: (walBytes: number, maxWalBytes: number) => void): AuditLog {
  if (audit === false) return new NullAuditLog();
  if (typeof (audit as AuditLog).append === 'function') return audit as AuditLog;
  const o = audit as Exclude<ResolvedOptions['audit'], false | AuditLog>;
  const path = o.path ?? ':memory:';
  const options = {
    path,
    ...(o.durability !== undefined ? { durability: o.durability } : {}),
    ...(o.key !== undefined ? { key: o.key } : {}),
    ...(o.busyTimeoutMs !== undefined ? { busyTimeoutMs: o.busyTimeoutMs } : {}),
    ...(o.maxRows !== undefined ? { maxRows: o.maxRows } : {}),
    ...(o.onCommit !== undefined ? { onCommit: o.onCommit } : {}),
    ...(o.maxWalBytes !== undefined ? { maxWalBytes: o.maxWalBytes } : {}),
    onBackpressure: (walBytes: number) => onBackpressure(walBytes, o.maxWalBytes ?? DEFAULT_MAX_WAL_BYTES),
    // Off the bus's thread, also when the log itself is on it (worker: false).
    checkpoints: 'thread' as const,
  };
  try {
    // A file log writes from a worker thread unless told not to; :memory: stays here unless
    // told to go (a worker per bus would slow down test suites that make one bus per test).
    return (path !== ':memory:' && o.worker !== false) || o.worker === true ? new WorkerAuditLog(options) : new SqliteAuditLog(options);
  } catch (cause) {
    if (cause instanceof BusError) throw cause;
    throw new BusError('AUDIT_UNAVAILABLE', `cannot open the audit log at ${JSON.stringify(o.path ?? ':memory:')}: ${(cause as Error).message}`, { cause });
  }
}

/** Unique, short and cheap: a random prefix per orchestrator and a counter. */
function defaultIds(): () => string {
  const prefix = `m${nanoid(8)}-`;
  let n = 0;
  return () => prefix + (n++).toString(36);
}

/** The handlers as a Map, every own key kept (`constructor`, `__proto__` included). */
function checkHandlers(id: string, handlers: unknown): Map<string, Handler> {
  const map = new Map<string, Handler>();
  if (handlers === undefined) return map;
  const proto = Object.getPrototypeOf(handlers);
  if (proto !== Object.prototype && proto !== null) {
    throw new BusError('INVALID_ARGUMENT', `register("${id}"): handlers must be a plain object of functions by intent`);
  }
  for (const intent of Object.getOwnPropertyNames(handlers)) {
    const handler = (handlers as Record<string, unknown>)[intent];
    if (typeof handler !== 'function') {
      throw new BusError('INVALID_ARGUMENT', `register("${id}"): handlers.${intent} must be a function, got ${describe(handler)}`);
    }
    if (intent === '') throw new BusError('INVALID_ARGUMENT', `register("${id}"): a handler's intent cannot be empty`);
    map.set(intent, handler as Handler);
  }
  return map;
}

/** Refuses a bad agent id with a message that says what is wrong with it. */
function checkAgentId(id: unknown): asserts id is string {
  if (typeof id === 'string' && AGENT_ID_PATTERN.test(id)) return;
  let why: string;
  if (typeof id !== 'string') why = `expected a string, got ${describe(id)}`;
  else if (id === '') why = 'it is empty';
  else if (id === '*') why = '"*" is the wildcard of policy rules, never an id';
  else if (id.length > 128) why = `it is ${id.length} characters long (at most 128)`;
  else {
    const bad = [...id].find((ch, i) => !(i === 0 ? /[A-Za-z0-9]/ : /[A-Za-z0-9._:-]/).test(ch));
    const code = bad === undefined ? '' : `U+${bad.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}`;
    why = [...id].indexOf(bad ?? '') === 0 ? `it must start with a letter or digit, not ${code}` : `it contains ${code}, which is not allowed`;
  }
  throw new BusError('INVALID_ARGUMENT', `invalid agent id ${describe(id)}: ${why} (ids match ${AGENT_ID_PATTERN})`);
}
