/**
 * What `verify` checks beyond the chain: the lookup tables that queries read.
 *
 * `audit_slice` (agent → batches), `audit_conversation` (conversation → batches),
 * `audit_message` (message → batches, for records without a conversation) and `audit_digest`
 * (signing node → batches holding its digest records, which name no agent) are derived from
 * the records and not hashed. A query finds its candidate batches through them, then checks
 * every record it reads (sender or recipient, conversation, message id): so a row too many
 * can only cost a read, but a row deleted or repointed hides records (`switchboard log
 * --agent vault` would show nothing). After the chain holds, {@link checkIndexes} derives
 * from every verified record the rows its batch must have and finds the first record one is
 * missing for; and {@link checkSchema} refuses lookup tables whose definition (or an index on
 * them) is not the schema's, since a query's plan could then read something the check did not.
 */
import type Database from 'better-sqlite3';
import { COL, migrate } from './migrations.js';
import { loadSqlite } from './native.js';

/** The tables a query reads. */
export const QUERY_TABLES = ['audit_batch', 'audit_slice', 'audit_conversation', 'audit_message', 'audit_digest'] as const;

/** A lookup row a record needs and does not have. */
export interface MissingIndex {
  /** The record's seq. */
  seq: number;
  reason: string;
}

const MISSING_SQL = `
SELECT b.first_seq + r.key, r.value ->> ${COL.recipient}, r.value ->> ${COL.sender}, r.value ->> ${COL.conversation_id}, r.value ->> ${COL.message_id},
  (r.value ->> ${COL.kind}) <> 'digest' AND NOT EXISTS (SELECT 1 FROM audit_slice s WHERE s.agent = r.value ->> ${COL.recipient} AND s.first_seq = b.first_seq),
  (r.value ->> ${COL.sender}) IS NOT NULL AND NOT EXISTS (SELECT 1 FROM audit_slice s WHERE s.agent = r.value ->> ${COL.sender} AND s.first_seq = b.first_seq),
  (r.value ->> ${COL.conversation_id}) IS NOT NULL AND NOT EXISTS (SELECT 1 FROM audit_conversation c WHERE c.conversation_id = r.value ->> ${COL.conversation_id} AND c.first_seq = b.first_seq),
  (r.value ->> ${COL.conversation_id}) IS NULL AND (r.value ->> ${COL.kind}) <> 'digest' AND NOT EXISTS (SELECT 1 FROM audit_message m WHERE m.message_id = r.value ->> ${COL.message_id} AND m.first_seq = b.first_seq),
  r.value ->> ${COL.peer_node}
FROM audit_batch b, jsonb_each(b.records) r
WHERE b.first_seq > ? AND (
  ((r.value ->> ${COL.kind}) <> 'digest' AND NOT EXISTS (SELECT 1 FROM audit_slice s WHERE s.agent = r.value ->> ${COL.recipient} AND s.first_seq = b.first_seq))
  OR ((r.value ->> ${COL.kind}) = 'digest' AND NOT EXISTS (SELECT 1 FROM audit_digest d WHERE d.node = r.value ->> ${COL.peer_node} AND d.first_seq = b.first_seq))
  OR ((r.value ->> ${COL.sender}) IS NOT NULL AND NOT EXISTS (SELECT 1 FROM audit_slice s WHERE s.agent = r.value ->> ${COL.sender} AND s.first_seq = b.first_seq))
  OR ((r.value ->> ${COL.conversation_id}) IS NOT NULL AND NOT EXISTS (SELECT 1 FROM audit_conversation c WHERE c.conversation_id = r.value ->> ${COL.conversation_id} AND c.first_seq = b.first_seq))
  OR ((r.value ->> ${COL.conversation_id}) IS NULL AND (r.value ->> ${COL.kind}) <> 'digest' AND NOT EXISTS (SELECT 1 FROM audit_message m WHERE m.message_id = r.value ->> ${COL.message_id} AND m.first_seq = b.first_seq)))
ORDER BY b.first_seq, r.key
LIMIT 1`;

/**
 * The first record (after `after`) whose batch lacks a lookup row for its recipient, its
 * sender, its conversation, or (without one) its message; or, for a digest record (which names
 * no agent, conversation or message: its only lookup row), its signing node. Undefined when
 * every row is there.
 */
export function checkIndexes(db: Database.Database, after: number): MissingIndex | undefined {
  const row = db.prepare(MISSING_SQL).raw().get(after) as unknown[] | undefined;
  if (row === undefined) return undefined;
  const [seq, to, from, conversation, message, noTo, noFrom, noConversation, noMessage, signer] = row;
  const what = noTo
    ? `agent ${JSON.stringify(to)}`
    : noFrom
      ? `agent ${JSON.stringify(from)}`
      : noConversation
        ? `conversation ${JSON.stringify(conversation)}`
        : noMessage
          ? `message ${JSON.stringify(message)}`
          : `signing node ${JSON.stringify(signer)}`;
  return { seq: seq as number, reason: `row ${String(seq)} is not indexed under its ${what}: a lookup table was edited, so queries could miss it` };
}

let expected: Map<string, string> | undefined;

/** `type name` → sql of every schema object on the tables queries read, as the migrations make them. */
function expectedSchema(): Map<string, string> {
  if (expected === undefined) {
    const Sqlite = loadSqlite();
    const db = new Sqlite(':memory:');
    try {
      db.transaction(() => migrate(db, ':memory:'))();
      expected = schemaOf(db);
    } finally {
      db.close();
    }
  }
  return expected;
}

function schemaOf(db: Database.Database): Map<string, string> {
  const tables = QUERY_TABLES.map(() => '?').join(', ');
  const rows = db.prepare(`SELECT type, name, coalesce(sql, '') FROM sqlite_schema WHERE tbl_name IN (${tables}) OR name IN (${tables})`).raw().all(...QUERY_TABLES, ...QUERY_TABLES) as [string, string, string][];
  // Whitespace aside: the same definition written by an older copy of the migrations is the same.
  return new Map(rows.map(([type, name, sql]) => [`${type} ${name}`, sql.replace(/\s+/g, ' ').trim()]));
}

/** What differs between the tables queries read and the schema's (undefined when nothing). */
export function checkSchema(db: Database.Database): string | undefined {
  const want = expectedSchema();
  const have = schemaOf(db);
  for (const [key, sql] of want) {
    if (!have.has(key)) return `the ${key} the queries read is missing`;
    if (have.get(key) !== sql) return `the ${key} the queries read was redefined`;
  }
  for (const key of have.keys()) if (!want.has(key)) return `an unexpected ${key} was added on the tables the queries read`;
  return undefined;
}
