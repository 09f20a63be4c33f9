/**
 * The audit database's schema and how it is migrated.
 *
 * Versions live in `PRAGMA user_version`. Every migration runs inside one `BEGIN IMMEDIATE`
 * transaction together with the version bump, so a crash mid-migration leaves the old
 * version intact. A database newer than this code is refused, never "fixed".
 *
 * Rule for future migrations: rows already written must still verify. The hash of a row is
 * computed over its {@link ROW_COLUMNS} in order (see `hash-chain.ts`); a new column must
 * be appended to that list and be encoded only when it is not NULL, so the encoding of old
 * rows does not change.
 */
import type Database from 'better-sqlite3';
import { BusError } from '../errors.js';

/**
 * The row columns in their canonical order: the order of the INSERT, of every SELECT
 * that verifies, and of the JSON array each row's hash is computed over. `hash` follows.
 */
export const ROW_COLUMNS = [
  'seq',
  'kind',
  'ts',
  'message_id',
  'recipient',
  'sender',
  'type',
  'intent',
  'payload_hash',
  'payload_bytes',
  'decision',
  'reason',
  'rule',
  'policy_version',
  'code',
  'outcome',
  'approval',
  'decided_by',
  'note',
  'conversation_id',
  'causation_id',
  'in_reply_to',
  // v3: `{"field": originalLength, …}` for the strings that were capped; encoded only when set.
  'truncated',
  // Nodes: the node that wrote the record and the node at the other end of a cross-node
  // message; encoded only on such records (with `truncated` as null before them when unset),
  // so every other row keeps its encoding and its hash.
  'node',
  'peer_node',
  // Fleet trust: on a receipt, the sending node's proof (JSON: node, key, signature and what
  // it covers) as verified against the roster; on any cross-node row of an insecure fleet,
  // "unverified". Encoded only when set (with nulls before it), like the node columns.
  'peer_proof',
  // Durable approvals: on a `pending` attempt whose held copy the file keeps, what a restored
  // hold acts on besides the row's other columns (JSON: trust, expiresAt, priority, depth,
  // deadline), so the chain vouches for it. Encoded only when set (with nulls before it).
  'hold',
] as const;

/** Index of each column in a stored record line (the JSON array of {@link ROW_COLUMNS}). */
export const COL = Object.fromEntries(ROW_COLUMNS.map((c, i) => [c, i])) as { readonly [K in (typeof ROW_COLUMNS)[number]]: number };

/** The columns the v3 view shows (the node columns came later, without a migration: read them from the record lines). */
const V3_COLUMNS = ROW_COLUMNS.slice(0, 23);

/** The columns every v1/v2 row had: the hash of an old row is over exactly these. */
const V2_COLUMNS = ROW_COLUMNS.slice(0, 22);

