import type { AuditRecord } from '../audit/types.js';
import { checkSize, copyPlainJson, decodePayload, encodePayload, hashPayload, type EncodedPayload } from '../codec.js';
import { describeIssues, validate } from '../contracts.js';
import type { Envelope } from '../envelope.js';
import { BusError, describe, errorText, MAX_TEXT_LENGTH, toBusError, type ErrorCode } from '../errors.js';
import type { CommitInfo } from '../telemetry-port.js';
import type { Handler } from '../types.js';
import { checkWellFormed, contractOf } from './checks.js';
import type { PipelineConfig } from './config.js';
import type { AfterCommit } from './after-commit.js';
import type { CoreParts } from './parts.js';
import { Context, type ChainPort } from './context.js';
import { envelopeOf, replyDraft, type Draft } from './draft.js';
import type { Journal } from './journal.js';
import type { Ledger } from './ledger.js';
import { Delivery, type AgentRecord, type PendingRequest } from './records.js';
import { requestEnded } from './tracing.js';

const RESOLVED = Promise.resolve();
/** The platform's `then`, kept at load: a handler's native promise is adopted without a second read. */
// eslint-disable-next-line @typescript-eslint/unbound-method
const NATIVE_THEN = Promise.prototype.then as (this: Promise<unknown>, ok: (v: unknown) => void, ko: (e: unknown) => void) => Promise<void>;

/** The core parts and the deliveries: what the approval flow and the cross-node sides are built from. */
export interface PipelineParts extends CoreParts {
  readonly deliveries: Deliveries;
}

/**
 * From an admitted message to its handler and back: reserve a mailbox slot, hand over
 * after the commit, run the handler, read its return value once, answer (after the
 * reply's own commit), and record late replies as dead letters.
 */
export class Deliveries {
  readonly #config: PipelineConfig;
  readonly #journal: Journal;
  readonly #ledger: Ledger;
  readonly #port: ChainPort;
  readonly #after: AfterCommit;
  /** Set by the pipeline's shutdown: late replies are no longer recorded. */
  closed = false;

  constructor({ config, journal, ledger, after }: CoreParts, port: ChainPort) {
    this.#after = after;
    this.#config = config;
    this.#journal = journal;
    this.#ledger = ledger;
    this.#port = port;
  }

  /** A slot in the recipient's mailbox, or NO_HANDLER / MAILBOX_FULL. */
  reserve(envelope: Envelope, recipient: AgentRecord, p: PendingRequest | undefined, parent: Delivery | undefined): Delivery {
    if (!recipient.handlers.has(envelope.intent) && !recipient.handlers.has('*')) {
      throw new BusError('NO_HANDLER', `${recipient.id} has no handler for "${envelope.intent}" and no "*" fallback`, { agentId: recipient.id });
    }
    // A message whose chain already passes through this busy agent is let in at once, full or not.
    const reentrant = parent !== undefined && parent.chainPassesThrough(recipient.id);
    if (!recipient.mailbox.reserve(reentrant)) {
      const box = recipient.mailbox;
      throw new BusError('MAILBOX_FULL', `${recipient.id}'s mailbox is full (${box.running} running, ${box.queued} waiting, maxQueue ${box.maxQueue})`, {
        agentId: recipient.id,
      });
    }
    const delivery = new Delivery(envelope, recipient, p, parent, this.#execute);
    if (p !== undefined) p.delivery = delivery;
    recipient.deliveries.add(delivery);
    return delivery;
  }

  /**
   * Reserves the recipient's mailbox, stages `record`, and hands the message over once the
   * record is committed (reporting `committed` to the telemetry first, for a traced request).
   * Throws NO_HANDLER / MAILBOX_FULL.
   */
  deliver(record: AuditRecord | undefined, envelope: Envelope, recipient: AgentRecord, p: PendingRequest | undefined, parent: Delivery | undefined, committed?: CommitInfo): void {
    this.deliverReserved(this.reserve(envelope, recipient, p, parent), record, p, committed);
  }

  /** {@link deliver} for a slot already reserved: tracks the request, stages `record`, hands over after the commit. */
  deliverReserved(delivery: Delivery, record: AuditRecord | undefined, p: PendingRequest | undefined, committed?: CommitInfo): void {
    if (p !== undefined) this.#ledger.track(p);
    this.#config.commit.stage(
      record,
      () => {
        if (p !== undefined) this.#after.requestCommitted(p, committed);
        this.handOver(delivery);
      },
      (error) => {
        delivery.drop();
        // An approved message's attempt is in the log already: its end must be too (written once the log works).
        if (record?.kind === 'outcome') this.#journal.recordOutcome(delivery.envelope, 'failed', 'AUDIT_UNAVAILABLE', toBusError(error, 'AUDIT_UNAVAILABLE', delivery.envelope.id).message);
        if (p !== undefined) this.#after.requestFailed(p, error);
      },
    );
  }

