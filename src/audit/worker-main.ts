// The audit worker: owns one SqliteAuditLog on its own thread (the second core) and answers
// requests from WorkerAuditLog in order. After each answer it bumps a shared counter, so
// the main thread can also wait for an answer synchronously (Atomics.wait).
import { receiveMessageOnPort, workerData, type MessagePort } from 'node:worker_threads';
import { BusError } from '../errors.js';
import type { EncodedBatch } from './encode.js';
import { appendEncoded, DEFAULT_MAX_WAL_BYTES, setBackpressureWait, SqliteAuditLog, type SqliteAuditLogOptions } from './sqlite.js';
import type { HoldDecision, MessageLogQuery, PeerDigestQuery } from './types.js';

/** What the main thread asks. Records travel encoded (a few strings per batch): far cheaper than cloning objects. */
export type WorkerRequest =
  | { id: number; op: 'append'; batches: EncodedBatch[]; count: number }
  | { id: number; op: 'query'; filter: MessageLogQuery }
  | { id: number; op: 'digests'; filter: PeerDigestQuery }
  | { id: number; op: 'verify'; head?: { seq: number; hash: string } }
  | { id: number; op: 'head' }
  | { id: number; op: 'decide'; decisions: HoldDecision[] }
  | { id: number; op: 'takeReply'; messageId: string }
  | { id: number; op: 'records'; messageId: string }
  | { id: number; op: 'close' };

export type WorkerReply =
  | { id: number; ok: true; result?: unknown }
  | { id: number; ok: false; error: WireError };

/** An error as it crosses the thread: its message and code, and its cause's (a SQLite error's code, e.g. `SQLITE_FULL`). */
export interface WireError {
  message: string;
  code: string;
  cause?: { name: string; message: string; code?: string };
}

/** Told as it happens, not in answer to a request: commits wait for a checkpoint (the WAL's size). */
export interface WorkerNotice {
  readonly backpressure: number;
}

export interface WorkerInit {
  readonly port: MessagePort;
  readonly signal: SharedArrayBuffer;
  readonly options: SqliteAuditLogOptions;
  /** How long a commit waits under backpressure: the main thread's figure (see setBackpressureWait). */
  readonly backpressureMs: number;
}

/** At most this many records in one transaction (more waits for the next). */
const MAX_FOLD_RECORDS = 8192;
/** At most this long spent gathering one transaction's requests. */
const MAX_FOLD_MS = 20;

const { port, signal, options, backpressureMs } = workerData as WorkerInit;
setBackpressureWait(backpressureMs);
/** At most this much encoded text in one transaction, so that one fits in the WAL's last quarter (see maxWalBytes). */
const MAX_FOLD_BYTES = (options.maxWalBytes ?? DEFAULT_MAX_WAL_BYTES) / 16;
const counter = new Int32Array(signal);

function answer(reply: WorkerReply): void {
  port.postMessage(reply);
  Atomics.add(counter, 0, 1);
  Atomics.notify(counter, 0);
}

function failure(id: number, error: unknown): WorkerReply {
  const e = error as { message?: unknown; code?: unknown; cause?: unknown };
  const wire: WireError = { message: String(e?.message ?? error), code: typeof e?.code === 'string' ? e.code : 'AUDIT_UNAVAILABLE' };
  // The inline log's error carries the SQLite error as its cause: so does the worker's (as plain fields: an Error does not clone with its code).
  const c = e?.cause as { name?: unknown; message?: unknown; code?: unknown } | undefined;
  if (c !== undefined && c !== null) {
    wire.cause = { name: typeof c.name === 'string' ? c.name : 'Error', message: String(c.message ?? c) };
    if (typeof c.code === 'string') wire.cause.code = c.code;
  }
  return { id, ok: false, error: wire };
}

let log: SqliteAuditLog | undefined;
try {
  // Posted at once: the main thread hears of it while this thread waits.
  log = new SqliteAuditLog({ ...options, onBackpressure: (walBytes) => port.postMessage({ backpressure: walBytes } satisfies WorkerNotice) });
  answer({ id: 0, ok: true });
} catch (error) {
  answer(failure(0, error));
}

port.on('message', (first: WorkerRequest) => {
  // Appends already waiting behind this one join its transaction: under load that turns
  // many small commits into one. Each still gets its own answer, in order.
  const appends: Extract<WorkerRequest, { op: 'append' }>[] = [];
  let request: WorkerRequest | undefined = first;
  let records = 0;
  let bytes = 0;
  const started = performance.now();
  // One transaction at a time; everything queued meanwhile joins the next, capped by records, bytes and time of work.
  while (request !== undefined && request.op === 'append' && records < MAX_FOLD_RECORDS && bytes < MAX_FOLD_BYTES && performance.now() - started < MAX_FOLD_MS) {
    appends.push(request);
    records += request.count;
    for (const b of request.batches) bytes += b.lines.length;
    request = (receiveMessageOnPort(port)?.message as WorkerRequest | undefined) ?? undefined;
  }
  if (appends.length > 0) appendAll(appends);
  if (request !== undefined) handle(request);
});

function appendAll(requests: Extract<WorkerRequest, { op: 'append' }>[]): void {
  try {
    if (log === undefined) throw new BusError('AUDIT_UNAVAILABLE', 'the audit log could not be opened');
    const batches: EncodedBatch[] = [];
    let count = 0;
    for (const r of requests) {
      for (const b of r.batches) batches.push(b);
      count += r.count;
    }
    // The last answer carries the new head (for audit.onCommit on the main thread).
    const head = appendEncoded(log, batches, count);
    for (const r of requests) answer({ id: r.id, ok: true, ...(r === requests[requests.length - 1] ? { result: head } : {}) });
  } catch (error) {
    for (const r of requests) answer(failure(r.id, error));
  }
}

function handle(request: WorkerRequest): void {
  try {
    if (log === undefined) throw new BusError('AUDIT_UNAVAILABLE', 'the audit log could not be opened');
    switch (request.op) {
      case 'append':
        return appendAll([request]);
      case 'query':
        return answer({ id: request.id, ok: true, result: log.query(request.filter) });
      case 'digests':
        return answer({ id: request.id, ok: true, result: log.peerDigests(request.filter) });
      case 'verify':
        return answer({ id: request.id, ok: true, result: log.verify(request.head === undefined ? {} : { head: request.head }) });
      case 'head':
        return answer({ id: request.id, ok: true, result: log.head() });
      case 'decide':
        return answer({ id: request.id, ok: true, result: log.decide(request.decisions) });
      case 'records':
        return answer({ id: request.id, ok: true, result: log.messageRecords(request.messageId) });
      case 'takeReply':
        return answer({ id: request.id, ok: true, result: log.keptReply(request.messageId, true) });
      case 'close':
        log.close();
        answer({ id: request.id, ok: true });
        port.close();
        return;
    }
  } catch (error) {
    answer(failure(request.id, error));
  }
}
