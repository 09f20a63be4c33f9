/**
 * WAL checkpoints off the commit path: a small thread with its own connection to the audit
 * file runs `wal_checkpoint(PASSIVE)` whenever the writer signals that enough has been
 * committed since the last one. The writer has `wal_autocheckpoint = 0`, so no commit ever
 * waits for a checkpoint; a PASSIVE checkpoint never blocks the writer either (it copies what
 * it can and leaves the rest for the next signal).
 */
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';

const SOURCE = `
const { workerData } = require('node:worker_threads');
const Database = require(workerData.sqlite);
const flags = new Int32Array(workerData.signal);
let db;
try { db = new Database(workerData.path, { fileMustExist: true, timeout: 0 }); } catch { return; }
// Lowest CPU priority for this thread only (Linux: /proc/thread-self names it): on a busy
// machine a checkpoint takes the cores' idle time, never the bus's or the writer's.
try { require('node:os').setPriority(Number(require('node:fs').readlinkSync('/proc/thread-self').split('/').pop()), 19); } catch {}
for (;;) {
  Atomics.wait(flags, 0, 0);
  if (Atomics.load(flags, 1) === 1) break;
  Atomics.store(flags, 0, 0);
  try { db.pragma('wal_checkpoint(PASSIVE)'); } catch {}
}
db.close();
`;

const sqlitePath = createRequire(import.meta.url).resolve('better-sqlite3');

/** The checkpoint thread of one audit file. */
export class Checkpointer {
  readonly #worker: Worker;
  readonly #flags: Int32Array;

  constructor(path: string) {
    const signal = new SharedArrayBuffer(8);
    this.#flags = new Int32Array(signal);
    this.#worker = new Worker(`(() => {${SOURCE}})()`, { eval: true, workerData: { path, signal, sqlite: sqlitePath } });
    this.#worker.on('error', () => {}); // a failed checkpointer only means a longer WAL until close
    this.#worker.unref();
  }

  /** Asks for a checkpoint (coalesced: one runs per signal, however many arrive meanwhile). */
  request(): void {
    Atomics.store(this.#flags, 0, 1);
    Atomics.notify(this.#flags, 0);
  }

  /** Stops the thread (its connection closes when it sees the stop flag, or with the thread). */
  stop(): void {
    Atomics.store(this.#flags, 1, 1);
    Atomics.store(this.#flags, 0, 1);
    Atomics.notify(this.#flags, 0);
    void this.#worker.terminate();
  }
}
