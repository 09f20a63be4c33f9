import { statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { MessageChannel, receiveMessageOnPort, Worker, type MessagePort } from 'node:worker_threads';
import { BusError } from '../errors.js';
import { encodeBatches, type EncodedBatch } from './encode.js';
import { loadSqlite } from './native.js';
import { backpressureWait, invalidBatch, SqliteAuditLog, type SqliteAuditLogOptions } from './sqlite.js';
import type { AsyncAuditLog, AuditRecord, ChainHead, HoldDecision, HoldStore, MessageLogEntry, MessageLogQuery, PeerDigestEntry, PeerDigestQuery, StoredHold, VerifyOptions, VerifyResult } from './types.js';
import type { WorkerNotice, WorkerReply, WorkerRequest } from './worker-main.js';
import { escapeText } from '../escape-text.js';

/** How long a synchronous call waits for the worker before failing closed (plus lock waits). */
const SYNC_TIMEOUT_MS = 10_000;
/** How often a broken log tries a fresh worker. */
const RETRY_MS = 1000;

/**
 * The audit worker's V8 limits. Under sustained load V8 grows a busy thread's young
 * generation to its largest size and keeps it: on the worker that was ~90 MB of RSS that the
 * inline log never costs, for no measurable speed (the bus's thread, not the worker, sets the
 * pace). A smaller young generation only means more, shorter scavenges on the worker; the old
 * generation keeps V8's default, so a large query cannot run the worker out of heap.
 */
export const AUDIT_WORKER_LIMITS = Object.freeze({ maxYoungGenerationSizeMb: 16 });

// The worker runs worker-main.{js,ts} beside this file. From TypeScript sources (tests,
// tsx) the worker registers tsx first, so the same code runs unbuilt.
const here = import.meta.url;
const fromSource = here.endsWith('.ts');
const workerUrl = new URL(fromSource ? './worker-main.ts' : './worker-main.js', here).href;
// From sources the worker registers tsx before loading (a worker does not inherit the
// parent's module hooks on Node 20); built, it loads the .js directly.
const BOOT = `
const { workerData } = require('node:worker_threads');
(async () => {
  if (workerData.tsx) (await import(workerData.tsx)).register();
  await import(workerData.url);
})();
`;

/** tsx's ES module API, when running from TypeScript sources. */
function tsxApi(): string | undefined {
  if (!fromSource) return undefined;
  try {
    const cjs = createRequire(here).resolve('tsx/esm/api');
    return pathToFileURL(cjs.replace(/index\.cjs$/, 'index.mjs')).href;
  } catch {
    return undefined;
  }
}

/**
 * The SQLite audit log on a worker thread, so SQLite and the hash chain use the second
 * core while the bus keeps the first. Appends are pipelined (the bus delivers a batch's
 * messages when the worker confirms its commit); queries, verification and flushes stay
 * synchronous, as the bus's API promises, by waiting on a shared counter the worker bumps
 * after every answer.
 *
 * If the worker dies or stops answering, everything in flight fails with
 * AUDIT_UNAVAILABLE (fail closed) and the next write starts a fresh worker (recovery).
 *
 * Used by default for file logs; `audit: { worker: false }` keeps SQLite on the main thread.
 */
export class WorkerAuditLog implements AsyncAuditLog, HoldStore {
  /** A file log keeps held messages (durable approvals); `:memory:` does not. */
  readonly keepsHolds: boolean;
  private worker!: Worker;
  private port!: MessagePort;
  private counter!: Int32Array;
  private readonly callbacks = new Map<number, (reply: WorkerReply) => void>();
  private nextId = 0;
  /** The highest id answered so far: answers come in order, so every id up to it is done. */
  private answered = 0;
  private inFlight = 0;
  private closed = false;
  private broken: BusError | undefined;
  private retryAt = 0;
  /** How long a synchronous call waits: past any lock wait the worker may be in, with room to spare. */
  private readonly syncTimeoutMs: number;

  /** Runs on this thread: a function cannot cross to the worker. */
  private readonly onCommit: ((head: ChainHead) => void) | undefined;
  /** Runs on this thread, told by the worker's notice while its commits wait. */
  private readonly onBackpressure: ((walBytes: number) => void) | undefined;
  private readonly options: SqliteAuditLogOptions;
  /** The backpressure wait of this thread's logs, for the worker's (see setBackpressureWait). */
  private readonly backpressureMs = backpressureWait();
  /**
   * A file log's queries read here, on a read-only connection of this thread (WAL readers
   * never wait for the writer): no round trip through the worker. Opened at the first query;
   * reopened when the path leads to another file than the one it reads.
   */
  private reader: { log: SqliteAuditLog; dev: number; ino: number } | undefined;

  constructor(options: SqliteAuditLogOptions) {
    const { onCommit, onBackpressure, ...rest } = options;
    this.options = { checkpoints: 'thread', ...rest };
    this.keepsHolds = options.path !== undefined && options.path !== ':memory:';
    this.onCommit = onCommit;
    this.onBackpressure = onBackpressure;
    // A missing native module is reported here, in one clear sentence, before a worker starts.
    loadSqlite();
    this.syncTimeoutMs = SYNC_TIMEOUT_MS + 10 * (options.busyTimeoutMs ?? 50);
    this.start();
    if (this.broken !== undefined) {
      this.closed = true;
      throw this.broken;
    }
  }

  /** Starts a worker and waits (synchronously) until it has opened the database. */
  private start(): void {
    const { port1, port2 } = new MessageChannel();
    const signal = new SharedArrayBuffer(4);
    const worker = new Worker(BOOT, {
      eval: true,
      workerData: { url: workerUrl, tsx: tsxApi(), port: port2, signal, options: this.options, backpressureMs: this.backpressureMs },
      transferList: [port2],
      resourceLimits: AUDIT_WORKER_LIMITS,
    });
    this.worker = worker;
    this.port = port1;
    this.counter = new Int32Array(signal);
    this.broken = undefined;
    this.nextId = 0;
    this.answered = -1;
    // Events of a worker that has since been replaced concern nobody.
    worker.on('error', (error) => worker === this.worker && this.breakDown(`the audit worker failed: ${error.message}`, error));
    worker.on('exit', (code) => worker === this.worker && !this.closed && this.breakDown(`the audit worker exited (code ${code})`));
    port1.on('message', (reply: WorkerReply | WorkerNotice) => port1 === this.port && this.receive(reply));
    // Idle, the log must not keep the process alive; it is ref'd while appends are in flight.
    worker.unref();
    port1.unref();
    let ready: WorkerReply | undefined;
    this.callbacks.set(0, (reply) => (ready = reply));
    this.wait(0);
    if (ready !== undefined && !ready.ok) this.breakDown(ready.error.message);
  }

  /** A broken log tries a fresh worker before a write or query, at most once a second. */
  private recover(): void {
    if (this.broken === undefined || this.closed || Date.now() < this.retryAt) return;
    this.retryAt = Date.now() + RETRY_MS;
    void this.worker.terminate();
    this.port.close();
    this.start();
  }

  appendAsync(records: readonly AuditRecord[], done: (error?: BusError) => void): void {
    if (!this.closed) this.recover();
    if (this.broken !== undefined || this.closed) {
      // Fail closed at once: nothing is in flight, so nobody waits for an answer.
      done(this.broken ?? new BusError('AUDIT_UNAVAILABLE', 'the audit log is closed'));
      return;
    }
    // Encoded here, hashed and stored there: the worker gets one string per batch.
    let batches: EncodedBatch[];
    try {
      batches = encodeBatches(records);
    } catch (e) {
      done(invalidBatch(e, records.length));
      return;
    }
    const id = ++this.nextId;
    if (this.inFlight++ === 0) this.port.ref();
    this.callbacks.set(id, (reply) => {
      if (--this.inFlight === 0) this.port.unref();
      if (reply.ok && this.onCommit !== undefined && reply.result !== undefined) {
        try {
          this.onCommit(reply.result as ChainHead);
        } catch (e) {
          process.emitWarning(`agent-switchboard: audit.onCommit threw: ${escapeText((e as Error)?.message ?? String(e))}`, { code: 'SWITCHBOARD_ON_COMMIT' });
        }
      }
      done(reply.ok ? undefined : toError(reply));
    });
    this.port.postMessage({ id, op: 'append', batches, count: records.length } satisfies WorkerRequest);
  }

  append(records: readonly AuditRecord[]): void {
    let failure: BusError | undefined;
    this.appendAsync(records, (error) => (failure = error));
    this.drain();
    if (failure !== undefined) throw failure;
  }

  /** Blocks until every append in flight is answered (their callbacks run here). */
  drain(): void {
    if (this.inFlight > 0 && this.broken === undefined) this.wait(this.nextId);
  }

  query(filter: MessageLogQuery = {}): MessageLogEntry[] {
    if (this.options.path === undefined || this.options.path === ':memory:') return this.call({ id: 0, op: 'query', filter }) as MessageLogEntry[];
    if (this.closed) throw new BusError('AUDIT_UNAVAILABLE', 'the audit log is closed');
    this.recover();
    if (this.broken !== undefined) throw this.broken;
    // What was handed to the worker is committed before it is read, as when queries queued behind appends.
    this.drain();
    if (this.broken !== undefined) throw this.broken;
    return this.readerLog().query(filter);
  }

  /** Digest records (see SqliteAuditLog#peerDigests), read like queries. */
  peerDigests(filter: PeerDigestQuery = {}): PeerDigestEntry[] {
    return this.read(
      (log) => log.peerDigests(filter),
      () => this.call({ id: 0, op: 'digests', filter }) as PeerDigestEntry[],
    );
  }

  /** Held messages, read on this thread's read-only connection (what was handed to the worker committed first). */
  holds(afterSeq?: number): StoredHold[] {
    return this.read(
      (log) => log.holds(afterSeq),
      () => [],
    );
  }

  /**
   * What the file holds now, without waiting for the appends in flight: the approval flow's
   * periodic look at what other processes decided must not block this thread behind the
   * worker (under backpressure a commit may wait seconds). What is in flight is this bus's
   * own, which it knows without reading.
   */
  holdStates(): [string, string, number][] {
    return this.read(
      (log) => log.holdStates(),
      () => [],
      false,
    );
  }

  messageRecords(messageId: string): unknown[][] {
    return this.read(
      (log) => log.messageRecords(messageId),
      () => this.call({ id: 0, op: 'records', messageId }) as unknown[][],
    );
  }

  keptReply(messageId: string, remove: boolean): string | undefined {
    if (remove) return this.call({ id: 0, op: 'takeReply', messageId }) as string | undefined;
    return this.read(
      (log) => log.keptReply(messageId, false),
      () => undefined,
    );
  }

  /** Decisions go to the writer (the worker), whose transaction arbitrates between connections. */
  decide(decisions: readonly HoldDecision[]): boolean[] {
    this.drain();
    return this.call({ id: 0, op: 'decide', decisions: [...decisions] }) as boolean[];
  }

  /**
   * Runs `read` on this thread's reader of a file log (`memory` for a :memory: one, which
   * keeps no holds), after what was handed to the worker is committed unless `drain` is false.
   */
  private read<T>(read: (log: SqliteAuditLog) => T, memory: () => T, drain = true): T {
    if (!this.keepsHolds) return memory();
    if (this.closed) throw new BusError('AUDIT_UNAVAILABLE', 'the audit log is closed');
    this.recover();
    if (this.broken !== undefined) throw this.broken;
    if (drain) this.drain();
    if (this.broken !== undefined) throw this.broken;
    return read(this.readerLog());
  }

  /** The read-only connection to the file now at the path (the writer follows a replaced file the same way). */
  private readerLog(): SqliteAuditLog {
    const path = this.options.path as string;
    const now = statSync(path, { throwIfNoEntry: false });
    const reader = this.reader;
    if (reader !== undefined && now !== undefined && now.dev === reader.dev && now.ino === reader.ino) return reader.log;
    this.closeReader();
    const { key, busyTimeoutMs } = this.options;
    const log = new SqliteAuditLog({ path, readonly: true, ...(key !== undefined ? { key } : {}), ...(busyTimeoutMs !== undefined ? { busyTimeoutMs } : {}) });
    const opened = statSync(path, { throwIfNoEntry: false });
    this.reader = { log, dev: opened?.dev ?? -1, ino: opened?.ino ?? -1 };
    return log;
  }

  private closeReader(): void {
    const reader = this.reader;
    this.reader = undefined;
    try {
      reader?.log.close();
    } catch {
      // Closing a reader of a lost file: nothing to keep.
    }
  }

  verify(options: VerifyOptions = {}): VerifyResult {
    const head = options.head;
    return this.call(head === undefined ? { id: 0, op: 'verify' } : { id: 0, op: 'verify', head: { seq: head.seq, hash: head.hash } }) as VerifyResult;
  }

  /** The last committed record's `{ seq, hash }`. */
  head(): ChainHead {
    this.drain();
    return this.call({ id: 0, op: 'head' }) as ChainHead;
  }

  close(): void {
    if (this.closed) return;
    if (this.broken === undefined) {
      this.drain();
      // Before the worker's: its connection must be the last, to leave a self-contained file.
      this.closeReader();
      try {
        this.call({ id: 0, op: 'close' });
      } catch {
        // Closing anyway: the worker goes with it.
      }
    }
    this.closed = true;
    this.closeReader();
    this.port.close();
    void this.worker.terminate();
  }

  private call(request: WorkerRequest): unknown {
    if (this.closed) throw new BusError('AUDIT_UNAVAILABLE', 'the audit log is closed');
    this.recover();
    if (this.broken !== undefined) throw this.broken;
    const id = ++this.nextId;
    let reply: WorkerReply | undefined;
    this.callbacks.set(id, (r) => (reply = r));
    this.port.postMessage({ ...request, id });
    this.wait(id);
    if (reply === undefined) throw this.broken ?? new BusError('AUDIT_UNAVAILABLE', 'the audit worker did not answer');
    if (!reply.ok) throw toError(reply);
    return reply.result;
  }

  /**
   * Takes answers off the port synchronously until answer `id` has been handled, sleeping on
   * the shared counter in between. A callback run here may itself wait (a handler that reads
   * the log): whoever takes an answer handles it, so each waiter only checks `answered`.
   */
  private wait(id: number): void {
    const deadline = Date.now() + this.syncTimeoutMs;
    while (this.answered < id && this.broken === undefined) {
      const seen = Atomics.load(this.counter, 0);
      const received = receiveMessageOnPort(this.port);
      if (received !== undefined) {
        this.receive(received.message as WorkerReply | WorkerNotice);
        continue;
      }
      const left = deadline - Date.now();
      if (left <= 0 || Atomics.wait(this.counter, 0, seen, left) === 'timed-out') {
        this.breakDown(`the audit worker did not answer within ${this.syncTimeoutMs}ms`);
      }
    }
  }

  private receive(reply: WorkerReply | WorkerNotice): void {
    if ('backpressure' in reply) {
      try {
        this.onBackpressure?.(reply.backpressure);
      } catch (e) {
        process.emitWarning(`agent-switchboard: audit.onBackpressure threw: ${escapeText((e as Error)?.message ?? String(e))}`, { code: 'SWITCHBOARD_ON_BACKPRESSURE' });
      }
      return;
    }
    if (reply.id > this.answered) this.answered = reply.id;
    const callback = this.callbacks.get(reply.id);
    if (callback === undefined) return;
    this.callbacks.delete(reply.id);
    callback(reply);
  }

  /** The worker is gone or stuck: stop it, and fail what waits (fail closed). */
  private breakDown(message: string, cause?: unknown): void {
    if (this.broken !== undefined) return;
    this.broken = new BusError('AUDIT_UNAVAILABLE', message, cause === undefined ? {} : { cause });
    void this.worker.terminate();
    const failed: WorkerReply = { id: -1, ok: false, error: { message, code: 'AUDIT_UNAVAILABLE', ...(cause instanceof Error ? { cause: { name: cause.name, message: cause.message } } : {}) } };
    const waiting = [...this.callbacks.values()];
    this.callbacks.clear();
    for (const callback of waiting) callback(failed);
  }
}

function toError(reply: Extract<WorkerReply, { ok: false }>): BusError {
  const c = reply.error.cause;
  if (c === undefined) return new BusError('AUDIT_UNAVAILABLE', reply.error.message);
  const cause = Object.assign(new Error(c.message), { name: c.name }, c.code !== undefined ? { code: c.code } : {});
  return new BusError('AUDIT_UNAVAILABLE', reply.error.message, { cause });
}
