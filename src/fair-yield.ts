// Fair scheduling for the bus's own work. With a synchronous audit log (`:memory:`,
// `worker: false`) or none (`audit: false`), a request/reply cycle runs on microtasks only:
// a sender that loops would keep the event loop in one macrotask forever, and no timer
// (deadlines, approval expiry, the caller's own) would fire. FairYield lets the work run on
// microtasks as usual, but once one macrotask has done a slice of it, the next piece waits
// for the next macrotask, so timers get their turn.

/** Milliseconds of continuous work in one macrotask before the bus yields to the event loop. */
export const FAIR_SLICE_MS = 4;

/**
 * Pieces of work (flushes scheduled, sends settled) in one macrotask before the clock is even
 * read: a handful of sends never yields (so code that counts microtasks, as tests do, sees no
 * change), and a busy loop pays for one clock read per piece only after these.
 */
export const FAIR_SLICE_TASKS = 16;

/** The clock and the macrotask queue FairYield uses; injectable for tests. */
export interface FairClock {
  /** Milliseconds, monotonic. */
  now(): number;
  /** Runs `task` in a later macrotask, after timers that are due. */
  defer(task: () => void): void;
}

// Taken when the module loads: fake timers installed later (vitest fakes setImmediate by
// default) cannot strand a deferred flush. `performance` is read live: when a test fakes it,
// the slice never ends and the bus stays on microtasks, as deterministic as before.
const realSetImmediate = globalThis.setImmediate;

/** performance.now() and the real setImmediate. */
export const systemFairClock: FairClock = {
  now: () => performance.now(),
  defer: (task) => {
    realSetImmediate(task);
  },
};

/**
 * Schedules the bus's pieces of work (group-commit flushes) on microtasks until the current
 * macrotask has done {@link FAIR_SLICE_TASKS} pieces of work and spent {@link FAIR_SLICE_MS},
 * then on the next macrotask. A slice ends when the event loop gets a turn.
 *
 * Work is counted by what it is, not by how often it is scheduled: a flush that settles 250
 * sends counts 250 ({@link spend}), so however many senders share one flush, a macrotask does
 * at most one slice of work plus one chunk before timers and I/O get their turn.
 */
export class FairYield {
  readonly #clock: FairClock;
  readonly #sliceMs: number;
  readonly #sliceTasks: number;
  /** When the current slice started; -1 when none is open. */
  #start = -1;
  #tasks = 0;
  /** Set once the open slice has had its share: everything else waits for the next macrotask. */
  #over = false;

  constructor(clock: FairClock = systemFairClock, sliceMs = FAIR_SLICE_MS, sliceTasks = FAIR_SLICE_TASKS) {
    this.#clock = clock;
    this.#sliceMs = sliceMs;
    this.#sliceTasks = sliceTasks;
  }

  /** Runs `task` on a microtask, or on the next macrotask once this one has had its slice. */
  schedule(task: () => void): void {
    if (this.spend(1)) this.#clock.defer(task);
    else queueMicrotask(task);
  }

  /**
   * Counts `work` pieces done in this macrotask; true once its slice is over, when the
   * caller should leave the rest for the next macrotask ({@link schedule} does).
   */
  spend(work: number): boolean {
    if (this.#start < 0) {
      this.#start = this.#clock.now();
      this.#tasks = work;
      this.#over = false;
      this.#clock.defer(this.#endSlice); // runs once the event loop had a turn
      return false;
    }
    if (this.#over) return true;
    this.#tasks += work;
    if (this.#tasks <= this.#sliceTasks || this.#clock.now() - this.#start < this.#sliceMs) return false;
    this.#over = true;
    return true;
  }

  readonly #endSlice = (): void => {
    this.#start = -1;
    this.#over = false;
  };
}
