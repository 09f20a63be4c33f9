// The operator's desk: decides held messages exactly once, for the terminal console and the
// web page alike. Uses only the bus's public API (events, approvals.list/approve/reject).
import type { ApproveOptions, PendingApproval, RejectOptions } from '../approvals.js';
import { isBusError } from '../errors.js';
import type { BusEventSource, BusEvents } from '../events.js';
import { checkArgument, objectWith, parseOptions } from '../options-schema.js';
import { z } from 'zod';

/**
 * What the consoles need of an `Orchestrator`: its events and its approval queue.
 * `approve`/`reject` may answer at once or with a promise: the desk awaits either, and
 * a thrown or rejected `BusError` is the answer it reports.
 */
export interface OperatorBus {
  readonly events: BusEventSource;
  readonly approvals: {
    list(): readonly PendingApproval[];
    approve(id: string, options?: ApproveOptions): unknown;
    reject(id: string, options?: RejectOptions): unknown;
  };
}

/** A decision an operator asks for. */
export type DecisionRequest =
  | { readonly approve: true; readonly by: string; readonly note?: string; readonly always?: boolean }
  | { readonly approve: false; readonly by: string; readonly reason?: string };

/** What became of a decision the desk was asked for. */
export type DeskAnswer =
  /** The bus took the decision. For an approval, `delivered` (and `code`/`reason` when not) as `approve()` reported; `staged` when it reported only that. */
  | { readonly status: 'decided'; readonly decision: 'approved' | 'rejected'; readonly delivered?: boolean; readonly staged?: boolean; readonly code?: string; readonly reason?: string }
  /** It was decided before (here or elsewhere), expired or was cancelled: `outcome` says how (`approved by alice`). */
  | { readonly status: 'already'; readonly outcome: string }
  /** Another decision on the same item is still being recorded. */
  | { readonly status: 'busy' }
  /** No such item is or was held (as far as the desk remembers). */
  | { readonly status: 'unknown' }
  /** The bus refused the decision (`code` is the BusError's, or `ERROR` for anything else). */
  | { readonly status: 'refused'; readonly code: string; readonly message: string };

/** One remembered decision, newest last in `recent()`. */
export interface DecidedItem {
  readonly id: string;
  readonly approval: PendingApproval;
  readonly decision: BusEvents['approval:decided']['decision'];
  readonly by?: string;
  readonly reason?: string;
  readonly at: number;
}

/** `approved by alice`, `expired`. */
export function outcomeText(item: Pick<DecidedItem, 'decision' | 'by'>): string {
  return `${item.decision}${item.by !== undefined ? ` by ${item.by}` : ''}`;
}

/** Options of {@link ApprovalDesk}. */
export interface ApprovalDeskOptions {
  /** How many decisions `recent()` keeps. @default 200 */
  readonly remember?: number;
}

const deskOptions = z.strictObject({ remember: z.number().int().min(1).max(100_000).optional() });

const operatorBus = objectWith<OperatorBus>('an Orchestrator (events and approvals)', 'events.on', 'events.off', 'approvals.list');

/** The bus an operator's tool serves, checked: `<factory>(): bus must be an Orchestrator …`. @internal */
export function checkOperatorBus<B extends OperatorBus>(bus: B, factory: string): B {
  return checkArgument(operatorBus, bus, factory, 'bus') as B;
}

/**
 * Decides held messages exactly once: a second decision on an item answers `already` (or
 * `busy` while the first is being recorded) instead of reaching the bus, and the desk
 * remembers the last `remember` decisions, whoever made them.
 */
