/**
 * Records encoded for storage before they reach the log's connection: each record's
 * canonical line (with seq 0, which the writer replaces with the real seq) and, per stored
 * batch, the index keys as JSON arrays that SQLite reads with `json_each` (one statement per
 * batch and index instead of one per key). Encoding happens on the bus's thread, so a worker
 * log receives one string per batch instead of record objects, and an invalid record fails
 * its own append before anything is sent.
 */
import { BATCH_RECORDS, COL } from './migrations.js';
import { encodeRow } from './hash-chain.js';
import { toRow } from './records.js';
import type { AuditRecord } from './types.js';

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
  /** JSON array of the signing nodes of digest records, each once (`'[]'` for none: the common case). */
  readonly digests: string;
  /** Held copies of `pending` rows (see HoldStore): `[index in batch, messageId, to, requestedAt, expiresAt, rule, trust, envelope, payload]`. */
  readonly holds?: unknown[][];
  /** Replies kept for result(): `[index in batch, messageId answered, reply JSON]`. */
  readonly replies?: unknown[][];
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

/**
 * Encodes records into batches of at most {@link BATCH_RECORDS}.
 *
 * @throws InvalidRecordError naming the first record that is not a valid audit record.
 */
export function encodeBatches(records: readonly AuditRecord[]): EncodedBatch[] {
  const batches: EncodedBatch[] = [];
  for (let start = 0; start < records.length; start += BATCH_RECORDS) {
    const end = Math.min(records.length, start + BATCH_RECORDS);
    let lines = '';
    const agents = new Set<string>();
    const conversations = new Set<string>();
    const messages = new Set<string>();
    let digests: Set<string> | undefined;
    let holds: unknown[][] | undefined;
    let replies: unknown[][] | undefined;
    for (let i = start; i < end; i++) {
      let row: unknown[];
      let line: string;
      const record = records[i] as AuditRecord;
      try {
        row = toRow(record, 0);
        line = encodeRow(row); // may replace lone surrogates in row: index what is stored
      } catch (e) {
        throw new InvalidRecordError(i, e);
      }
      lines = i === start ? line : `${lines}\n${line}`;
      if (record.kind === 'digest') {
        // A record of the nodes, naming no agent or conversation: indexed by its signing node only.
        (digests ??= new Set()).add(row[COL.peer_node] as string);
        continue;
      }
      agents.add(row[COL.recipient] as string);
      const sender = row[COL.sender];
      if (typeof sender === 'string') agents.add(sender);
      const conversation = row[COL.conversation_id];
      if (typeof conversation === 'string') conversations.add(conversation);
      else messages.add(row[COL.message_id] as string);
      // Side tables of durable approvals: rare, so the common record pays one property read.
      if (record.kind === 'attempt') {
        const held = record.held;
        if (held !== undefined) {
          (holds ??= []).push([i - start, record.messageId, record.to, held.requestedAt, held.expiresAt, held.rule ?? null, held.trust, held.envelope, held.payload]);
        } else if (record.keptReply !== undefined && record.inReplyTo !== undefined) {
          (replies ??= []).push([i - start, record.inReplyTo, record.keptReply]);
        }
      }
    }
    batches.push({
      count: end - start,
      lines,
      agents: JSON.stringify([...agents]),
      conversations: JSON.stringify([...conversations]),
      messages: messages.size === 0 ? '[]' : JSON.stringify([...messages]),
      digests: digests === undefined ? '[]' : JSON.stringify([...digests]),
      ...(holds !== undefined ? { holds } : {}),
      ...(replies !== undefined ? { replies } : {}),
    });
  }
  return batches;
}