  /** {@link deliver} with the attempt row of an allowed send (when the log is on). */
  deliverAllowed(draft: Draft, envelope: Envelope, recipient: AgentRecord, p: PendingRequest | undefined, parent: Delivery | undefined, committed?: CommitInfo): void {
    this.deliver(this.#journal.enabled ? this.#journal.attempt(draft, 'allowed', undefined, 'delivered') : undefined, envelope, recipient, p, parent, committed);
  }

  /** After the commit: tell listeners, then put the message in the mailbox (which may start the handler at once). */
  handOver(delivery: Delivery): void {
    if (delivery.phase === 'withdrawn') {
      // Withdrawn while its row was committed (close, unregister): a notify's end is recorded here.
      if (delivery.pending === undefined) this.#notRun(delivery, delivery.abortReason);
      return;
    }
    delivery.phase = 'queued';
    const { events } = this.#config;
    if (events.has('message:delivered')) events.emit('message:delivered', { envelope: delivery.envelope });
    const parent = delivery.parent;
    delivery.recipient.mailbox.push(delivery, parent !== undefined && parent.chainPassesThrough(delivery.recipient.id));
  }

  /**
   * Withdraws what waits in the agent's mailbox and aborts the signals of what runs. The bus
   * gives up on a running handler here, so its run ends here for the telemetry (with the
   * reason's code); what the handler does after is not the bus's.
   */
  abortAll(record: AgentRecord, reason: BusError): void {
    for (const d of [...record.deliveries]) {
      if (!d.started) {
        const queued = d.handedOver; // (read before the drop withdraws it)
        d.drop();
        // A queued notify never runs now: its outcome says so (a request's is the ledger's).
        if (queued && d.pending === undefined) this.#notRun(d, reason);
      }
      d.abort(reason);
      if (d.runToken !== undefined) this.#config.telemetry.handlerEnded(d.runToken, reason.code);
    }
  }

  /** Runs a handler (the mailbox calls this when the job's turn comes). Never rejects. */
  readonly #execute = (d: Delivery): Promise<void> => {
    const p = d.pending;
    if (p !== undefined && p.state === 'settled') {
      d.finish();
      return RESOLVED;
    }
    const handlers = d.recipient.handlers;
    const handler = handlers.get(d.envelope.intent) ?? handlers.get('*');
    if (handler === undefined) {
      d.finish();
      this.#failed(d, new BusError('NO_HANDLER', `${d.recipient.id} has no handler for "${d.envelope.intent}" any more`), 'NO_HANDLER');
      return RESOLVED;
    }
    const telemetry = this.#config.telemetry;
    if (!telemetry.enabled) return this.#run(d, handler);
    // Traced: the handler runs inside its run's context, so what it does is the run's child.
    return telemetry.handlerStarted(d.envelope, (run) => {
      d.runToken = run;
      const done = this.#run(d, handler);
      if (done !== RESOLVED) return done.then(() => telemetry.handlerEnded(run, runEnd(d)));
      telemetry.handlerEnded(run, runEnd(d)); // a synchronous handler: its run ends before its reply is committed
      return RESOLVED;
    });
  };

