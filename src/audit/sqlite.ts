import type Database from 'better-sqlite3';
import { z } from 'zod';
import { BusError } from '../errors.js';
import { MESSAGE_TYPES } from '../envelope.js';
import { createDigest, encodeRow, GENESIS, keyCheck, type ChainAlgorithm, type Digest } from './hash-chain.js';
import { loadSqlite } from './native.js';
import { isBlank, migrate, newerError, ROW_COLUMNS, SCHEMA_VERSION, userVersion } from './migrations.js';
import type {
  ApprovalDecision,
  AuditDecision,
  AuditLog,
  AuditOutcome,
  AuditRecord,
  MessageLogEntry,
  MessageLogQuery,
  VerifyResult,
} from './types.js';
import type { ErrorCode } from '../errors.js';
import type { MessageType } from '../envelope.js';

/** Options of {@link SqliteAuditLog}. A misspelled key is an `INVALID_ARGUMENT` error. */
export interface SqliteAuditLogOptions {
  /**
   * `':memory:'` or a file path. A file is opened in WAL mode and created when missing
   * (unless `readonly`).
   * @default ':memory:'
   */
  path?: string;
  /**
   * `'normal'` (`synchronous = NORMAL`): in WAL mode a commit survives a crash of the
   * process; a power loss or OS crash may lose the last transactions, never corrupt the file.
   * `'full'` (`synchronous = FULL`): a commit also survives a power loss, at the cost of an
   * fsync per commit.
   * @default 'normal'
   */
  durability?: 'normal' | 'full';
  /**
   * Key for an HMAC-SHA-256 chain, so that someone who can write the file but does not
   * hold the key cannot forge, edit or re-hash rows unnoticed. A log is keyed or not from
   * its creation; opening it with the wrong key, with a key when it is unkeyed, or (to
   * write) without its key is refused.
   */
  key?: string | Uint8Array;
  /**
   * How long a write waits for a lock held by another connection before failing closed
   * with `AUDIT_UNAVAILABLE`. Kept short: better-sqlite3 waits synchronously, so this blocks
   * the event loop.
   * @default 50
   */
  busyTimeoutMs?: number;
  /**
   * Open an existing file without ever writing to it (for tools such as the CLI). The
   * file must exist and have the current schema (no migration is run); `append` throws, and
   * a keyed log can be queried without its key (but `verify` needs it).
   * @default false
   */
  readonly?: boolean;
}

/** The last row of the chain. Keep it somewhere else to detect a truncated tail later. */
export interface ChainHead {
  seq: number;
  hash: string;
}

/** {@link VerifyResult} with a human-readable reason when the chain is broken. */
export interface SqliteVerifyResult extends VerifyResult {
  /** What is wrong with row `firstBad`. */
  reason?: string;
}

const optionsSchema = z.strictObject({
  path: z.string().min(1).optional(),
  durability: z.enum(['normal', 'full']).optional(),
  key: z.union([z.string().min(1), z.instanceof(Uint8Array).refine((k) => k.length > 0, 'expected a non-empty key')]).optional(),
  busyTimeoutMs: z.number().int().min(0).max(60_000).optional(),
  readonly: z.boolean().optional(),
});

const filterSchema = z.strictObject({
  agentId: z.string().min(1).optional(),
  limit: z.number().int().optional(),
  before: z.number().optional(),
  since: z.number().optional(),
  type: z.enum(MESSAGE_TYPES as [MessageType, ...MessageType[]]).optional(),
  decision: z.enum(['allowed', 'denied', 'pending']).optional(),
  conversationId: z.string().min(1).optional(),
});

/** Default and maximum of {@link MessageLogQuery.limit}. */
export const DEFAULT_QUERY_LIMIT = 50;
export const MAX_QUERY_LIMIT = 10_000;

const META_CHAIN = 'chain';
const META_KEY_CHECK = 'key_check';

const INSERT_SQL = `INSERT INTO audit (${ROW_COLUMNS.join(', ')}, hash) VALUES (${ROW_COLUMNS.map(() => '?').join(', ')}, ?)`;
const VERIFY_SQL = `SELECT ${ROW_COLUMNS.join(', ')}, hash FROM audit ORDER BY seq`;
/**
 * An entry: the attempt row `a`, joined with its latest outcome row `o`, its latest
 * approval row `p` (the follow-up index finds both) and the reply that answered it, `r`:
 * an allowed reply row from the recipient is the record of the outcome 'replied' (the bus
 * writes no separate outcome row for it). The caller appends the page condition.
 */
