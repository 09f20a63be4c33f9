import type { Priority } from './envelope.js';

/** A unit of work in a mailbox: one message for one handler. */
export interface MailboxJob {
  readonly priority: Priority;
  /** Set when the job was withdrawn (deadline, cancel) before it started; it is then skipped. */
  withdrawn: boolean;
  /** Set by the mailbox when the handler starts. */
  started: boolean;
  /** Runs the handler; the promise settles when the handler is done. Never rejects. */
  run(): Promise<void>;
}

const LANES: Record<Priority, number> = { critical: 0, high: 1, normal: 2, low: 3 };

/**
 * One agent's inbox: at most `concurrency` handlers at a time, in priority then arrival
 * order, at most `maxQueue` waiting.
 *
 * Hand-written rather than p-queue because the bus needs three things p-queue lacks:
 * slots reserved synchronously before the audit commit (so MAILBOX_FULL is decided at send
 * time), a bypass for call-chain reentrancy, and O(1) withdrawal of expired jobs. It also
 * allocates no promise per task on the hot path, as p-queue does.
 */
export class Mailbox {
  private readonly lanes: MailboxJob[][] = [[], [], [], []];
  private readonly heads = [0, 0, 0, 0];
  /** Jobs waiting and not withdrawn, plus slots reserved for jobs about to arrive. */
  private waiting = 0;
  private active = 0;
  private idleWaiters: (() => void)[] = [];
  /** Told the depth (running + waiting) whenever it changes (the telemetry's gauge), when set. */
  onDepth: ((depth: number) => void) | undefined = undefined;

  constructor(
    readonly concurrency: number,
    readonly maxQueue: number,
  ) {}

  /** Handlers running now. */
  get running(): number {
    return this.active;
  }

  /** Jobs waiting (and reserved slots). */
  get queued(): number {
    return this.waiting;
  }

  /**
   * Claims a place for a job that will be pushed after the audit commit. False when
   * the job would neither run at once nor fit in the queue, unless `force` (reentrancy).
   */
  reserve(force = false): boolean {
    if (!force && this.active + this.waiting >= this.concurrency + this.maxQueue) return false;
    this.waiting++;
    this.onDepth?.(this.active + this.waiting);
    return true;
  }

  /**
   * Hands over a reserved job. `bypass` runs it at once whatever the concurrency: used
   * when the message's causal chain already passes through this (busy) agent.
   */
  push(job: MailboxJob, bypass: boolean): void {
    if (job.withdrawn) return; // withdrawn between reserve and push: its place is already free
    if (bypass || this.active < this.concurrency) {
      this.waiting--;
      this.start(job);
      return;
    }
    this.lanes[LANES[job.priority]]!.push(job);
  }

  /** Marks a reserved or waiting job as gone: it frees its place now and is skipped later. */
  withdraw(job: MailboxJob): void {
    if (job.withdrawn || job.started) return;
    job.withdrawn = true;
    this.waiting--;
    this.onDepth?.(this.active + this.waiting);
  }

  /** Resolves when nothing runs or waits. */
  onIdle(): Promise<void> {
    if (this.active === 0 && this.waiting === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private start(job: MailboxJob): void {
    job.started = true;
    this.active++;
    let done: Promise<void>;
    try {
      done = job.run();
    } catch {
      done = Promise.resolve(); // run() must not throw; if it does, its slot must still come back
    }
    done.then(this.finish, this.finish);
  }

  private readonly finish = (): void => {
    this.active--;
    this.onDepth?.(this.active + this.waiting);
    const next = this.active < this.concurrency ? this.next() : undefined;
    if (next !== undefined) {
      this.waiting--;
      this.start(next);
    } else if (this.active === 0 && this.waiting === 0 && this.idleWaiters.length > 0) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const resolve of waiters) resolve();
    }
  };

  private next(): MailboxJob | undefined {
    for (let lane = 0; lane < 4; lane++) {
      const jobs = this.lanes[lane]!;
      let head = this.heads[lane]!;
      while (head < jobs.length) {
        const job = jobs[head]!;
        jobs[head++] = undefined as unknown as MailboxJob; // let it be collected
        if (!job.withdrawn) {
          this.compact(lane, jobs, head);
          return job;
        }
      }
      this.compact(lane, jobs, head);
    }
    return undefined;
  }

  /** Keeps each lane's array from growing without bound as its head advances. */
  private compact(lane: number, jobs: MailboxJob[], head: number): void {
    if (head === jobs.length) {
      jobs.length = 0;
      this.heads[lane] = 0;
    } else if (head > 1024 && head * 2 > jobs.length) {
      jobs.splice(0, head);
      this.heads[lane] = 0;
    } else {
      this.heads[lane] = head;
    }
  }
}
