import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { MessageChannel, receiveMessageOnPort, Worker, type MessagePort } from 'node:worker_threads';
import { BusError } from '../errors.js';
import type { SqliteAuditLogOptions } from './sqlite.js';
import type { AsyncAuditLog, AuditRecord, MessageLogEntry, MessageLogQuery, VerifyResult } from './types.js';
import type { WorkerReply, WorkerRequest } from './worker-main.js';

/** How long a synchronous call waits for the worker before failing closed. */
const SYNC_TIMEOUT_MS = 10_000;

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
 * Used by default for file logs; `audit: { worker: false }` keeps SQLite on the main thread.
 */
export class WorkerAuditLog implements AsyncAuditLog {
  private readonly worker: Worker;
  private readonly port: MessagePort;
  private readonly counter: Int32Array;
  private readonly callbacks = new Map<number, (reply: WorkerReply) => void>();
  private nextId = 0;
  private inFlight = 0;
  private closed = false;
  private broken: BusError | undefined;

  constructor(options: SqliteAuditLogOptions) {
    const { port1, port2 } = new MessageChannel();
    const signal = new SharedArrayBuffer(4);
    this.counter = new Int32Array(signal);
    this.port = port1;
    this.worker = new Worker(BOOT, {
      eval: true,
      workerData: { url: workerUrl, tsx: tsxApi(), port: port2, signal, options },
      transferList: [port2],
    });
    this.worker.on('error', (error) => this.breakDown(`the audit worker failed: ${error.message}`, error));
    this.worker.on('exit', (code) => {
      if (!this.closed) this.breakDown(`the audit worker exited (code ${code})`);
    });
    this.port.on('message', (reply: WorkerReply) => this.receive(reply));
    // Idle, the log must not keep the process alive; it is ref'd while appends are in flight.
    this.worker.unref();
    this.port.unref();
    const ready = this.wait(0);
    if (!ready.ok) {
      void this.worker.terminate();
      this.closed = true;
      throw new BusError('AUDIT_UNAVAILABLE', ready.error.message);
    }
  }

  appendAsync(records: readonly AuditRecord[], done: (error?: BusError) => void): void {
    if (this.broken !== undefined || this.closed) {
      // Fail closed at once: nothing is in flight, so nobody waits for an answer.
      done(this.broken ?? new BusError('AUDIT_UNAVAILABLE', 'the audit log is closed'));
      return;
    }
    const id = ++this.nextId;
    if (this.inFlight++ === 0) this.port.ref();
    this.callbacks.set(id, (reply) => {
      if (--this.inFlight === 0) this.port.unref();
      done(reply.ok ? undefined : toError(reply));
    });
    this.post({ id, op: 'append', records: JSON.stringify(records) });
  }

  append(records: readonly AuditRecord[]): void {
    let failure: BusError | undefined;
    this.appendAsync(records, (error) => (failure = error));
    this.drain();
    if (failure !== undefined) throw failure;
  }

  /** Blocks until every append in flight is answered (their callbacks run here). */
  drain(): void {
    while (this.inFlight > 0 && this.broken === undefined) this.wait(this.nextId);
  }

  query(filter: MessageLogQuery = {}): MessageLogEntry[] {
    return this.call({ id: 0, op: 'query', filter }) as MessageLogEntry[];
  }

  verify(): VerifyResult {
    return this.call({ id: 0, op: 'verify' }) as VerifyResult;
  }

  close(): void {
    if (this.closed) return;
    if (this.broken === undefined) {
      this.drain();
      try {
        this.call({ id: 0, op: 'close' });
      } catch {
        // Closing anyway: the worker goes with it.
      }
    }
    this.closed = true;
    this.port.close();
    void this.worker.terminate();
  }

  private call(request: WorkerRequest): unknown {
    if (this.closed) throw new BusError('AUDIT_UNAVAILABLE', 'the audit log is closed');
    if (this.broken !== undefined) throw this.broken;
    const id = ++this.nextId;
    let reply: WorkerReply | undefined;
    this.callbacks.set(id, (r) => (reply = r));
    this.post({ ...request, id });
    this.wait(id);
    if (reply === undefined) throw this.broken ?? new BusError('AUDIT_UNAVAILABLE', 'the audit worker did not answer');
    if (!reply.ok) throw toError(reply);
    return reply.result;
  }

  private post(request: WorkerRequest): void {
    this.port.postMessage(request);
  }

  /**
   * Takes answers off the port synchronously until the one numbered `id` has been handled
   * (answers come in order), sleeping on the shared counter in between.
   */
  private wait(id: number): WorkerReply {
    let last: WorkerReply | undefined;
    const deadline = Date.now() + SYNC_TIMEOUT_MS;
    for (;;) {
      const seen = Atomics.load(this.counter, 0);
      const received = receiveMessageOnPort(this.port);
      if (received !== undefined) {
        last = received.message as WorkerReply;
        this.receive(last);
        if (last.id >= id) return last;
        continue;
      }
      const left = deadline - Date.now();
      if (left <= 0 || Atomics.wait(this.counter, 0, seen, left) === 'timed-out') {
        this.breakDown(`the audit worker did not answer within ${SYNC_TIMEOUT_MS}ms`);
        return { id, ok: false, error: { message: this.broken!.message, code: 'AUDIT_UNAVAILABLE' } };
      }
    }
  }

  private receive(reply: WorkerReply): void {
    const callback = this.callbacks.get(reply.id);
    if (callback === undefined) return;
    this.callbacks.delete(reply.id);
    callback(reply);
  }

  /** The worker is gone: fail what waits, and fail closed from now on. */
  private breakDown(message: string, cause?: unknown): void {
    if (this.broken !== undefined) return;
    this.broken = new BusError('AUDIT_UNAVAILABLE', message, cause === undefined ? {} : { cause });
    const failed: WorkerReply = { id: -1, ok: false, error: { message, code: 'AUDIT_UNAVAILABLE' } };
    for (const callback of [...this.callbacks.values()]) callback(failed);
    this.callbacks.clear();
  }
}

function toError(reply: Extract<WorkerReply, { ok: false }>): BusError {
  return new BusError('AUDIT_UNAVAILABLE', reply.error.message);
}