const SCHEMA_V1 = `
CREATE TABLE audit_meta (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE audit (
  seq             INTEGER PRIMARY KEY,
  kind            TEXT NOT NULL CONSTRAINT kind_valid CHECK (kind = 'attempt' OR kind = 'outcome' OR kind = 'approval'),
  ts              INTEGER NOT NULL,
  message_id      TEXT NOT NULL,
  recipient       TEXT NOT NULL,
  sender          TEXT,
  type            TEXT CONSTRAINT type_valid CHECK (type = 'ask' OR type = 'delegate' OR type = 'reply' OR type = 'notify'),
  intent          TEXT,
  payload_hash    TEXT,
  payload_bytes   INTEGER,
  decision        TEXT CONSTRAINT decision_valid CHECK (decision = 'allowed' OR decision = 'denied' OR decision = 'pending'),
  reason          TEXT,
  rule            TEXT,
  policy_version  INTEGER,
  code            TEXT,
  outcome         TEXT CONSTRAINT outcome_valid CHECK (outcome = 'delivered' OR outcome = 'replied' OR outcome = 'failed' OR outcome = 'expired' OR outcome = 'cancelled' OR outcome = 'late-reply'),
  approval        TEXT CONSTRAINT approval_valid CHECK (approval = 'approved' OR approval = 'rejected' OR approval = 'expired' OR approval = 'cancelled'),
  decided_by      TEXT,
  note            TEXT,
  conversation_id TEXT,
  causation_id    TEXT,
  in_reply_to     TEXT,
  hash            TEXT NOT NULL,
  CONSTRAINT attempt_fields_present CHECK (kind <> 'attempt' OR (sender IS NOT NULL AND type IS NOT NULL AND intent IS NOT NULL
    AND payload_hash IS NOT NULL AND payload_bytes IS NOT NULL AND decision IS NOT NULL
    AND policy_version IS NOT NULL AND conversation_id IS NOT NULL)),
  CONSTRAINT outcome_present CHECK (kind <> 'outcome' OR outcome IS NOT NULL),
  CONSTRAINT approval_fields_present CHECK (kind <> 'approval' OR (approval IS NOT NULL AND policy_version IS NOT NULL))
);

-- (CHECKs use OR chains, not IN lists: a constant IN list builds an ephemeral table on every
-- statement run, a cost paid per inserted row.)

-- Attempts by sender / by recipient: the two halves of the agentId query (a UNION of two
-- index-ordered scans). The rowid (seq) is the implicit last key, so each is already in
-- insertion order.
CREATE INDEX audit_attempt_sender ON audit (sender) WHERE kind = 'attempt';
CREATE INDEX audit_attempt_recipient ON audit (recipient) WHERE kind = 'attempt';
-- The conversationId filter (a conversation is a handful of rows among millions).
CREATE INDEX audit_attempt_conversation ON audit (conversation_id) WHERE kind = 'attempt';
-- Outcome and approval rows of one message and recipient, folded into its entry.
CREATE INDEX audit_followup ON audit (message_id, recipient) WHERE kind <> 'attempt';
`;

/**
 * Schema v3: records are stored per batch. `audit_batch` holds one row per group of
 * consecutive records: their canonical encodings as one JSON array with a record per line,
 * the hash before the first, and the 32-byte hashes of every record. `audit_slice` says which
 * batches hold records of an agent, `audit_conversation` which hold records of a
 * conversation (follow-ups without a conversation are found by `audit_message`). The view
 * `audit_records` shows one row per record with the v2 column names.
 */
const SCHEMA_V3 = `
CREATE TABLE audit_batch (
  first_seq INTEGER PRIMARY KEY,
  count     INTEGER NOT NULL,
  prev_hash TEXT NOT NULL,
  hashes    BLOB NOT NULL,
  records   TEXT NOT NULL
);
CREATE TABLE audit_slice (agent TEXT NOT NULL, first_seq INTEGER NOT NULL, PRIMARY KEY (agent, first_seq)) WITHOUT ROWID;
CREATE TABLE audit_conversation (conversation_id TEXT NOT NULL, first_seq INTEGER NOT NULL, PRIMARY KEY (conversation_id, first_seq)) WITHOUT ROWID;
CREATE TABLE audit_message (message_id TEXT NOT NULL, first_seq INTEGER NOT NULL, PRIMARY KEY (message_id, first_seq)) WITHOUT ROWID;
CREATE VIEW audit_records AS SELECT
${V3_COLUMNS.map((c, i) => `  json_extract(r.value, '$[${i}]') AS ${c}`).join(',\n')},
  lower(hex(substr(b.hashes, r.key * 32 + 1, 32))) AS hash
FROM audit_batch b, json_each(b.records) r;
`;

/**
 * Durable approvals: a held message's envelope and payload, written in the transaction of its
 * `pending` attempt row (whose seq is `seq`) and deleted in the transaction of its decision
 * row; and a reply kept for `result()` (written with the reply row, deleted once read or when
 * retention drops that row). Neither table is part of the hash chain: a held copy is checked
 * against its chained attempt row (ids, parties, payload hash) before it is restored, and
 * only its payload is used (the rest comes from that row's `hold` column).
 */
const SCHEMA_HOLDS = `
CREATE TABLE approval_hold (
  seq          INTEGER PRIMARY KEY,
  message_id   TEXT NOT NULL,
  recipient    TEXT NOT NULL,
  requested_at INTEGER NOT NULL,
  expires_at   INTEGER NOT NULL,
  rule         TEXT,
  trust        REAL NOT NULL,
  approved     INTEGER NOT NULL DEFAULT 0,
  envelope     TEXT NOT NULL,
  payload      TEXT NOT NULL,
  UNIQUE (message_id, recipient)
);
CREATE TABLE kept_reply (
  message_id TEXT PRIMARY KEY,
  seq        INTEGER NOT NULL,
  reply      TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX kept_reply_seq ON kept_reply (seq);
`;

