import type { Clock } from './clock.js';

/** The longest delay setTimeout honours (about 24.8 days). */
const MAX_TIMEOUT_MS = 2_147_483_647;

/** Something with a deadline that can sit in a {@link DeadlineQueue}. */
export interface Expirable {
  /** Epoch ms (on the queue's clock) at which it expires. */
  deadline: number;
  /** Position in the heap, or -1 when not queued. Owned by the queue. */
  heapIndex: number;
}

/**
 * All deadlines of one kind, swept by a single timer armed for the earliest one.
 * Cheaper than a `setTimeout` per message (one timer object instead of one per deadline,
 * nothing for the GC to chase), and `remove` is O(log n), so settled entries leave no
 * garbage. `npm run bench` measures it (docs/performance.md).
 * Works under fake timers: it only uses `setTimeout`/`clearTimeout` and the clock.
 */
export class DeadlineQueue<T extends Expirable> {
  private readonly heap: T[] = [];
  private timer: ReturnType<typeof setTimeout> | undefined;
  private armedFor = Infinity;

  constructor(
    private readonly clock: Clock,
    private readonly onExpire: (item: T) => void,
  ) {}

  get size(): number {
    return this.heap.length;
  }

  add(item: T): void {
    item.heapIndex = this.heap.length;
    this.heap.push(item);
    this.siftUp(item.heapIndex);
    if (item.deadline < this.armedFor) this.arm();
  }

  /** Removes the item if queued; a no-op otherwise. */
  remove(item: T): void {
    const i = item.heapIndex;
    if (i < 0 || this.heap[i] !== item) return;
    const last = this.heap.pop()!;
    item.heapIndex = -1;
    if (i < this.heap.length) {
      this.heap[i] = last;
      last.heapIndex = i;
      this.siftDown(i);
      this.siftUp(last.heapIndex);
    }
    // The timer may now fire early for nothing; the sweep re-arms, so leave it.
    if (this.heap.length === 0) this.disarm();
  }

  /** Drops every item without expiring it and stops the timer. */
  clear(): T[] {
    const items = this.heap.splice(0);
    for (const item of items) item.heapIndex = -1;
    this.disarm();
    return items;
  }

  private sweep = (): void => {
    this.timer = undefined;
    this.armedFor = Infinity;
    const now = this.clock.now();
    const heap = this.heap;
    while (heap.length > 0 && heap[0]!.deadline <= now) {
      const item = heap[0]!;
      this.remove(item);
      this.onExpire(item);
    }
    if (heap.length > 0 && this.timer === undefined) this.arm();
  };

  private arm(): void {
    const head = this.heap[0];
    if (head === undefined) return;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.armedFor = head.deadline;
    // At least 1 ms, so a clock that lags the timer cannot spin us in a tight loop; at most
    // what setTimeout takes (beyond it Node fires after 1 ms): a later sweep re-arms.
    this.timer = setTimeout(this.sweep, Math.min(MAX_TIMEOUT_MS, Math.max(1, head.deadline - this.clock.now())));
  }

  private disarm(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    this.armedFor = Infinity;
  }

  private siftUp(i: number): void {
    const heap = this.heap;
    const item = heap[i]!;
    while (i > 0) {
      const parentIndex = (i - 1) >> 1;
      const parent = heap[parentIndex]!;
      if (parent.deadline <= item.deadline) break;
      heap[i] = parent;
      parent.heapIndex = i;
      i = parentIndex;
    }
    heap[i] = item;
    item.heapIndex = i;
  }

  private siftDown(i: number): void {
    const heap = this.heap;
    const n = heap.length;
    const item = heap[i]!;
    for (;;) {
      const left = 2 * i + 1;
      if (left >= n) break;
      const right = left + 1;
      const child = right < n && heap[right]!.deadline < heap[left]!.deadline ? right : left;
      const c = heap[child]!;
      if (c.deadline >= item.deadline) break;
      heap[i] = c;
      c.heapIndex = i;
      i = child;
    }
    heap[i] = item;
    item.heapIndex = i;
  }
}
