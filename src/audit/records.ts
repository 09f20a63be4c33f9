/**
 * How a record becomes a stored row: the column values in {@link ROW_COLUMNS} order, every
 * caller-influenced string capped at {@link STRING_CAP} characters with its original length
 * kept in the `truncated` column, so no single record can make an unbounded row.
 */
import { MESSAGE_TYPES } from '../envelope.js';
import { ErrorCode } from '../errors.js';
import { ROW_COLUMNS } from './migrations.js';
import type { AuditRecord, RefusalSummary } from './types.js';

/** The most characters any stored string keeps (a longer one is cut, and its length recorded). */
export const STRING_CAP = 1024;

const FIELD_NAMES: Record<number, string> = {
  3: 'messageId',
  4: 'to',
  5: 'from',
  7: 'intent',
  11: 'reason',
  12: 'rule',
  17: 'decidedBy',
  18: 'note',
  19: 'conversationId',
  20: 'causationId',
  21: 'inReplyTo',
  23: 'node',
  24: 'peerNode',
};

const CAPPED = Object.keys(FIELD_NAMES).map(Number);

/** A record as a row array in ROW_COLUMNS order (absent fields stay undefined, i.e. null in JSON). */
export function toRow(r: AuditRecord, seq: number): unknown[] {
  let row: unknown[];
  switch (r.kind) {
    case 'attempt':
      row = [seq, 'attempt', r.ts, r.messageId, r.to, r.from, r.type, r.intent, r.payloadHash, r.payloadBytes, r.decision, r.reason, r.rule, r.policyVersion, r.code, r.outcome, null, null, null, r.conversationId, r.causationId, r.inReplyTo];
      break;
    case 'outcome':
      row = [seq, 'outcome', r.ts, r.messageId, r.to, r.from, null, null, null, null, null, r.reason, null, null, r.code, r.outcome, null, null, null, r.conversationId, null, null];
      break;
    case 'approval':
      row = [seq, 'approval', r.ts, r.messageId, r.to, r.from, null, null, null, null, null, null, null, r.policyVersion, null, null, r.approval, r.decidedBy, r.note, r.conversationId, null, null];
      break;
    case 'digest':
      // A record of the nodes: no agent, message type or conversation (see DigestRecord).
      if (typeof r.payloadHash !== 'string' || !HEX64.test(r.payloadHash)) throw new TypeError('digest record has no payloadHash (64 lowercase hex characters)');
      if (typeof r.proof !== 'string' || r.proof === '') throw new TypeError('digest record has no proof');
      row = [seq, 'digest', r.ts, r.digestId, null, null, null, null, r.payloadHash, null, null, null, null, null, null, null, null, null, null, null, null, null];
      break;
    default:
      throw new TypeError(`unknown audit record kind ${JSON.stringify((r as { kind?: unknown } | null)?.kind)}`);
  }
  if (r.node !== undefined || r.peerNode !== undefined || r.proof !== undefined) row.push(null, r.node ?? null, r.peerNode ?? null);
  if (r.proof !== undefined) row.push(r.proof);
  if (r.kind === 'attempt' && r.hold !== undefined) {
    while (row.length < HOLD) row.push(null);
    row.push(r.hold);
  }
  checkRow(row);
  let truncated: Record<string, number> | undefined;
  for (const i of CAPPED) {
    const v = row[i];
    if (typeof v === 'string' && v.length > STRING_CAP) {
      (truncated ??= {})[FIELD_NAMES[i] as string] = v.length;
      row[i] = v.slice(0, STRING_CAP);
    }
  }
  // A refusal-summary row keeps its tally in the `note` column, which attempts do not
  // otherwise use: no schema change, and old readers still see a denied attempt with a reason.
  if (r.kind === 'attempt' && r.refusals !== undefined) row[NOTE] = summaryOf(r.refusals);
  if (truncated !== undefined) {
    if (row.length > 22) row[22] = truncated;
    else row.push(truncated);
  }
  return row;
}

const NOTE = ROW_COLUMNS.indexOf('note');
const HEX64 = /^[0-9a-f]{64}$/;
const HOLD = ROW_COLUMNS.indexOf('hold');
const CODES: ReadonlySet<string> = new Set(Object.values(ErrorCode));

/** A plain copy of a refusal summary whose counts add up, or a TypeError (the batch fails, nothing half written). */
function summaryOf(s: RefusalSummary): RefusalSummary {
  const { count, first, last } = s;
  if (!Number.isSafeInteger(count) || count < 1) throw new TypeError(`refusal summary has an invalid count ${String(count)}`);
  if (!Number.isFinite(first) || !Number.isFinite(last) || first > last) throw new TypeError(`refusal summary has an invalid window ${String(first)}..${String(last)}`);
  const codes: Partial<Record<ErrorCode, number>> = {};
  let total = 0;
  for (const [code, n] of Object.entries(s.codes)) {
    if (!CODES.has(code) || !Number.isSafeInteger(n) || (n as number) < 1) throw new TypeError(`refusal summary has an invalid count for ${JSON.stringify(code)}`);
    codes[code as ErrorCode] = n as number;
    total += n as number;
  }
  if (total !== count) throw new TypeError(`refusal summary counts ${total} refusals by code, not ${count}`);
  return { count, first, last, codes };
}

const ENUMS: [number, ReadonlySet<string>][] = [
  [6, new Set(MESSAGE_TYPES)],
  [10, new Set(['allowed', 'denied', 'pending'])],
  [15, new Set(['delivered', 'replied', 'failed', 'expired', 'cancelled', 'late-reply', 'interrupted'])],
  [16, new Set(['approved', 'rejected', 'expired', 'cancelled'])],
];

const REQUIRED: Record<string, readonly number[]> = {
  attempt: [2, 3, 4, 5, 6, 7, 8, 9, 10, 13, 19],
  outcome: [2, 3, 4, 15],
  approval: [2, 3, 4, 13, 16],
  digest: [2, 3, 8, 24, 25],
};

/** The v2 table's NOT NULL and type checks, so a bad record fails its batch instead of being stored. */
function checkRow(row: unknown[]): void {
  for (const i of REQUIRED[row[1] as string] ?? []) {
    const v = row[i];
    if (v === undefined || v === null) throw new TypeError(`${row[1]} record has no ${row[1] === 'digest' && i === 3 ? 'digestId' : (FIELD_NAMES[i] ?? ROW_COLUMNS[i])}`);
  }
  for (const [i, allowed] of ENUMS) {
    const v = row[i];
    if (v !== undefined && v !== null && !allowed.has(v as string)) throw new TypeError(`${row[1]} record has an invalid ${ROW_COLUMNS[i]} ${JSON.stringify(v)}`);
  }
  for (let i = 2; i < row.length; i++) {
    const v = row[i];
    if (v !== undefined && v !== null && typeof v !== 'string' && !(typeof v === 'number' && Number.isFinite(v))) {
      throw new TypeError(`${row[1]} record has a ${typeof v} where a string or number belongs (column ${i})`);
    }
  }
}