const ENTRY_SELECT = `SELECT a.seq, a.ts, a.message_id, a.sender, a.recipient, a.type, a.intent, a.payload_hash,
  a.payload_bytes, a.decision, a.reason, a.rule, a.policy_version, a.code, a.outcome, a.conversation_id,
  a.in_reply_to, o.outcome, o.code, p.approval, p.decided_by, a.causation_id, o.seq, r.seq
FROM audit a
LEFT JOIN audit o ON o.seq = (SELECT max(x.seq) FROM audit x WHERE x.message_id = a.message_id
  AND x.recipient = a.recipient AND x.kind <> 'attempt' AND x.kind = 'outcome')
LEFT JOIN audit p ON p.seq = (SELECT max(x.seq) FROM audit x WHERE x.message_id = a.message_id
  AND x.recipient = a.recipient AND x.kind <> 'attempt' AND x.kind = 'approval')
LEFT JOIN audit r ON r.seq = (SELECT max(x.seq) FROM audit x WHERE x.in_reply_to = a.message_id
  AND x.sender = a.recipient AND x.kind = 'attempt' AND x.type = 'reply' AND x.decision = 'allowed')`;

/** A row of ENTRY_SELECT, as better-sqlite3 returns it in raw mode. */
type EntryRow = [
  seq: number,
  ts: number,
  messageId: string,
  from: string,
  to: string,
  type: MessageType,
  intent: string,
  payloadHash: string,
  payloadBytes: number,
  decision: AuditDecision,
  reason: string | null,
  rule: string | null,
  policyVersion: number,
  code: ErrorCode | null,
  outcome: AuditOutcome | null,
  conversationId: string,
  inReplyTo: string | null,
  lastOutcome: AuditOutcome | null,
  lastOutcomeCode: ErrorCode | null,
  approval: ApprovalDecision | null,
  decidedBy: string | null,
  causationId: string | null,
  lastOutcomeSeq: number | null,
  replySeq: number | null,
];

/**
 * The default {@link AuditLog}: one SQLite table of hash-chained rows, through
 * better-sqlite3 (synchronous). See `docs/audit.md` for the schema and guarantees.
 *
 * @example
 * const log = new SqliteAuditLog({ path: 'audit.db', durability: 'full', key: process.env.AUDIT_KEY })
 * log.append([attempt])            // one transaction, all or nothing
 * log.query({ agentId: 'writer' }) // newest first
 * log.verify()                     // { ok: true, checked: 1 }
 * log.close()
 */
export class SqliteAuditLog implements AuditLog {
  /** The path the log was opened with. */
  readonly path: string;
  /** Which hash chain the log uses. */
  readonly chain: ChainAlgorithm;
  /** True when opened with `readonly: true`. */
  readonly readonly: boolean;
  // Not `#private`: the tests reach the connection to simulate faults.
  private readonly db: Database.Database;
  /** Undefined only for a keyed log opened read-only without its key. */
  private readonly digest: Digest | undefined;
  private readonly headStmt: Database.Statement;
  private readonly insertStmt: Database.Statement;
  private readonly queryStmts = new Map<string, Database.Statement>();
  private readonly appendTx: Database.Transaction<(records: readonly AuditRecord[]) => void>;
  /** Index of the record being written, so a failure can name it. */
  private at = 0;
  private closed = false;