/**
 * Schema v6: a peer node's signed digest is a record of its own kind (`digest`, see
 * `DigestRecord`), naming no agent and no conversation. `audit_digest` says which batches hold
 * digest records signed by each node, so `switchboard verify --roster` reads them without
 * scanning every batch. Batch storage has no CHECK on `kind` (the v1 table that had one is gone
 * since v3): the record kinds are checked where records are encoded (records.ts), and a
 * reader older than v6, which does not know the kind, refuses the file by its version.
 */
const SCHEMA_DIGESTS = `
CREATE TABLE audit_digest (node TEXT NOT NULL, first_seq INTEGER NOT NULL, PRIMARY KEY (node, first_seq)) WITHOUT ROWID;
`;

/** Records per stored batch row: bounds what a query reads to find a handful of records. */
export const BATCH_RECORDS = 256;

/** Moves v2 rows into batches, unchanged: each record's line is its v2 encoding, so every hash still matches. */
function migrateV2Rows(db: Database.Database): void {
  const hasV2 = db.prepare("SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'audit'").get() !== undefined;
  if (!hasV2) return;
  // A follow-up's conversation comes from its attempt (the index is derived, not hashed);
  // this index makes that lookup a seek (it goes with the v2 table at the end).
  db.exec("CREATE INDEX audit_v3_attempt_message ON audit (message_id) WHERE kind = 'attempt'");
  // Read in pages (better-sqlite3 cannot write while a statement iterates), constant memory.
  const page = db
    .prepare(
      `SELECT ${V2_COLUMNS.map((c) => `x.${c}`).join(', ')}, x.hash,
        coalesce(x.conversation_id, (SELECT a.conversation_id FROM audit a WHERE a.message_id = x.message_id AND a.kind = 'attempt' ORDER BY a.seq LIMIT 1))
       FROM audit x WHERE x.seq > ? ORDER BY x.seq LIMIT 4096`,
    )
    .raw();
  function* rowsOf(): Generator<unknown[]> {
    let after = -Infinity;
    for (;;) {
      const rows = page.all(after) as unknown[][];
      if (rows.length === 0) return;
      after = (rows[rows.length - 1] as unknown[])[0] as number;
      yield* rows;
    }
  }
  const rows = rowsOf();
  const insertBatch = db.prepare('INSERT INTO audit_batch (first_seq, count, prev_hash, hashes, records) VALUES (?, ?, ?, ?, ?)');
  const insertSlice = db.prepare('INSERT OR IGNORE INTO audit_slice (agent, first_seq) VALUES (?, ?)');
  const insertConv = db.prepare('INSERT OR IGNORE INTO audit_conversation (conversation_id, first_seq) VALUES (?, ?)');
  let lines: string[] = [];
  let hashes: Buffer[] = [];
  let first = 0;
  let prev = '0'.repeat(64);
  let batchPrev = prev;
  const agents = new Set<string>();
  const conversations = new Set<string>();
  const flush = () => {
    if (lines.length === 0) return;
    insertBatch.run(first, lines.length, batchPrev, Buffer.concat(hashes), `[\n${lines.join(',\n')}\n]`);
    for (const a of agents) insertSlice.run(a, first);
    for (const c of conversations) insertConv.run(c, first);
    lines = [];
    hashes = [];
    agents.clear();
    conversations.clear();
    batchPrev = prev;
  };
  let expected = 0;
  for (const row of rows) {
    const conversation = row.pop() as string | null;
    const hash = row.pop() as string;
    const seq = row[0] as number;
    // A gap in the v2 seqs is kept as a batch boundary, so verify still reports it.
    if (lines.length >= BATCH_RECORDS || (lines.length > 0 && seq !== expected)) flush();
    if (lines.length === 0) {
      first = seq;
      batchPrev = prev;
    }
    expected = seq + 1;
    lines.push(JSON.stringify(row));
    hashes.push(/^[0-9a-f]{64}$/.test(hash) ? Buffer.from(hash, 'hex') : Buffer.alloc(32));
    if (typeof row[4] === 'string') agents.add(row[4]);
    if (typeof row[5] === 'string') agents.add(row[5]);
    if (conversation !== null) conversations.add(conversation);
    prev = hash;
  }
  flush();
  db.exec('DROP TABLE audit');
}

