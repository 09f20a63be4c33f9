import type { Envelope } from '../envelope.js';
import type { BusError, ErrorCode } from '../errors.js';
import type { Expirable } from '../deadlines.js';
import type { TokenBucket } from '../limits.js';
import type { Mailbox, MailboxJob } from '../mailbox.js';
import type { RunToken, SendToken } from '../telemetry-port.js';
import type { Handler, Progress } from '../types.js';

// The pipeline's records: plain data the ledger and delivery keep. No behaviour beyond
// what one record can answer about itself.

/** Everything the bus keeps about one local agent. Never handed to any agent. */
export interface AgentRecord {
  readonly id: string;
  readonly handlers: Map<string, Handler>;
  readonly mailbox: Mailbox;
  /** Undefined when the agent's rate limit is off. */
  readonly bucket: TokenBucket | undefined;
  readonly capabilities: readonly string[];
  readonly trust: number;
  /** False once unregistered: its handle is dead for good. */
  alive: boolean;
  /** Asks and delegates this agent sent that await a reply. */
  readonly outgoing: Set<PendingRequest>;
  /** Asks and delegates addressed to this agent that await its reply. */
  readonly incoming: Set<PendingRequest>;
  /** Every delivery to this agent not yet finished, queued or running (aborted on unregister/close). */
  readonly deliveries: Set<Delivery>;
  /** Set only on the stand-in of an agent another node serves: that node (see remote.ts). */
  readonly node?: string;
}

/** An ask or delegate the ledger keeps until it is answered or given up. */
export class PendingRequest implements Expirable {
  deadline: number;
  heapIndex = -1;
  /** held: awaiting approval; pending: delivered or about to be; settled: done, whatever the outcome. */
  state: 'held' | 'pending' | 'settled' = 'pending';
  /** Answered through `reply()`, so the handler's return value is ignored. */
  repliedExplicitly = false;
  delivery: Delivery | undefined;
  progressListeners: ((progress: Progress) => void)[] | undefined;
  /** Called once when settled (unlinks an AbortSignal listener). */
  onSettle: (() => void) | undefined;
  /** Its attempt row is committed and it went on (to the mailbox, or to the transport). */
  committed = false;
  /** The send's telemetry token (only when telemetry is on). */
  trace: SendToken | undefined = undefined;
  /** Told the outcome after the sender (`bus.result()` callers), when any. */
  observers: ((error: BusError | undefined, value: unknown) => void)[] | undefined = undefined;
  /** Its reply is kept in the log for `result()`: its sender's promise died with an earlier process. */
  keepReply = false;
  /**
   * Set for a request from another node: its reply (the JSON text) leaves at once and its
   * reply row is committed while it travels. The sender's log keeps the reply with this
   * node's proof; if this node's row then fails, its log records the ask as failed.
   */
  replyAhead: ((json: string) => void) | undefined = undefined;
  readonly #resolve: (value: unknown) => void;
  readonly #reject: (error: BusError) => void;

  constructor(
    readonly envelope: Envelope,
    readonly sender: AgentRecord,
    /** Set again when a restored message's recipient registers (it held a stand-in until then). */
    public recipient: AgentRecord,
    readonly timeoutMs: number,
    resolve: (value: unknown) => void,
    reject: (error: BusError) => void,
    /** Where the call was made (with `diagnostics.callSites`), so a TIMEOUT's stack points at the caller. */
    readonly callSite: { stack?: string } | undefined,
  ) {
    this.deadline = envelope.deadline!;
    this.#resolve = resolve;
    this.#reject = reject;
  }

  /** Answers the sender with the reply, then the observers. */
  resolve(value: unknown): void {
    this.#resolve(value);
    if (this.observers !== undefined) this.#tell(undefined, value);
  }

  /** Fails the sender's promise, then tells the observers. */
  reject(error: BusError): void {
    this.#reject(error);
    if (this.observers !== undefined) this.#tell(error, undefined);
  }