  /** Calls the handler and reads what it returned (or threw), its `then` once. Never throws or rejects. */
  #run(d: Delivery, handler: Handler): Promise<void> {
    let out: unknown;
    let then: unknown;
    try {
      out = handler(d.envelope.payload, new Context(this.#port, d));
      // Reading `then` is reading the handler's value: a revoked Proxy or a throwing getter fails here.
      if (typeof out === 'object' && out !== null) then = (out as { then?: unknown }).then;
    } catch (error) {
      d.finish();
      this.#failed(d, error, 'HANDLER_FAILED');
      return RESOLVED;
    }
    if (typeof then !== 'function') {
      d.finish();
      this.#returned(d, out);
      return RESOLVED;
    }
    const returned = (value: unknown) => {
      d.finish();
      this.#returned(d, value);
    };
    const failed = (error: unknown) => {
      d.finish();
      this.#failed(d, error, 'HANDLER_FAILED');
    };
    // The `then` read above is the one called: `Promise.resolve(out)` would read it again (a getter could answer differently).
    if (then === NATIVE_THEN) {
      try {
        return NATIVE_THEN.call(out as Promise<unknown>, returned, failed);
      } catch {
        // Not a native promise (a Proxy of one): adopt it as any thenable below.
      }
    }
    return new Promise((resolve, reject) => {
      try {
        (then as (ok: (v: unknown) => void, ko: (e: unknown) => void) => unknown).call(out, resolve, reject);
      } catch (error) {
        reject(error);
      }
    }).then(returned, failed);
  }

  #returned(d: Delivery, value: unknown): void {
    const p = d.pending;
    if (p === undefined) return;
    if (p.repliedExplicitly) return; // answered through reply(): the return value is ignored
    if (p.state === 'settled') {
      this.#deadLetter(d, value);
      return;
    }
    let encoded: EncodedPayload;
    try {
      encoded = this.encodeReply(p, value, 'handler');
    } catch (error) {
      this.#failed(d, error, 'HANDLER_FAILED');
      return;
    }
    this.answer(p, encoded);
  }