/** One step of the schema. `up` runs inside the migration transaction. */
export interface Migration {
  /** The `user_version` after this step. */
  readonly version: number;
  readonly description: string;
  readonly up: (db: Database.Database) => void;
}

/** Every schema step, in order; `MIGRATIONS[i].version === i + 1`. */
export const MIGRATIONS: readonly Migration[] = [
  { version: 1, description: 'audit rows, chain metadata and query indexes', up: (db) => db.exec(SCHEMA_V1) },
  {
    version: 2,
    description: 'index the replies that answered a message (a reply row records its outcome "replied")',
    up: (db) =>
      db.exec(`CREATE INDEX audit_reply ON audit (in_reply_to, sender) WHERE kind = 'attempt' AND type = 'reply' AND decision = 'allowed';`),
  },
  {
    version: 3,
    description: 'records stored per batch, with agent, conversation and message indexes and the audit_records view; v2 rows moved unchanged',
    up: (db) => {
      db.exec(SCHEMA_V3);
      migrateV2Rows(db);
    },
  },
  {
    version: 4,
    description: 'every record without a conversation indexed by its message id (v2 follow-ups were indexed under their attempt\'s conversation), so verify can check each lookup table against the records',
    up: (db) =>
      db.exec(
        `INSERT OR IGNORE INTO audit_message (message_id, first_seq) SELECT r.value ->> ${COL.message_id}, b.first_seq FROM audit_batch b, json_each(b.records) r WHERE (r.value ->> ${COL.conversation_id}) IS NULL`,
      ),
  },
  {
    version: 5,
    description: 'held messages (envelope and payload) beside their pending rows, and replies kept for result()',
    up: (db) => db.exec(SCHEMA_HOLDS),
  },
  {
    version: 6,
    description: "a peer node's signed digest as a record kind of its own, its batches indexed by signing node",
    // Nothing to index: a v5 writer refuses a record kind it does not know, so no v5 file holds a digest record.
    up: (db) => db.exec(SCHEMA_DIGESTS),
  },
];

/** The schema version this code writes and reads. */
export const SCHEMA_VERSION = MIGRATIONS.length;

/** The current `user_version` of a database. */
export function userVersion(db: Database.Database): number {
  return db.pragma('user_version', { simple: true }) as number;
}

/** True when the database holds no schema objects at all (a new, empty file). */
export function isBlank(db: Database.Database): boolean {
  return db.prepare("SELECT count(*) FROM sqlite_schema WHERE name NOT LIKE 'sqlite_%'").pluck().get() === 0;
}

/**
 * Brings the schema to {@link SCHEMA_VERSION}. Must be called inside a write transaction
 * (the caller holds `BEGIN IMMEDIATE`), so concurrent openers migrate once.
 *
 * @throws BusError `AUDIT_UNAVAILABLE` naming both versions when the database is newer than
 *   this code, or when a version-0 database already holds tables that are not ours.
 */
export function migrate(db: Database.Database, path: string): void {
  const from = userVersion(db);
  if (from > SCHEMA_VERSION) throw newerError(path, from);
  if (from === SCHEMA_VERSION) return;
  if (from === 0 && !isBlank(db)) {
    throw new BusError('AUDIT_UNAVAILABLE', `${path} is not an agent-switchboard audit log (user_version 0, but it already holds tables)`);
  }
  for (const m of MIGRATIONS) if (m.version > from) m.up(db);
  db.pragma(`user_version = ${SCHEMA_VERSION}`);
}

/** The error for a database written by a newer version of the library. */
export function newerError(path: string, found: number): BusError {
  return new BusError(
    'AUDIT_UNAVAILABLE',
    `audit database ${path} has schema version ${found}, newer than this code supports (${SCHEMA_VERSION}); upgrade agent-switchboard to open it`,
  );
}
