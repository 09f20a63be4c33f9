/**
 * Records encoded for storage before they reach the log's connection: each record's
 * canonical line (with seq 0, which the writer replaces with the real seq) and, per stored
 * batch, the index keys as JSON arrays that SQLite reads with `json_each` (one statement per
 * batch and index instead of one per key). In two steps: records become checked rows on the
 * bus's thread (so an invalid record fails its own append before anything is sent), and
 * rows become lines and keys where they are stored: a worker log receives the rows (plain
 * arrays, cheaper to clone than to serialize here) and encodes them on its own thread.
 */
import { hash } from 'node:crypto';
import { BATCH_RECORDS, COL } from './migrations.js';
import { encodeRow } from './hash-chain.js';
import { toRow } from './records.js';
import type { AttemptRecord, AuditRecord } from './types.js';

/** Logs that hash attempt payloads where they store them (the worker log, on its own thread). */
const payloadHashers = new WeakSet<object>();

/** Marks `log` as one that computes `payloadHash` itself from the JSON given with {@link hashPayloadLater}. */
export function hashesPayloads(log: object): void {
  payloadHashers.add(log);
}

/** True when records given to `log` may leave their payload hash to it. */
export function isPayloadHasher(log: object | undefined): boolean {
  return log !== undefined && payloadHashers.has(log);
}

/**
 * Where an attempt record whose `payloadHash` is to be computed where it is stored keeps the
 * payload's JSON: a property no one else can name, left out of JSON and `Object.keys` (a
 * WeakMap entry per record would cost the garbage collector more).
 */
const PAYLOAD_JSON = Symbol('payloadJson');

/**
 * Leaves the payload hash of `record` (its `payloadHash` is '') to the log that stores it:
 * only for a log marked with {@link hashesPayloads}. The stored row is the same as if the
 * hash had been computed here: SHA-256 of the same JSON, as hex.
 */
export function hashPayloadLater(record: AttemptRecord, json: string): void {
  (record as { [PAYLOAD_JSON]?: string })[PAYLOAD_JSON] = json;
}

/**
 * The record with its payload hash computed here and the JSON let go: for a record kept
 * a while before it is written (a refusal summary's sample), which must not hold a payload.
 */
export function withPayloadHash<R extends AuditRecord>(record: R): R {
  const json = (record as { [PAYLOAD_JSON]?: unknown })[PAYLOAD_JSON];
  if (typeof json !== 'string') return record;
  const { [PAYLOAD_JSON]: _json, ...rest } = record as R & { [PAYLOAD_JSON]?: string };
  return { ...rest, payloadHash: hash('sha256', json, 'hex') } as unknown as R;
}

/** Stands in a row for the hash of a payload's JSON until the storing thread computes it. */
interface PayloadToHash {
  readonly json: string;
}

/** Up to {@link BATCH_RECORDS} consecutive records, ready to be stored as one batch row. */
export interface EncodedBatch {
  /** How many records. */
  readonly count: number;
  /** Each record's canonical line with seq 0 (`[0,"kind",…]`), joined by `\n` (JSON never holds a raw newline). */
  readonly lines: string;
  /** JSON array of the agents named (recipients and senders), each once. */
  readonly agents: string;
  /** JSON array of the conversations named, each once. */
  readonly conversations: string;
  /** JSON array of the messages of records without a conversation, each once. */
  readonly messages: string;
}

/** A record that cannot be stored: `index` is its position among the records given. */
export class InvalidRecordError extends TypeError {
  constructor(
    readonly index: number,
    cause: unknown,
  ) {
    super(cause instanceof Error ? cause.message : String(cause), { cause });
  }
}

/** A record as its stored row (see {@link toRow}), seq 0: checked, capped, plain data. */
export type RecordRow = unknown[];

/**
 * Each record as its row, checked: the part of encoding that must happen where the records
 * are (an invalid record fails its own append before anything is sent). Rows are plain
 * arrays of strings, numbers and nulls, cheap to hand to another thread.
 *
 * @throws InvalidRecordError naming the first record that is not a valid audit record.
 */
export function toRows(records: readonly AuditRecord[]): RecordRow[] {
  const rows = new Array<RecordRow>(records.length);
  for (let i = 0; i < records.length; i++) {
    const record = records[i] as AuditRecord;
    let row: RecordRow;
    try {
      row = toRow(record, 0);
    } catch (e) {
      throw new InvalidRecordError(i, e);
    }
    const json = (record as { [PAYLOAD_JSON]?: unknown })[PAYLOAD_JSON];
    if (typeof json === 'string') row[COL.payload_hash] = { json } satisfies PayloadToHash;
    rows[i] = row;
  }
  return rows;
}

/**
 * Rows from {@link toRows} as batches of at most {@link BATCH_RECORDS}: each row's canonical
 * line and the batch's index keys. Cannot fail on rows `toRows` made; runs on whichever
 * thread stores them (the worker log's, for a file).
 */
export function encodeRows(rows: readonly RecordRow[]): EncodedBatch[] {
  const batches: EncodedBatch[] = [];
  for (let start = 0; start < rows.length; start += BATCH_RECORDS) {
    const end = Math.min(rows.length, start + BATCH_RECORDS);
    let lines = '';
    const agents = new Set<string>();
    const conversations = new Set<string>();
    const messages = new Set<string>();
    for (let i = start; i < end; i++) {
      const row = rows[i] as RecordRow;
      const toHash = row[COL.payload_hash];
      if (typeof toHash === 'object' && toHash !== null) row[COL.payload_hash] = hash('sha256', (toHash as PayloadToHash).json, 'hex');
      const line = encodeRow(row); // may replace lone surrogates in row: index what is stored
      lines = i === start ? line : `${lines}\n${line}`;
      agents.add(row[COL.recipient] as string);
      const sender = row[COL.sender];
      if (typeof sender === 'string') agents.add(sender);
      const conversation = row[COL.conversation_id];
      if (typeof conversation === 'string') conversations.add(conversation);
      else messages.add(row[COL.message_id] as string);
    }
    batches.push({
      count: end - start,
      lines,
      agents: JSON.stringify([...agents]),
      conversations: JSON.stringify([...conversations]),
      messages: messages.size === 0 ? '[]' : JSON.stringify([...messages]),
    });
  }
  return batches;
}

/**
 * Encodes records into batches of at most {@link BATCH_RECORDS}: {@link toRows}, then {@link encodeRows}.
 *
 * @throws InvalidRecordError naming the first record that is not a valid audit record.
 */
export function encodeBatches(records: readonly AuditRecord[]): EncodedBatch[] {
  return encodeRows(toRows(records));
}