  /**
   * Reads a reply once into a frozen plain copy, then checks that very copy against the
   * output contract and the size limit: what is validated is what is delivered.
   * `who` decides the code of a contract refusal.
   */
  encodeReply(p: PendingRequest, value: unknown, who: 'handler' | 'replier'): EncodedPayload {
    const max = this.#config.maxPayloadBytes;
    const plain = copyPlainJson(value, max, 'reply', this.#config.commit.enabled);
    const output = contractOf(this.#config.contracts, p.envelope.intent)?.output;
    if (output !== undefined) {
      const result = validate(output, plain.copy, `the output of "${p.envelope.intent}"`);
      if (!result.success) {
        const message = `reply to "${p.envelope.intent}" does not match its contract: ${describeIssues(result.error)}`;
        throw new BusError(who === 'handler' ? 'HANDLER_FAILED' : 'INVALID_PAYLOAD', message);
      }
    }
    return checkSize(plain, max, 'reply');
  }

  /** Settles a request with its reply: audit the reply, then resolve the asker. */
  answer(p: PendingRequest, encoded: EncodedPayload, onCommit?: () => void, onFail?: (error: BusError) => void, proof?: string): void {
    this.#ledger.settle(p);
    const { commit, events, clock } = this.#config;
    const ask = p.envelope;
    // A reply to another node need not wait for this row: the sender's row of it is the
    // proof. It leaves first, before this row is even built (hashed and encoded).
    const ahead = p.replyAhead;
    if (ahead !== undefined) ahead(encoded.json);
    const draft = replyDraft(this.#config.nextId(), clock.now(), p.recipient.id, ask, encoded, commit.enabled ? hashPayload(encoded) : '');
    const peer = this.#journal.peerOf(ask);
    if (peer !== undefined) draft.peerNode = peer; // a reply across nodes names both
    if (proof !== undefined) draft.proof = proof; // and keeps the replying node's proof
    // The reply row is also the record of the ask's outcome 'replied' (the log folds it in).
    let record: AuditRecord | undefined = commit.enabled ? this.#journal.attempt(draft, 'allowed', undefined, 'delivered') : undefined;
    // A restored message's sender is gone: its reply is kept with its row, for result().
    if (record !== undefined && p.keepReply) record = { ...record, keptReply: encoded.json };
    commit.stage(
      record,
      () => {
        const payload = decodePayload(encoded);
        requestEnded(this.#config.telemetry, p);
        if (ahead === undefined || p.observers !== undefined) p.resolve(payload);
        onCommit?.();
        if (events.has('message:replied')) events.emit('message:replied', { envelope: envelopeOf(draft, ask.priority, ask.depth, undefined, payload) });
      },
      (error) => {
        const e = toBusError(error, 'AUDIT_UNAVAILABLE', ask.id);
        // The reply was refused: the ask's outcome is this failure (held until the log can write it).
        this.#journal.recordOutcome(ask, 'failed', 'AUDIT_UNAVAILABLE', e.message);
        requestEnded(this.#config.telemetry, p, e);
        p.reject(e);
        onFail?.(e);
      },
    );
  }

  /** A notify admitted but withdrawn before its handler ran: `cancelled` when the bus closes, else `failed`. */
  #notRun(d: Delivery, reason: BusError | undefined): void {
    const code = reason?.code ?? 'CLOSED';
    this.#journal.recordOutcome(d.envelope, code === 'CLOSED' ? 'cancelled' : 'failed', code, `${d.recipient.id} never ran it: ${reason?.message ?? 'the orchestrator closed'}`);
  }

  #failed(d: Delivery, error: unknown, code: 'HANDLER_FAILED' | 'NO_HANDLER'): void {
    // `reason` is read safely (errorText): a thrown value can be a revoked Proxy.
    const reason = errorText(error);
    d.failure = code;
    const p = d.pending;
    const envelope = d.envelope;
    if (p === undefined) {
      this.#journal.recordOutcome(envelope, 'failed', code, reason);
      if (this.#config.events.has('message:failed')) this.#config.events.emit('message:failed', { envelope, code, reason });
      return;
    }
    if (p.repliedExplicitly || p.state === 'settled') return;
    // No `cause`: the thrown value is the recipient's object, and nothing of it but its text crosses to the sender.
    const failure = new BusError(code, `${d.recipient.id} failed handling "${envelope.intent}": ${reason}`, {
      messageId: envelope.id,
      agentId: d.recipient.id,
    });
    this.#ledger.fail(p, failure, 'failed');
  }

  /** A reply that came after its request was settled: dropped, audited, and emitted as dead. */
  #deadLetter(d: Delivery, value: unknown): void {
    if (this.closed) return;
    const ask = d.envelope;
    let encoded: EncodedPayload | undefined;
    try {
      encoded = encodePayload(value, this.#config.maxPayloadBytes, 'reply', this.#config.commit.enabled);
    } catch {
      encoded = undefined;
    }
    const { commit, events } = this.#config;
    const draft = replyDraft(this.#config.nextId(), this.#config.clock.now(), d.recipient.id, ask, encoded, commit.enabled && encoded !== undefined ? hashPayload(encoded) : '');
    const reason = `late reply to "${ask.id}": the request was already settled`;
    if (commit.enabled) commit.stage(this.#journal.attempt(draft, 'denied', undefined, 'late-reply', reason));
    if (events.has('message:dead')) {
      const payload = encoded === undefined ? null : decodePayload(encoded);
      events.emit('message:dead', { envelope: envelopeOf(draft, ask.priority, ask.depth, undefined, payload), reason });
    }
  }

  /** Reports progress from a handler to the delegator, asynchronously and only while pending. */
  progress(d: Delivery, fraction: unknown, note: unknown): void {
    if (typeof fraction !== 'number' || !(fraction >= 0 && fraction <= 1)) {
      throw new BusError('INVALID_ARGUMENT', `progress(fraction): expected a number from 0 to 1, got ${describe(fraction)}`);
    }
    if (note !== undefined && (typeof note !== 'string' || note.length > MAX_TEXT_LENGTH)) {
      throw new BusError('INVALID_ARGUMENT', `progress(fraction, note): note must be a string of at most ${MAX_TEXT_LENGTH} characters`);
    }
    if (note !== undefined) checkWellFormed(note, 'progress(fraction, note): note');
    const p = d.pending;
    if (p === undefined || p.state !== 'pending' || p.progressListeners === undefined) return;
    p.reportProgress(Object.freeze(note === undefined ? { fraction } : { fraction, note }));
  }
}

/**
 * How a handler's run ended, for the telemetry: a run whose signal the bus aborted (a
 * deadline, a cancel) ended for that reason, as the audit log's outcome says, whatever the
 * handler then threw or returned; else its own failure, if any.
 */
function runEnd(d: Delivery): ErrorCode | undefined {
  return d.abortReason?.code ?? d.failure;
}
