import { BusError } from '../errors.js';
import type { InboundHandle } from './transport.js';

// Fair share of the receiving node between its own senders and each peer node. A peer that
// sends as fast as it can must not take the event loop from this node's local senders:
// while they are sending, each peer node gets at most `maxInFlight` messages admitted and
// unanswered, and at most `perTurn` admitted per turn of the event loop. What is over either
// waits in that node's queue (bounded by `maxQueued`; beyond it a message is refused at once
// with MAILBOX_FULL) and is admitted on a later turn, after the local work the current turn
// has queued. While no local agent is sending, a peer's messages are admitted as they come:
// the share yields to local work, it does not slow a node that has none.

/** The fair share of each peer node (`limits.inboundPerNode`). */
export interface InboundShareSpec {
  /** Messages from one node admitted and not yet answered (or held for approval) at once. */
  readonly maxInFlight: number;
  /** Messages from one node admitted per turn of the event loop. */
  readonly perTurn: number;
  /** Messages from one node waiting for their turn; beyond it, MAILBOX_FULL at once. */
  readonly maxQueued: number;
  /** Payload bytes of one node's waiting messages; beyond it, MAILBOX_FULL at once. */
  readonly maxQueuedBytes: number;
}

/** The defaults of `limits.inboundPerNode` (docs/nodes.md has the measurement behind them). */
export const INBOUND_SHARE_DEFAULTS: InboundShareSpec = Object.freeze({ maxInFlight: 4, perTurn: 2, maxQueued: 1000, maxQueuedBytes: 8 * 1024 * 1024 });

/**
 * How long after a local agent's last send the shares stay in force: local senders that
 * wait for answers between sends (an ask loop) count as busy throughout.
 */
export const LOCAL_WORK_WINDOW_MS = 100;

/** How the share hands a message on: admit it (with the slot it holds), or refuse it unadmitted. */
export interface ShareTarget<T> {
  /** Runs the admitted message; `slot.release()` (idempotent) frees its place once it is answered or held. */
  admit(item: T, slot: Slot, waitedFrom: number | undefined): InboundHandle;
  /** The node's queue is full: the message is refused without being admitted. */
  refuse(item: T, error: BusError): void;
}

/** A message's place among its node's messages in flight. */
export interface Slot {
  release(): void;
}

// Taken when the module loads, as FairYield does: fake timers installed later cannot strand a turn.
const realSetImmediate = globalThis.setImmediate;

/** The next turn of the event loop (after the I/O and timers that are due); injectable for tests. */
export type Defer = (task: () => void) => void;
const nextTurn: Defer = (task) => {
  realSetImmediate(task);
};

/** One peer node's share. */
class Share<T> {
  inFlight = 0;
  thisTurn = 0;
  /** Waiting messages, oldest first, from `head` on (shifted lazily). */
  queue: Waiting<T>[] = [];
  head = 0;
  /** The bytes of the waiting messages (as {@link InboundShare.offer} was told them). */
  queuedBytes = 0;

  get waiting(): number {
    return this.queue.length - this.head;
  }
}

/** A message waiting for its turn; also its handle (a cancel before admission drops it). */
class Waiting<T> implements InboundHandle {
  handle: InboundHandle | undefined;
  cancelled: string | undefined;
  constructor(
    readonly item: T,
    readonly arrivedAt: number,
    readonly bytes: number,
  ) {}

  cancel(reason: string): void {
    if (this.handle !== undefined) this.handle.cancel(reason);
    else this.cancelled ??= reason;
  }
}

/** One in-flight place; released once. */
class Place<T> implements Slot {
  #share: Share<T> | undefined;
  readonly #owner: InboundShare<T>;

  constructor(share: Share<T>, owner: InboundShare<T>) {
    this.#share = share;
    this.#owner = owner;
  }

  release(): void {
    const share = this.#share;
    if (share === undefined) return;
    this.#share = undefined;
    this.#owner.released(share);
  }
}

/**
 * Admits inbound messages per peer node within its share (see {@link InboundShareSpec}),
 * queueing the rest for later turns of the event loop. Nodes are independent: one node's
 * flood never takes another node's share, and local work runs between turns.
 */