  #tell(error: BusError | undefined, value: unknown): void {
    const observers = this.observers!;
    this.observers = undefined;
    for (const observer of observers) observer(error, value);
  }

  /**
   * Tells the progress listeners in a later microtask (a listener's throw is swallowed). A
   * report made while pending is delivered even if the reply settles the request before the
   * microtask runs (a remote reply read in the same socket chunk as the progress before it);
   * it still reaches the listeners before the job's own promise callbacks.
   */
  reportProgress(report: Progress): void {
    const listeners = this.progressListeners;
    if (this.state !== 'pending' || listeners === undefined) return;
    queueMicrotask(() => {
      for (const listener of listeners) {
        try {
          listener(report);
        } catch {
          // A progress listener is the sender's code; it must not break the handler or the carriage.
        }
      }
    });
  }
}

/**
 * Where one delivery is, like {@link PendingRequest.state}: `reserved` (a mailbox slot,
 * before its audit row is committed), `queued` (committed and in the mailbox), `running`,
 * `finished`, or `withdrawn` (left the mailbox before it ran; it never will).
 */
export type DeliveryPhase = 'reserved' | 'queued' | 'running' | 'finished' | 'withdrawn';

/**
 * One message on its way into one handler: a mailbox job, and the node of the causal
 * chain its handler's own sends hang from (for reentrancy and chained deadlines).
 */
export class Delivery implements MailboxJob {
  phase: DeliveryPhase = 'reserved';
  /** Aborting the handler's signal is apart from the phase (see {@link aborted}): a running handler may be aborted. */
  /** The handler run's telemetry token, for the sends of its ctx (only when telemetry is on). */
  runToken: RunToken | undefined = undefined;
  /** Why the handler failed (HANDLER_FAILED, NO_HANDLER), for the run's telemetry (an abort reason, when there is one, comes first). */
  failure: ErrorCode | undefined = undefined;
  #controller: AbortController | undefined;
  #abortReason: BusError | undefined;

  constructor(
    readonly envelope: Envelope,
    readonly recipient: AgentRecord,
    readonly pending: PendingRequest | undefined,
    /** The delivery whose handler sent this message, when sent from inside a handler. */
    readonly parent: Delivery | undefined,
    readonly execute: (delivery: Delivery) => Promise<void>,
  ) {}

  get priority(): Envelope['priority'] {
    return this.envelope.priority;
  }

  /** The mailbox's view of the phase: it sets this when it withdraws the job. */
  get withdrawn(): boolean {
    return this.phase === 'withdrawn';
  }

  set withdrawn(value: boolean) {
    if (value) this.phase = 'withdrawn';
  }

  /** The mailbox's view of the phase: it sets this when the handler starts. */
  get started(): boolean {
    return this.phase === 'running' || this.phase === 'finished';
  }

  set started(value: boolean) {
    if (value) this.phase = 'running';
  }

  /** Committed to the audit log and put in the recipient's mailbox (and maybe run since). */
  get handedOver(): boolean {
    return this.phase === 'queued' || this.phase === 'running' || this.phase === 'finished';
  }

  run(): Promise<void> {
    return this.execute(this);
  }

  /** The handler's signal, created on first use: most handlers never read it. */
  get signal(): AbortSignal {
    if (this.#controller === undefined) {
      this.#controller = new AbortController();
      if (this.#abortReason !== undefined) this.#controller.abort(this.#abortReason);
    }
    return this.#controller.signal;
  }

  abort(reason: BusError): void {
    if (this.#abortReason !== undefined) return;
    this.#abortReason = reason;
    this.#controller?.abort(reason);
  }

  get aborted(): boolean {
    return this.#abortReason !== undefined;
  }

  /** Why it was aborted (close, unregister, deadline, cancel), once it was. */
  get abortReason(): BusError | undefined {
    return this.#abortReason;
  }

  /** Out of the mailbox and the recipient's index: it will not run (withdrawn before it started). */
  drop(): void {
    this.recipient.mailbox.withdraw(this);
    this.recipient.deliveries.delete(this);
  }

  /** The handler is done (or never ran): nothing more to abort or wait for. */
  finish(): void {
    this.phase = 'finished';
    this.recipient.deliveries.delete(this);
  }

  /** True when this chain already runs a handler of `agentId` that is waiting on it. */
  chainPassesThrough(agentId: string): boolean {
    for (let d: Delivery | undefined = this; d !== undefined; d = d.parent) {
      if (d.recipient.id === agentId && d.phase === 'running') return true;
    }
    return false;
  }
}