  constructor(options: SqliteAuditLogOptions = {}) {
    const parsed = optionsSchema.safeParse(options);
    if (!parsed.success) throw zodError('audit option', parsed.error);
    const o = parsed.data;
    this.path = o.path ?? ':memory:';
    this.readonly = o.readonly ?? false;
    const key = o.key;

    const Sqlite = loadSqlite();
    let db: Database.Database;
    try {
      db = new Sqlite(this.path, { readonly: this.readonly, fileMustExist: this.readonly, timeout: o.busyTimeoutMs ?? 50 });
    } catch (e) {
      throw unavailable(`cannot open audit database ${this.path}: ${messageOf(e)}`, e);
    }
    try {
      if (this.readonly) {
        checkReadableVersion(db, this.path);
      } else {
        if (!db.memory) db.pragma('journal_mode = WAL');
        db.pragma(`synchronous = ${o.durability === 'full' ? 'FULL' : 'NORMAL'}`);
        // Only a new or old database needs the write lock at open; a current one is just read.
        if (userVersion(db) !== SCHEMA_VERSION || !hasChainMeta(db)) {
          db.transaction(() => {
            migrate(db, this.path);
            const insertMeta = db.prepare('INSERT OR IGNORE INTO audit_meta (key, value) VALUES (?, ?)');
            insertMeta.run(META_CHAIN, key === undefined ? 'sha256' : 'hmac-sha256');
            if (key !== undefined) insertMeta.run(META_KEY_CHECK, keyCheck(key));
          }).immediate();
        }
      }
      this.chain = checkKey(db, this.path, key, this.readonly);
    } catch (e) {
      db.close();
      if (e instanceof BusError) throw e;
      throw unavailable(`cannot open audit database ${this.path}: ${messageOf(e)}`, e);
    }
    this.db = db;
    this.digest = this.chain === 'sha256' ? createDigest() : key === undefined ? undefined : createDigest(key);
    this.headStmt = db.prepare('SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1').raw();
    this.insertStmt = db.prepare(INSERT_SQL);
    this.appendTx = db.transaction((records: readonly AuditRecord[]) => this.writeBatch(records));
  }

  /**
   * Writes the records in one transaction, chained after the last row on disk.
   *
   * @throws BusError `AUDIT_UNAVAILABLE` when they cannot all be written (a lock held too
   *   long, a full disk, a read-only file, an I/O error, or an invalid record); nothing of
   *   the batch is then written, and the next append works once the fault clears.
   */
  append(records: readonly AuditRecord[]): void {
    this.assertOpen();
    if (this.readonly) throw new BusError('AUDIT_UNAVAILABLE', `audit log ${this.path} was opened read-only`);
    if (records.length === 0) return;
    try {
      // IMMEDIATE: take the write lock first, so the head we read cannot go stale.
      this.appendTx.immediate(records);
    } catch (e) {
      throw this.appendError(e, records.length);
    }
  }

  /** Entries newest first (by insertion order), one per message and recipient. */
  query(filter: MessageLogQuery = {}): MessageLogEntry[] {
    this.assertOpen();
    const parsed = filterSchema.safeParse(filter);
    if (!parsed.success) throw zodError('query filter', parsed.error);
    const f = parsed.data;
    const limit = Math.min(MAX_QUERY_LIMIT, Math.max(1, f.limit ?? DEFAULT_QUERY_LIMIT));

    // Filters other than agentId and conversationId are checked row by row during the
    // index-ordered scan (no index of their own), which stops at `limit` matches.
    let cond = '';
    const params: (string | number)[] = [];
    const where = (sql: string, value: string | number | undefined) => {
      if (value === undefined) return;
      cond += ` AND ${sql}`;
      params.push(value);
    };
    where('ts < ?', f.before);
    where('ts >= ?', f.since);
    where('type = ?', f.type);
    where('decision = ?', f.decision);
    where('conversation_id = ?', f.conversationId);

    // The limit is inlined (a validated integer): SQLite re-prepares a statement on every
    // run when LIMIT is a bound parameter (~6–90 µs here), since the planner uses its value.
    let page: string;
    let args: (string | number)[];
    if (f.agentId === undefined) {
      page = `SELECT seq FROM audit WHERE kind = 'attempt'${cond} ORDER BY seq DESC LIMIT ${limit}`;
      args = params;
    } else {
      // Two index-ordered scans, each limited, merged: far cheaper than `sender = ? OR recipient = ?`.
      page =
        `SELECT seq FROM (SELECT seq FROM audit WHERE sender = ? AND kind = 'attempt'${cond} ORDER BY seq DESC LIMIT ${limit}) ` +
        `UNION ALL ` +
        `SELECT seq FROM (SELECT seq FROM audit WHERE recipient = ? AND kind = 'attempt'${cond} ORDER BY seq DESC LIMIT ${limit})`;
      args = [f.agentId, ...params, f.agentId, ...params];
    }
    const sql = `${ENTRY_SELECT} WHERE a.seq IN (${page}) ORDER BY a.seq DESC LIMIT ${limit}`;

    try {
      const rows = this.statement(sql).all(args) as EntryRow[];
      return rows.map(toEntry);
    } catch (e) {
      throw unavailable(`cannot read audit database ${this.path}: ${messageOf(e)}`, e);
    }
  }

