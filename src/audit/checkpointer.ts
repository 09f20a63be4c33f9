/**
 * WAL checkpoints off the commit path: a small thread with its own connection to the audit
 * file runs `wal_checkpoint(PASSIVE)` whenever the writer signals that enough has been
 * committed since the last one. The writer has `wal_autocheckpoint = 0`, so no commit ever
 * waits for a checkpoint; a PASSIVE checkpoint never blocks the writer either (it copies what
 * it can and leaves the rest for the next signal).
 *
 * A PASSIVE checkpoint alone never bounds the WAL under sustained load: SQLite starts the
 * WAL over only when a writer begins a transaction after a checkpoint has copied every frame,
 * and a busy writer always has new frames by then; nor does it ever shrink the file. So the
 * writer itself truncates the WAL (`wal_checkpoint(TRUNCATE)` on its own connection, between
 * two commits) once it passes a size, after this thread has copied most of it. The two never
 * checkpoint at once: a shared slot says who is checkpointing ({@link tryAcquire}).
 */
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';

/** Slots of the shared Int32Array. */
const SIGNAL = 0; // 1: a checkpoint is wanted
const STOP = 1; // 1: the thread must close its connection and end
const SLOT = 2; // who checkpoints: IDLE, THREAD or WRITER
const STATE = 3; // the thread's connection: NOT_STARTED, OPEN or CLOSED

const IDLE = 0;
const THREAD = 1;
const WRITER = 2;
const NOT_STARTED = 0;
const OPEN = 1;
const CLOSED = 2;

const SOURCE = `
const { workerData } = require('node:worker_threads');
const Database = require(workerData.sqlite);
const flags = new Int32Array(workerData.signal);
const end = () => { Atomics.store(flags, ${STATE}, ${CLOSED}); Atomics.notify(flags, ${STATE}); };
// A log closed before this thread started never sees it open a connection.
if (Atomics.compareExchange(flags, ${STATE}, ${NOT_STARTED}, ${OPEN}) !== ${NOT_STARTED}) return;
let db;
try { db = new Database(workerData.path, { fileMustExist: true, timeout: 0 }); } catch { end(); return; }
// Lowest CPU priority for this thread only (Linux: /proc/thread-self names it): on a busy
// machine a checkpoint takes the cores' idle time, never the bus's or the writer's.
try { require('node:os').setPriority(Number(require('node:fs').readlinkSync('/proc/thread-self').split('/').pop()), 19); } catch {}
for (;;) {
  Atomics.wait(flags, ${SIGNAL}, 0);
  if (Atomics.load(flags, ${STOP}) === 1) break;
  Atomics.store(flags, ${SIGNAL}, 0);
  // The writer truncating now: its checkpoint covers this one.
  if (Atomics.compareExchange(flags, ${SLOT}, ${IDLE}, ${THREAD}) !== ${IDLE}) continue;
  try { db.pragma('wal_checkpoint(PASSIVE)'); } catch {}
  Atomics.store(flags, ${SLOT}, ${IDLE});
  Atomics.notify(flags, ${SLOT});
}
try { db.close(); } catch {}
end();
`;

const sqlitePath = createRequire(import.meta.url).resolve('better-sqlite3');

/** How long {@link Checkpointer.stop} waits for the thread to close its connection. */
const STOP_WAIT_MS = 5000;

/** The checkpoint thread of one audit file. */
export class Checkpointer {
  readonly #worker: Worker;
  readonly #flags: Int32Array;

  constructor(path: string) {
    const signal = new SharedArrayBuffer(16);
    this.#flags = new Int32Array(signal);
    this.#worker = new Worker(`(() => {${SOURCE}})()`, { eval: true, workerData: { path, signal, sqlite: sqlitePath } });
    this.#worker.on('error', () => {}); // a failed checkpointer only means more work for the writer's own checkpoints
    this.#worker.unref();
  }

  /** Asks for a checkpoint (coalesced: one runs per signal, however many arrive meanwhile). */
  request(): void {
    Atomics.store(this.#flags, SIGNAL, 1);
    Atomics.notify(this.#flags, SIGNAL);
  }

  /**
   * Takes the checkpoint slot for the writer, waiting at most `waitMs` for the thread's
   * checkpoint in progress to end; false when it did not. Give it back with {@link release}.
   */
  tryAcquire(waitMs: number): boolean {
    const until = performance.now() + waitMs;
    for (;;) {
      const held = Atomics.compareExchange(this.#flags, SLOT, IDLE, WRITER);
      if (held === IDLE) return true;
      const left = until - performance.now();
      if (left <= 0) return false;
      Atomics.wait(this.#flags, SLOT, held, left);
    }
  }

  /** Gives the slot taken by {@link tryAcquire} back. */
  release(): void {
    Atomics.store(this.#flags, SLOT, IDLE);
    Atomics.notify(this.#flags, SLOT);
  }

  /**
   * Stops the thread and waits until its connection is closed, so that the writer's own
   * close is the last one (SQLite then checkpoints and removes the WAL and shared-memory files).
   */
  stop(): void {
    Atomics.store(this.#flags, STOP, 1);
    Atomics.store(this.#flags, SIGNAL, 1);
    Atomics.notify(this.#flags, SIGNAL);
    // Not started yet: it never will open its connection.
    if (Atomics.compareExchange(this.#flags, STATE, NOT_STARTED, CLOSED) !== NOT_STARTED) {
      const until = performance.now() + STOP_WAIT_MS;
      for (let left = STOP_WAIT_MS; Atomics.load(this.#flags, STATE) !== CLOSED && left > 0; left = until - performance.now()) {
        Atomics.wait(this.#flags, STATE, OPEN, left);
      }
    }
    void this.#worker.terminate();
  }
}
