// The audit worker: owns one SqliteAuditLog on its own thread (the second core) and answers
// requests from WorkerAuditLog in order. After each answer it bumps a shared counter, so
// the main thread can also wait for an answer synchronously (Atomics.wait).
import { receiveMessageOnPort, workerData, type MessagePort } from 'node:worker_threads';
import { BusError } from '../errors.js';
import { SqliteAuditLog, type SqliteAuditLogOptions } from './sqlite.js';
import type { AuditRecord, MessageLogQuery } from './types.js';

/** What the main thread asks. `records` travel as one JSON string: far cheaper than cloning objects. */
export type WorkerRequest =
  | { id: number; op: 'append'; records: string }
  | { id: number; op: 'query'; filter: MessageLogQuery }
  | { id: number; op: 'verify' }
  | { id: number; op: 'close' };

export type WorkerReply =
  | { id: number; ok: true; result?: unknown }
  | { id: number; ok: false; error: { message: string; code: string } };

export interface WorkerInit {
  readonly port: MessagePort;
  readonly signal: SharedArrayBuffer;
  readonly options: SqliteAuditLogOptions;
}

const { port, signal, options } = workerData as WorkerInit;
const counter = new Int32Array(signal);

function answer(reply: WorkerReply): void {
  port.postMessage(reply);
  Atomics.add(counter, 0, 1);
  Atomics.notify(counter, 0);
}

function failure(id: number, error: unknown): WorkerReply {
  const e = error as { message?: unknown; code?: unknown };
  return { id, ok: false, error: { message: String(e?.message ?? error), code: typeof e?.code === 'string' ? e.code : 'AUDIT_UNAVAILABLE' } };
}

let log: SqliteAuditLog | undefined;
try {
  log = new SqliteAuditLog(options);
  answer({ id: 0, ok: true });
} catch (error) {
  answer(failure(0, error));
}

port.on('message', (first: WorkerRequest) => {
  // Appends already waiting behind this one join its transaction: under load that turns
  // many small commits into one. Each still gets its own answer, in order.
  const appends: Extract<WorkerRequest, { op: 'append' }>[] = [];
  let request: WorkerRequest | undefined = first;
  while (request !== undefined && request.op === 'append') {
    appends.push(request);
    request = (receiveMessageOnPort(port)?.message as WorkerRequest | undefined) ?? undefined;
  }
  if (appends.length > 0) appendAll(appends);
  if (request !== undefined) handle(request);
});

function appendAll(requests: Extract<WorkerRequest, { op: 'append' }>[]): void {
  try {
    if (log === undefined) throw new BusError('AUDIT_UNAVAILABLE', 'the audit log could not be opened');
    const records: AuditRecord[] = [];
    for (const r of requests) for (const record of JSON.parse(r.records) as AuditRecord[]) records.push(record);
    log.append(records);
    for (const r of requests) answer({ id: r.id, ok: true });
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
      case 'verify':
        return answer({ id: request.id, ok: true, result: log.verify() });
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