  /**
   * Recomputes the hash chain from the first row to the last. Catches an edited, deleted
   * or inserted row (naming the first bad seq), not a truncated tail: compare {@link head}
   * with a copy kept elsewhere for that. `checked` counts the rows that matched (before
   * the first bad one). Synchronous, and it blocks: roughly 5–15 µs per row.
   *
   * @throws BusError `AUDIT_UNAVAILABLE` for a keyed log opened without its key.
   */
  verify(): SqliteVerifyResult {
    this.assertOpen();
    const digest = this.digest;
    if (digest === undefined) {
      throw new BusError('AUDIT_UNAVAILABLE', `audit log ${this.path} is keyed (HMAC-SHA-256): its key is needed to verify it`);
    }
    let expected = 1;
    let prev = GENESIS;
    let checked = 0;
    const rows = this.statement(VERIFY_SQL).iterate() as IterableIterator<unknown[]>;
    for (const row of rows) {
      const stored = row.pop();
      const seq = row[0] as number;
      if (seq !== expected) {
        const firstBad = Math.min(seq, expected);
        const reason =
          seq > expected
            ? `row ${expected} is missing (the next row is ${seq})`
            : `row ${seq} is out of sequence (expected row ${expected})`;
        return { ok: false, checked, firstBad, reason };
      }
      if (digest(prev, encodeRow(row)) !== stored) {
        return {
          ok: false,
          checked,
          firstBad: seq,
          reason: `row ${seq} does not match its hash: it was changed, or a row was inserted before it`,
        };
      }
      prev = stored as string;
      expected++;
      checked++;
    }
    return { ok: true, checked };
  }

  /** The last row's seq and hash, or undefined for an empty log. */
  head(): ChainHead | undefined {
    this.assertOpen();
    const row = this.headStmt.get() as [number, string] | undefined;
    return row === undefined ? undefined : { seq: row[0], hash: row[1] };
  }