export class ApprovalDesk {
  readonly #bus: OperatorBus;
  readonly #remember: number;
  readonly #decided = new Map<string, DecidedItem>();
  readonly #inFlight = new Set<string>();
  readonly #listeners = new Set<(item: DecidedItem) => void>();
  readonly #onDecided = ({ approval, decision, by, reason }: BusEvents['approval:decided']) => {
    const item: DecidedItem = { id: approval.id, approval, decision, at: Date.now(), ...(by !== undefined ? { by } : {}), ...(reason !== undefined ? { reason } : {}) };
    this.#decided.delete(item.id);
    this.#decided.set(item.id, item);
    while (this.#decided.size > this.#remember) this.#decided.delete(this.#decided.keys().next().value as string);
    for (const listener of this.#listeners) listener(item);
  };
  #closed = false;

  /** Subscribes to `approval:decided` until `close()`. */
  constructor(bus: OperatorBus, options: ApprovalDeskOptions = {}) {
    this.#bus = checkOperatorBus(bus, 'ApprovalDesk');
    this.#remember = parseOptions(deskOptions, options, 'ApprovalDesk').remember ?? 200;
    bus.events.on('approval:decided', this.#onDecided);
  }

  /** Held messages, oldest first. */
  pending(): readonly PendingApproval[] {
    return this.#bus.approvals.list();
  }

  /** Remembered decisions, oldest first. */
  recent(): readonly DecidedItem[] {
    return [...this.#decided.values()];
  }

  /** Calls `listener` for each decision the bus reports; returns the unsubscribe. */
  onDecided(listener: (item: DecidedItem) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Decides `id` once. Never throws: every failure is an answer. */
  async decide(id: string, request: DecisionRequest): Promise<DeskAnswer> {
    const known = this.#decided.get(id);
    if (known !== undefined) return { status: 'already', outcome: outcomeText(known) };
    if (this.#inFlight.has(id)) return { status: 'busy' };
    if (this.#closed || !this.#bus.approvals.list().some((a) => a.id === id)) return { status: 'unknown' };
    this.#inFlight.add(id);
    try {
      const result = request.approve
        ? await this.#bus.approvals.approve(id, {
            by: request.by,
            ...(request.note !== undefined ? { note: request.note } : {}),
            ...(request.always === true ? { always: true } : {}),
          })
        : await this.#bus.approvals.reject(id, { by: request.by, ...(request.reason !== undefined ? { reason: request.reason } : {}) });
      return { status: 'decided', decision: request.approve ? 'approved' : 'rejected', ...readResult(result) };
    } catch (error) {
      const after = this.#decided.get(id);
      // Decided by someone else between the check and the call (or expired meanwhile).
      if (after !== undefined) return { status: 'already', outcome: outcomeText(after) };
      // Decided through the audit file by another process or console (durable approvals): gone from the queue.
      if (isBusError(error) && error.code === 'INVALID_ARGUMENT' && !this.#bus.approvals.list().some((a) => a.id === id)) {
        return { status: 'already', outcome: 'no longer held (decided by another console or process, or expired)' };
      }
      if (isBusError(error)) return { status: 'refused', code: error.code, message: error.message };
      return { status: 'refused', code: 'ERROR', message: error instanceof Error ? error.message : String(error) };
    } finally {
      this.#inFlight.delete(id);
    }
  }

  /** Unsubscribes from the bus. Idempotent; resolves at once (there is nothing to wait for). */
  close(): Promise<void> {
    this.#closed = true;
    this.#listeners.clear();
    this.#bus.events.off('approval:decided', this.#onDecided);
    return Promise.resolve();
  }
}

/** The fields of `approve()`'s answer the desk reports, each read once. */
function readResult(result: unknown): { delivered?: boolean; staged?: boolean; code?: string; reason?: string } {
  if (typeof result !== 'object' || result === null) return {};
  const { delivered, staged, code, reason } = result as Record<string, unknown>;
  return {
    ...(typeof delivered === 'boolean' ? { delivered } : {}),
    ...(staged === true ? { staged: true } : {}),
    ...(typeof code === 'string' ? { code } : {}),
    ...(typeof reason === 'string' ? { reason } : {}),
  };
}

/** A one-line account of an answer, for a status line: `approved: staged for delivery`, `already approved by bob`. */
export function answerText(answer: DeskAnswer): string {
  switch (answer.status) {
    case 'decided':
      if (answer.decision === 'rejected') return 'rejected';
      if (answer.delivered === true) return 'approved: delivered';
      if (answer.delivered === false) return `approved, but not delivered: ${answer.code ?? ''}${answer.reason !== undefined ? ` ${answer.reason}` : ''}`;
      return answer.staged === true ? 'approved: staged for delivery' : 'approved';
    case 'already':
      return `already decided: ${answer.outcome}`;
    case 'busy':
      return 'a decision on it is being recorded';
    case 'unknown':
      return 'no longer held';
    case 'refused':
      return `refused ${answer.code}: ${answer.message}`;
  }
}