export class InboundShare<T> {
  readonly #spec: InboundShareSpec;
  readonly #target: ShareTarget<T>;
  readonly #defer: Defer;
  readonly #now: () => number;
  readonly #localBusy: () => boolean;
  readonly #shares = new Map<string, Share<T>>();
  #turnPending = false;

  /**
   * @param now The bus clock (a waiting message's budget shrinks by the time it waited).
   * @param localBusy Whether this node's own agents are sending: only then do the shares hold.
   * @param defer Runs a task at the next turn of the event loop.
   */
  constructor(spec: InboundShareSpec, target: ShareTarget<T>, now: () => number, localBusy: () => boolean, defer: Defer = nextTurn) {
    this.#spec = spec;
    this.#target = target;
    this.#now = now;
    this.#localBusy = localBusy;
    this.#defer = defer;
  }

  /** Messages of `node` waiting for their turn (for tests and diagnostics). */
  waiting(node: string): number {
    return this.#shares.get(node)?.waiting ?? 0;
  }

  /**
   * Admits `item` from `node` now if its share allows, else queues it (or refuses it when
   * the queue is full, in messages or in `bytes`, the size of what it holds).
   */
  offer(node: string, item: T, bytes: number): InboundHandle {
    let share = this.#shares.get(node);
    if (share === undefined) this.#shares.set(node, (share = new Share<T>()));
    if (share.waiting === 0 && this.#hasRoom(share)) return this.#admit(share, item, undefined);
    const { maxInFlight, maxQueued, maxQueuedBytes } = this.#spec;
    if (share.waiting >= maxQueued || share.queuedBytes + bytes > maxQueuedBytes) {
      this.#target.refuse(
        item,
        new BusError(
          'MAILBOX_FULL',
          `node ${node} has ${share.inFlight} messages in flight here (maxInFlight ${maxInFlight}) and ${share.waiting} waiting, ${share.queuedBytes} bytes (maxQueued ${maxQueued}, maxQueuedBytes ${maxQueuedBytes}): refused`,
        ),
      );
      return NO_HANDLE;
    }
    const waiting = new Waiting(item, this.#now(), bytes);
    share.queuedBytes += bytes;
    share.queue.push(waiting);
    this.#scheduleTurn();
    return waiting;
  }

  /** A slot of `share` was freed: its queue may go on at the next turn. */
  released(share: Share<T>): void {
    share.inFlight--;
    if (share.waiting > 0) this.#scheduleTurn();
  }

  #hasRoom(share: Share<T>): boolean {
    if (share.inFlight < this.#spec.maxInFlight && share.thisTurn < this.#spec.perTurn) return true;
    return !this.#localBusy();
  }

  #admit(share: Share<T>, item: T, waitedFrom: number | undefined): InboundHandle {
    share.inFlight++;
    share.thisTurn++;
    // This turn's count starts again at the next turn.
    this.#scheduleTurn();
    return this.#target.admit(item, new Place(share, this), waitedFrom);
  }

  #scheduleTurn(): void {
    if (this.#turnPending) return;
    this.#turnPending = true;
    this.#defer(this.#turn);
  }

  /** A new turn: every node's count starts again, and each node's queue is admitted within its share. */
  readonly #turn = (): void => {
    this.#turnPending = false;
    for (const [node, share] of this.#shares) {
      share.thisTurn = 0;
      while (share.waiting > 0 && this.#hasRoom(share)) {
        const waiting = share.queue[share.head]!;
        share.queue[share.head++] = undefined as unknown as Waiting<T>;
        share.queuedBytes -= waiting.bytes;
        if (waiting.cancelled !== undefined) continue;
        waiting.handle = this.#admit(share, waiting.item, waiting.arrivedAt);
      }
      if (share.head > 0 && share.head * 2 >= share.queue.length) {
        share.queue = share.queue.slice(share.head);
        share.head = 0;
      }
      if (share.inFlight === 0 && share.waiting === 0 && share.thisTurn === 0) this.#shares.delete(node);
    }
  };
}

const NO_HANDLE: InboundHandle = Object.freeze({ cancel: () => undefined });
