import { createHash } from 'node:crypto';
import type { PendingApproval } from '../approvals.js';
import { COL } from '../audit/migrations.js';
import type { StoredHold } from '../audit/types.js';
import type { EncodedPayload } from '../codec.js';
import { PRIORITIES, type Envelope } from '../envelope.js';
import { BusError } from '../errors.js';
import type { AgentRecord } from './records.js';
import { Mailbox } from '../mailbox.js';

// Durable approvals, the restoring side: a held copy read back from the audit file is
// trusted only as far as its chained attempt row vouches for it.

/** Why a hold the file marks approved is not delivered when no approval row of the log vouches for it. */
export const UNVOUCHED = 'it is marked approved in the file, but the log records no approval of it';

/** Why a restored hold is not delivered on approval when the log shows it decided already (its row was put back in the file). */
export const REDECIDED = 'the log records a decision on it already';

/** A stored hold that passed its checks: the envelope as it will be delivered, and its payload. */
export interface RestoredCopy {
  readonly envelope: Envelope;
  readonly encoded: EncodedPayload;
  readonly approval: PendingApproval;
}

/**
 * Reads a stored hold back and checks it against its `pending` attempt row (which the hash
 * chain covers): same message, parties, type, intent and conversation, and a payload whose
 * SHA-256 and size are the ones recorded. Returns the copy, or why it cannot be trusted.
 */
export function readStoredHold(s: StoredHold): RestoredCopy | string {
  const row = s.attempt;
  if (row === undefined) return 'its pending row is no longer in the log';
  if (row[COL.kind] !== 'attempt' || row[COL.decision] !== 'pending' || row[COL.message_id] !== s.messageId || row[COL.recipient] !== s.to) {
    return 'it does not match its pending row';
  }
  if (createHash('sha256').update(s.payload).digest('hex') !== row[COL.payload_hash] || Buffer.byteLength(s.payload) !== row[COL.payload_bytes]) {
    return 'its stored payload does not match the hash its pending row records';
  }
  let stored: Record<string, unknown>;
  let encoded: EncodedPayload;
  try {
    stored = JSON.parse(s.envelope) as Record<string, unknown>;
    // The bytes are the ones hashed when it was sent (checked just above), a copy the codec
    // made then: parsing them gives that copy back, without walking it again.
    encoded = { json: s.payload, bytes: row[COL.payload_bytes] as number, copy: deepFreeze(JSON.parse(s.payload)) };
  } catch {
    return 'its stored copy cannot be read';
  }
  const type = row[COL.type];
  const valid =
    (type === 'ask' || type === 'delegate' || type === 'notify') &&
    typeof row[COL.sender] === 'string' &&
    typeof row[COL.intent] === 'string' &&
    typeof row[COL.conversation_id] === 'string' &&
    Number.isFinite(row[COL.ts]) &&
    PRIORITIES.includes(stored.priority as Envelope['priority']) &&
    Number.isSafeInteger(stored.depth) &&
    (stored.deadline === undefined || Number.isFinite(stored.deadline));
  if (!valid) return 'its stored envelope cannot be read';
  // Who, to whom, what, when and the rule come from the chained row; only priority, depth and deadline from the copy.
  const envelope: { -readonly [K in keyof Envelope]: Envelope[K] } = {
    id: s.messageId,
    type,
    from: row[COL.sender] as string,
    to: s.to,
    intent: row[COL.intent] as string,
    payload: encoded.copy,
    ts: row[COL.ts] as number,
    conversationId: row[COL.conversation_id] as string,
    priority: stored.priority as Envelope['priority'],
    depth: stored.depth as number,
  };
  if (typeof row[COL.causation_id] === 'string') envelope.causationId = row[COL.causation_id] as string;
  if (stored.deadline !== undefined) envelope.deadline = stored.deadline as number;
  Object.freeze(envelope);
  const approval: PendingApproval = Object.freeze({
    id: envelope.type === 'notify' ? `${envelope.id}/${envelope.to}` : envelope.id,
    envelope,
    // The operator decides on it: the chained row's rule, not the hold row's copy.
    ...(typeof row[COL.rule] === 'string' ? { rule: row[COL.rule] as string } : {}),
    payloadHash: row[COL.payload_hash] as string,
    payloadBytes: row[COL.payload_bytes] as number,
    requestedAt: s.requestedAt,
    expiresAt: s.expiresAt,
    restored: true as const,
  });
  return { envelope, encoded, approval };
}

/** What a decision row needs of a stored hold whose copy could not be read. */
export function unreadableApproval(s: StoredHold): PendingApproval {
  const row = s.attempt;
  const envelope = {
    id: s.messageId,
    to: s.to,
    from: typeof row?.[COL.sender] === 'string' ? row[COL.sender] : '?',
    conversationId: typeof row?.[COL.conversation_id] === 'string' ? row[COL.conversation_id] : s.messageId,
  } as unknown as Envelope;
  return { id: s.messageId, envelope, payloadHash: '', payloadBytes: 0, requestedAt: s.requestedAt, expiresAt: s.expiresAt, restored: true };
}

/**
 * The stand-in for a restored message's sender (its process is gone) or for a recipient not
 * registered yet. Never in the registry, never given a handle.
 */
export function absentRecord(id: string, trust: number): AgentRecord {
  return {
    id,
    handlers: new Map(),
    mailbox: new Mailbox(1, 0),
    bucket: undefined,
    capabilities: [],
    trust,
    alive: true,
    outgoing: new Set(),
    incoming: new Set(),
    deliveries: new Set(),
  };
}

/** The error of an approved restored message whose recipient never registered. */
export function noRecipient(envelope: Envelope): BusError {
  return new BusError('UNKNOWN_AGENT', `${envelope.to} was not registered before the approved "${envelope.intent}" reached its deadline`, {
    messageId: envelope.id,
    agentId: envelope.to,
  });
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}