  /** Closes the database (checkpointing the WAL). Idempotent; later calls to anything else throw. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.db.close();
  }

  private writeBatch(records: readonly AuditRecord[]): void {
    const head = this.headStmt.get() as [number, string] | undefined;
    let seq = head === undefined ? 0 : head[0];
    let prev = head === undefined ? GENESIS : head[1];
    const digest = this.digest as Digest; // a writer always has one (checked at open)
    const insert = this.insertStmt;
    for (let i = 0; i < records.length; i++) {
      this.at = i;
      const row = toRow(records[i] as AuditRecord, ++seq);
      prev = digest(prev, encodeRow(row));
      row.push(prev);
      insert.run(row);
    }
  }

  private statement(sql: string): Database.Statement {
    let stmt = this.queryStmts.get(sql);
    if (stmt === undefined) {
      if (this.queryStmts.size >= 64) this.queryStmts.clear(); // filter shapes × limits: keep it bounded
      stmt = this.db.prepare(sql).raw();
      this.queryStmts.set(sql, stmt);
    }
    return stmt;
  }

  private assertOpen(): void {
    if (this.closed) throw new BusError('AUDIT_UNAVAILABLE', `audit log ${this.path} is closed`);
  }

  private appendError(e: unknown, count: number): BusError {
    const code = (e as { code?: unknown } | null)?.code;
    const invalid = e instanceof TypeError || e instanceof RangeError || (typeof code === 'string' && code.startsWith('SQLITE_CONSTRAINT'));
    const what = invalid
      ? `audit record ${this.at} of the batch is invalid (${messageOf(e)})`
      : `cannot write to audit database ${this.path} (${typeof code === 'string' ? `${code}: ` : ''}${messageOf(e)})`;
    return unavailable(`${what}; none of the ${count} records were written`, e);
  }
}

/** An entry from its joined row, with the interface's optional keys only when set. */
function toEntry(r: EntryRow): MessageLogEntry {
  // The latest of: the reply that answered it, its latest outcome row, its initial outcome.
  const replied = r[23] !== null && (r[22] === null || r[23] > r[22]);
  const outcome = replied ? 'replied' : (r[17] ?? r[14]);
  const code = replied ? r[13] : (r[18] ?? r[13]);
  const approval = r[19];
  const decidedBy = r[20];
  // Built in the interface's key order, so JSON output reads the same way.
  const e = { messageId: r[2], ts: r[1], from: r[3], to: r[4], type: r[5], intent: r[6], payloadHash: r[7], payloadBytes: r[8], decision: r[9] } as MessageLogEntry;
  if (r[10] !== null) e.reason = r[10];
  if (r[11] !== null) e.rule = r[11];
  e.policyVersion = r[12];
  if (code !== null) e.code = code;
  if (approval !== null) e.approval = approval;
  if (decidedBy !== null) e.decidedBy = decidedBy;
  if (outcome !== null) e.outcome = outcome;
  e.conversationId = r[15];
  if (r[16] !== null) e.inReplyTo = r[16];
  if (r[21] !== null) e.causationId = r[21];
  return e;
}

/** A record as a row array in {@link ROW_COLUMNS} order (absent fields stay undefined, i.e. NULL). */
function toRow(r: AuditRecord, seq: number): unknown[] {
  switch (r.kind) {
    case 'attempt':
      return [seq, 'attempt', r.ts, r.messageId, r.to, r.from, r.type, r.intent, r.payloadHash, r.payloadBytes, r.decision, r.reason, r.rule, r.policyVersion, r.code, r.outcome, null, null, null, r.conversationId, r.causationId, r.inReplyTo];
    case 'outcome':
      return [seq, 'outcome', r.ts, r.messageId, r.to, null, null, null, null, null, null, r.reason, null, null, r.code, r.outcome, null, null, null, null, null, null];
    case 'approval':
      return [seq, 'approval', r.ts, r.messageId, r.to, null, null, null, null, null, null, null, null, r.policyVersion, null, null, r.approval, r.decidedBy, r.note, null, null, null];
    default:
      throw new TypeError(`unknown audit record kind ${JSON.stringify((r as { kind?: unknown } | null)?.kind)}`);
  }
}

/** A read-only opener never migrates: it only accepts the current schema. */
function checkReadableVersion(db: Database.Database, path: string): void {
  const version = userVersion(db);
  if (version > SCHEMA_VERSION) throw newerError(path, version);
  if (version === SCHEMA_VERSION) return;
  if (version === 0) {
    throw new BusError('AUDIT_UNAVAILABLE', `${path} is not an agent-switchboard audit log (${isBlank(db) ? 'it is empty' : 'user_version 0'})`);
  }
  throw new BusError(
    'AUDIT_UNAVAILABLE',
    `audit database ${path} has schema version ${version} and needs migrating to ${SCHEMA_VERSION}; open it once read-write with agent-switchboard (it is never migrated read-only)`,
  );
}

function hasChainMeta(db: Database.Database): boolean {
  return db.prepare('SELECT 1 FROM audit_meta WHERE key = ?').pluck().get(META_CHAIN) !== undefined;
}

/** Checks the key given against the chain recorded at creation; returns that chain. */
function checkKey(db: Database.Database, path: string, key: string | Uint8Array | undefined, readonly: boolean): ChainAlgorithm {
  const meta = new Map(db.prepare('SELECT key, value FROM audit_meta').raw().all() as [string, string][]);
  const chain = meta.get(META_CHAIN);
  if (chain === 'sha256') {
    if (key !== undefined) {
      throw new BusError(
        'AUDIT_UNAVAILABLE',
        `audit log ${path} is not keyed (plain SHA-256 chain) but a key was given; a keyed log needs a new file (if this log was created keyed, its metadata was changed)`,
      );
    }
    return chain;
  }
  if (chain === 'hmac-sha256') {
    if (key === undefined) {
      if (readonly) return chain;
      throw new BusError('AUDIT_UNAVAILABLE', `audit log ${path} is keyed (HMAC-SHA-256): pass its key to write to it`);
    }
    if (meta.get(META_KEY_CHECK) !== keyCheck(key)) {
      throw new BusError('AUDIT_UNAVAILABLE', `the key given does not match the key audit log ${path} was created with`);
    }
    return chain;
  }
  throw new BusError('AUDIT_UNAVAILABLE', `audit log ${path} has unknown chain metadata ${JSON.stringify(chain ?? null)}`);
}

function unavailable(message: string, cause: unknown): BusError {
  return new BusError('AUDIT_UNAVAILABLE', message, { cause });
}

function zodError(what: string, error: z.ZodError): BusError {
  const issue = error.issues[0];
  if (issue === undefined) return new BusError('INVALID_ARGUMENT', `invalid ${what}`);
  if (issue.code === 'unrecognized_keys') {
    return new BusError('INVALID_ARGUMENT', `unknown ${what} ${issue.keys.map((k) => `"${k}"`).join(', ')}`);
  }
  return new BusError('INVALID_ARGUMENT', `invalid ${what} "${issue.path.join('.')}": ${issue.message}`);
}

function messageOf(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).replace(/\s+/g, ' ');
}
