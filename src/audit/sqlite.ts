import type Database from 'better-sqlite3';
import { z } from 'zod';
import { BusError } from '../errors.js';
import { parseOptions, safeParseInput } from '../options-schema.js';
import { MESSAGE_TYPES } from '../envelope.js';
import { statSync } from 'node:fs';
import { BatchCache, runQuery } from './batch-query.js';
import { Checkpointer } from './checkpointer.js';
import { createByteDigest, createDigest, GENESIS, keyCheck, type ByteDigest, type ChainAlgorithm, type Digest } from './hash-chain.js';
import { loadSqlite } from './native.js';
import { verifyRows, type VerifyRow } from './verify-batches.js';
import { checkIndexes, checkSchema } from './verify-indexes.js';
import { interruptedSince, mayBeAlive, META_RUNS, newRun, parseRuns, type Run } from './runs.js';
import { encodeBatches, InvalidRecordError, type EncodedBatch } from './encode.js';
import { COL, isBlank, migrate, newerError, SCHEMA_VERSION, userVersion } from './migrations.js';
import type { AuditLog, AuditRecord, ChainHead, DigestRecord, HoldDecision, HoldStore, MessageLogEntry, MessageLogQuery, PeerDigestEntry, PeerDigestQuery, StoredHold, VerifyOptions, VerifyResult } from './types.js';
import { escapeText } from '../escape-text.js';

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
  /**
   * Keep at most this many records: the oldest batches go first, and verification starts at
   * the oldest kept record, whose predecessor's hash is kept as the anchor.
   * @default 1_000_000 for ':memory:', unbounded for a file
   */
  maxRows?: number;
  /**
   * Where a file log's WAL checkpoints run: `'thread'` on a thread of their own with their
   * own connection (the worker log uses this), `'inline'` on this connection after the
   * commit's turn of the event loop. Never inside a commit (`wal_autocheckpoint = 0`).
   * @default 'inline'
   */
  checkpoints?: 'inline' | 'thread';
  /**
   * The most a file log's `-wal` file may hold, in bytes. Past a quarter of it, the writer
   * checkpoints and truncates the WAL between two commits; past three quarters (checkpoints
   * not keeping up, or a reader holding an old snapshot), commits wait for a checkpoint
   * (backpressure, see `onBackpressure`) instead of growing the WAL, and fail closed with
   * `AUDIT_UNAVAILABLE` if none can be made within {@link MAX_BACKPRESSURE_MS}; later commits
   * of the same episode then fail closed at once unless a checkpoint makes room. One
   * transaction is assumed to fit in the last quarter. At least 1 MiB.
   * @default 67_108_864 (64 MiB)
   */
  maxWalBytes?: number;
  /** Called (on the writing thread) after every commit with the new head; an exception is reported as a warning. */
  onCommit?: (head: ChainHead) => void;
  /**
   * Called (on the writing thread) when a commit starts to wait for a checkpoint because the
   * WAL holds `walBytes` bytes, past three quarters of `maxWalBytes`; once per episode of
   * waiting. An exception is reported as a warning.
   */
  onBackpressure?: (walBytes: number) => void;
}

export type { ChainHead } from './types.js';

/** {@link VerifyResult} with a human-readable reason when the chain is broken. */
export interface SqliteVerifyResult extends VerifyResult {
  /** What is wrong with row `firstBad`. */
  reason?: string;
}

/** Default {@link SqliteAuditLogOptions.maxWalBytes}: 64 MiB. */
export const DEFAULT_MAX_WAL_BYTES = 64 * 1024 * 1024;
/** The smallest {@link SqliteAuditLogOptions.maxWalBytes}: 1 MiB (a quarter of it must hold one transaction). */
export const MIN_WAL_BYTES = 1024 * 1024;
/** Default {@link SqliteAuditLogOptions.busyTimeoutMs}. */
const DEFAULT_BUSY_TIMEOUT_MS = 50;
/** How long a commit waits for a checkpoint under backpressure before failing closed. */
export const MAX_BACKPRESSURE_MS = 5000;

/** The wait actually used: {@link MAX_BACKPRESSURE_MS} outside tests. Not exported from the package. */
let backpressureWaitMs = MAX_BACKPRESSURE_MS;

/**
 * Internal, for tests: how long logs opened from now on wait under backpressure (the worker
 * log hands the figure to its thread), so the fail-closed path runs without 5 s of wall time.
 * `undefined` restores {@link MAX_BACKPRESSURE_MS}.
 */
export function setBackpressureWait(ms: number | undefined): void {
  backpressureWaitMs = ms ?? MAX_BACKPRESSURE_MS;
}

/** Internal: the wait {@link setBackpressureWait} set (what a new log will use). */
export function backpressureWait(): number {
  return backpressureWaitMs;
}

const optionsSchema = z.strictObject({
  path: z.string().min(1).optional(),
  durability: z.enum(['normal', 'full']).optional(),
  key: z.union([z.string().min(1), z.instanceof(Uint8Array).refine((k) => k.length > 0, 'expected a non-empty key')]).optional(),
  busyTimeoutMs: z.number().int().min(0).max(60_000).optional(),
  readonly: z.boolean().optional(),
  maxRows: z.number().int().positive().optional(),
  checkpoints: z.enum(['inline', 'thread']).optional(),
  maxWalBytes: z.number().int().min(MIN_WAL_BYTES).max(Number.MAX_SAFE_INTEGER).optional(),
  onCommit: z.custom<(head: ChainHead) => void>((v) => typeof v === 'function', 'onCommit must be a function').optional(),
  onBackpressure: z.custom<(walBytes: number) => void>((v) => typeof v === 'function', 'onBackpressure must be a function').optional(),
});

const digestFilterSchema = z.strictObject({
  afterSeq: z.number().int().optional(),
  beforeSeq: z.number().int().optional(),
  since: z.number().optional(),
  peerNode: z.string().min(1).optional(),
  limit: z.number().int().optional(),
});

const filterSchema = z.strictObject({
  agentId: z.string().min(1).optional(),
  limit: z.number().int().optional(),
  before: z.number().optional(),
  since: z.number().optional(),
  type: z.enum(MESSAGE_TYPES).optional(),
  decision: z.enum(['allowed', 'denied', 'pending']).optional(),
  conversationId: z.string().min(1).optional(),
  beforeSeq: z.number().int().optional(),
  afterSeq: z.number().int().optional(),
});

/** Default and maximum of {@link MessageLogQuery.limit}. */
export const DEFAULT_QUERY_LIMIT = 50;
export const MAX_QUERY_LIMIT = 10_000;

const META_CHAIN = 'chain';
const META_KEY_CHECK = 'key_check';
/** Where the kept chain starts when older records were dropped: `{"seq":N,"hash":"…"}`. */
const META_ANCHOR = 'anchor';
/** Every time the file at the path stopped being the file written (JSON list). */
const META_BREAKS = 'breaks';

/** Records committed to a file log before a checkpoint is scheduled (off the commit path). */
const CHECKPOINT_RECORDS = 4096;

/** Default {@link SqliteAuditLogOptions.maxRows} of a `:memory:` log. */
export const DEFAULT_MEMORY_MAX_ROWS = 1_000_000;

const HEAD_SQL = 'SELECT first_seq + count - 1, lower(hex(substr(hashes, -32))) FROM audit_batch ORDER BY first_seq DESC LIMIT 1';

interface Identity {
  dev: number;
  ino: number;
}

/**
 * The default {@link AuditLog}: hash-chained records stored per batch in SQLite, through
 * better-sqlite3 (synchronous). See `docs/audit.md` for the schema and guarantees.
 *
 * @example
 * const log = new SqliteAuditLog({ path: 'audit.db', durability: 'full', key: process.env.AUDIT_KEY })
 * log.append([attempt])            // one transaction, all or nothing
 * log.query({ agentId: 'writer' }) // newest first
 * log.verify()                     // { ok: true, checked: 1 }
 * log.close()
 */
export class SqliteAuditLog implements AuditLog, HoldStore {
  /** The path the log was opened with. */
  readonly path: string;
  /** A file log keeps held messages (durable approvals); `:memory:` does not. */
  readonly keepsHolds: boolean;
  /** Which hash chain the log uses. */
  readonly chain: ChainAlgorithm;
  /** True when opened with `readonly: true`. */
  readonly readonly: boolean;
  // Not `#private`: the tests reach the connection to simulate faults.
  private db!: Database.Database;
  /** Undefined only for a keyed log opened read-only without its key. */
  private readonly digest: Digest | undefined;
  /** The same chain over bytes, for verify. */
  private readonly byteDigest: ByteDigest | undefined;
  private readonly options: z.infer<typeof optionsSchema>;
  private readonly maxRows: number;
  private readonly onCommit: ((head: ChainHead) => void) | undefined;
  private stmts!: ReturnType<typeof prepare>;
  private readonly queryStmts = new Map<string, Database.Statement>();
  /** Batches recent queries parsed, kept while the database is unchanged (see {@link BatchCache}). */
  private readonly batches = new BatchCache();
  private appendTx!: Database.Transaction<(batches: readonly EncodedBatch[]) => ChainHead>;
  private decideTx!: Database.Transaction<(decisions: readonly HoldDecision[]) => boolean[]>;
  /** The file written, to notice when the path no longer leads to it (file logs only). */
  private identity: Identity | undefined;
  /** Set when the file at the path was lost: the head it had, kept for the next file. */
  private lost: { head: ChainHead; why: string } | undefined;
  private closed = false;
  private uncheckpointed = 0;
  private checkpointScheduled = false;
  private checkpointer: Checkpointer | undefined;
  /** See {@link SqliteAuditLogOptions.maxWalBytes}. */
  readonly maxWalBytes: number;
  /** WAL bytes past which the writer truncates the WAL after a commit. */
  private readonly restartAt: number;
  /** WAL bytes past which a commit waits for a checkpoint first (backpressure). */
  private readonly waitAt: number;
  private readonly onBackpressure: ((walBytes: number) => void) | undefined;
  /** Set while commits wait for checkpoints, so that the callback is told once per episode. */
  private backpressured = false;
  /** Set once a commit of this episode waited the whole time in vain: later ones do not wait again. */
  private waitedInVain = false;
  /** How long a commit waits under backpressure (see {@link setBackpressureWait}). */
  private readonly waitMs = backpressureWaitMs;
  /** The `-wal` file's size after the last commit or checkpoint of this connection. */
  private walSize = 0;
  /** This writer's run, registered in a file log's metadata while it is open. */
  private run: Run | undefined;

  constructor(options: SqliteAuditLogOptions = {}) {
    const o = parseOptions(optionsSchema, options, 'SqliteAuditLog');
    this.options = o;
    this.path = o.path ?? ':memory:';
    this.readonly = o.readonly ?? false;
    this.keepsHolds = this.path !== ':memory:';
    this.maxRows = o.maxRows ?? (this.path === ':memory:' ? DEFAULT_MEMORY_MAX_ROWS : Infinity);
    this.onCommit = o.onCommit;
    this.onBackpressure = o.onBackpressure;
    const maxWal = (this.maxWalBytes = o.maxWalBytes ?? DEFAULT_MAX_WAL_BYTES);
    this.restartAt = Math.floor(maxWal / 4);
    this.waitAt = Math.floor((maxWal / 4) * 3);
    this.chain = this.open();
    this.digest = this.chain === 'sha256' ? createDigest() : o.key === undefined ? undefined : createDigest(o.key);
    this.byteDigest = this.chain === 'sha256' ? createByteDigest() : o.key === undefined ? undefined : createByteDigest(o.key);
    if (!this.readonly && this.identity !== undefined) this.startRun();
  }

  /**
   * Registers this writer's run in the file, first recording `interrupted` for what runs
   * that ended without closing left open (see runs.ts). Never fails the open: without the
   * write lock (another writer holds it), the earlier runs are left for a later open.
   */
  private startRun(): void {
    try {
      this.db
        .transaction(() => {
          const runs = parseRuns(this.stmts.meta.get(META_RUNS) as string | undefined);
          const alive = runs.filter(mayBeAlive);
          const dead = runs.filter((r) => !mayBeAlive(r));
          let keep = runs;
          if (dead.length > 0 && alive.length === 0) {
            const from = Math.min(...dead.map((r) => r.from));
            const why = `the process that was running it (${dead.map((r) => `pid ${r.pid}`).join(', ')}) stopped without closing the log; found when the log was opened again`;
            const records = interruptedSince(this.db, from, Date.now(), why);
            if (records.length > 0) this.writeBatches(encodeBatches(records));
            keep = [];
          }
          this.run = newRun(this.head().seq);
          this.stmts.setMeta.run(META_RUNS, JSON.stringify([...keep, this.run]));
        })
        .immediate();
    } catch (e) {
      this.run = undefined;
      process.emitWarning(`agent-switchboard: could not register this run in ${this.path} (${escapeText(messageOf(e))}); runs that ended without closing are left for a later open`, { code: 'SWITCHBOARD_AUDIT_RUNS' });
    }
  }

  /** Removes this run from the file: it closed, so nothing of it is left without an outcome by a crash. */
  private endRun(): void {
    const run = this.run;
    if (run === undefined || this.lost !== undefined) return;
    this.run = undefined;
    try {
      this.db
        .transaction(() => {
          const runs = parseRuns(this.stmts.meta.get(META_RUNS) as string | undefined).filter((r) => r.id !== run.id);
          this.stmts.setMeta.run(META_RUNS, JSON.stringify(runs));
        })
        .immediate();
    } catch {
      // The next opener finds the run and, once this process is gone, checks what it left open.
    }
  }

  /** Opens (and when needed creates or migrates) the database at the path; returns its chain. */
  private open(): ChainAlgorithm {
    const o = this.options;
    const key = o.key;
    const Sqlite = loadSqlite();
    let db: Database.Database;
    try {
      db = new Sqlite(this.path, { readonly: this.readonly, fileMustExist: this.readonly, timeout: o.busyTimeoutMs ?? DEFAULT_BUSY_TIMEOUT_MS });
    } catch (e) {
      throw unavailable(`cannot open audit database ${this.path}: ${messageOf(e)}`, e);
    }
    let chain: ChainAlgorithm;
    try {
      if (this.readonly) {
        checkReadableVersion(db, this.path);
      } else {
        if (!db.memory) {
          db.pragma('journal_mode = WAL');
          // Checkpoints run when the log is idle or closed, never inside a commit (see checkpoint()).
          db.pragma('wal_autocheckpoint = 0');
        }
        db.pragma(`synchronous = ${o.durability === 'full' ? 'FULL' : 'NORMAL'}`);
        // Take the write lock now: a file that cannot be written fails here, not at the first send.
        try {
          db.transaction(() => {
            migrate(db, this.path);
            const insertMeta = db.prepare('INSERT OR IGNORE INTO audit_meta (key, value) VALUES (?, ?)');
            insertMeta.run(META_CHAIN, key === undefined ? 'sha256' : 'hmac-sha256');
            if (key !== undefined) insertMeta.run(META_KEY_CHECK, keyCheck(key));
          }).immediate();
        } catch (e) {
          // Another writer holding the lock is no reason to refuse a current log: it only reads here.
          const busy = (e as { code?: unknown } | null)?.code === 'SQLITE_BUSY';
          if (!busy || userVersion(db) !== SCHEMA_VERSION || db.prepare('SELECT 1 FROM audit_meta WHERE key = ?').get(META_CHAIN) === undefined) throw e;
        }
      }
      chain = checkKey(db, this.path, key, this.readonly);
    } catch (e) {
      db.close();
      if (e instanceof BusError) throw e;
      const code = (e as { code?: unknown } | null)?.code;
      const why = typeof code === 'string' && code.startsWith('SQLITE_READONLY') ? 'the file cannot be written (read-only)' : messageOf(e);
      throw unavailable(`cannot open audit database ${this.path}: ${why}`, e);
    }
    this.db = db;
    this.identity = this.readonly || db.memory ? undefined : identityOf(this.path);
    this.checkpointer?.stop();
    this.checkpointer = this.identity !== undefined && o.checkpoints === 'thread' ? new Checkpointer(this.path) : undefined;
    this.walSize = this.identity === undefined ? 0 : walBytes(this.path);
    this.stmts = prepare(db);
    this.queryStmts.clear();
    this.batches.clear();
    this.appendTx = db.transaction((batches: readonly EncodedBatch[]) => this.writeBatches(batches));
    this.decideTx = db.transaction((decisions: readonly HoldDecision[]) => {
      // Under the write lock: of two connections deciding one hold, the second finds it gone.
      const { holdState, deleteHold, approveHold } = this.stmts;
      const taken = decisions.map((d) => {
        if (holdState.get(d.messageId, d.to) !== (d.approved === true ? 1 : 0)) return false;
        (d.keep === true ? approveHold : deleteHold).run(d.messageId, d.to);
        return true;
      });
      const records = decisions.flatMap((d, i) => (taken[i] ? d.records : []));
      if (records.length > 0) this.writeBatches(encodeBatches(records));
      return taken;
    });
    return chain;
  }

  /**
   * Writes the records in one transaction, chained after the last record on disk.
   *
   * @throws BusError `AUDIT_UNAVAILABLE` when they cannot all be written (a lock held too
   *   long, a full disk, a read-only file, an I/O error, the file deleted or replaced under
   *   the log, or an invalid record); nothing of the batch is then written, and the next
   *   append works once the fault clears.
   */
  append(records: readonly AuditRecord[]): void {
    this.assertOpen();
    if (this.readonly) throw new BusError('AUDIT_UNAVAILABLE', `audit log ${this.path} was opened read-only`);
    if (records.length === 0) return;
    let batches: EncodedBatch[];
    try {
      batches = encodeBatches(records);
    } catch (e) {
      throw invalidBatch(e, records.length);
    }
    this.appendBatches(batches, records.length);
  }

  /** Writes records already encoded by {@link encodeBatches} (the worker log's path); returns the new head. */
  private appendBatches(batches: readonly EncodedBatch[], count: number): ChainHead {
    this.assertOpen();
    if (this.readonly) throw new BusError('AUDIT_UNAVAILABLE', `audit log ${this.path} was opened read-only`);
    this.checkIdentity();
    if (this.identity !== undefined) this.makeRoom(count);
    let head: ChainHead;
    try {
      // IMMEDIATE: take the write lock first, so the head we read cannot go stale.
      head = this.appendTx.immediate(batches);
    } catch (e) {
      throw this.appendError(e, count);
    }
    if (this.identity !== undefined && (this.walSize = walBytes(this.path)) >= this.restartAt) {
      // The thread's passive checkpoints copied most of it: copy the rest, start the WAL over.
      this.truncateWal(0);
    } else if ((this.uncheckpointed += count) >= CHECKPOINT_RECORDS && this.checkpointer !== undefined) {
      this.uncheckpointed = 0;
      this.checkpointer.request();
    } else if (this.uncheckpointed >= CHECKPOINT_RECORDS && !this.checkpointScheduled && this.identity !== undefined) {
      // After this turn of the event loop, not inside the commit (the writer has wal_autocheckpoint = 0).
      this.checkpointScheduled = true;
      setImmediate(() => {
        this.checkpointScheduled = false;
        this.checkpoint();
      }).unref();
    }
    if (this.onCommit !== undefined) {
      try {
        this.onCommit(head);
      } catch (e) {
        process.emitWarning(`agent-switchboard: audit.onCommit threw: ${escapeText(messageOf(e))}`, { code: 'SWITCHBOARD_ON_COMMIT' });
      }
    }
    return head;
  }

  /**
   * Entries (one per message and recipient, with its latest state): newest first, or oldest
   * first with `afterSeq`. Paging by `beforeSeq` / `afterSeq` reaches every entry exactly once.
   * Batches read are kept parsed for the next queries only while the database is unchanged
   * (see {@link BatchCache}).
   */
  query(filter: MessageLogQuery = {}): MessageLogEntry[] {
    this.assertOpen();
    const parsed = safeParseInput(filterSchema, filter, 'query filter');
    if (!parsed.success) throw filterError(parsed.error);
    const f = parsed.data;
    const limit = Math.min(MAX_QUERY_LIMIT, Math.max(1, f.limit ?? DEFAULT_QUERY_LIMIT));
    const ascending = f.afterSeq !== undefined;
    try {
      // Candidate batches, in page order, from the narrowest index the filter allows.
      let sql: string;
      const args: (string | number)[] = [];
      let range = '';
      if (f.beforeSeq !== undefined) {
        range += ' AND first_seq < ?';
        args.push(f.beforeSeq);
      }
      if (f.afterSeq !== undefined) {
        // The batch holding afterSeq + 1 starts at or before it.
        const from = (this.stmts.containing.get(f.afterSeq + 1) as number | undefined) ?? f.afterSeq + 1;
        range += ' AND first_seq >= ?';
        args.push(from);
      }
      const order = ascending ? 'ASC' : 'DESC';
      if (f.conversationId !== undefined) {
        sql = `SELECT first_seq FROM audit_conversation WHERE conversation_id = ?${range} ORDER BY first_seq ${order}`;
        args.unshift(f.conversationId);
      } else if (f.agentId !== undefined) {
        sql = `SELECT first_seq FROM audit_slice WHERE agent = ?${range} ORDER BY first_seq ${order}`;
        args.unshift(f.agentId);
      } else {
        sql = `SELECT first_seq FROM audit_batch WHERE 1${range} ORDER BY first_seq ${order}`;
      }
      this.batches.check(this.stmts);
      const candidates = this.statement(sql).pluck().iterate(args) as IterableIterator<number>;
      try {
        return runQuery(this.stmts, this.batches, candidates, { ...f, limit });
      } finally {
        candidates.return?.();
      }
    } catch (e) {
      if (e instanceof BusError) throw e;
      throw unavailable(`cannot read audit database ${this.path}: ${messageOf(e)}`, e);
    }
  }

  /**
   * The digest records (a peer node's signed covers of frames it sent this node under a MAC,
   * see {@link DigestRecord}), oldest first: they are records of the nodes, never message
   * entries, so {@link query} does not return them. Page with `afterSeq`. Found through
   * `audit_digest` (only the batches that hold one are read).
   */
  peerDigests(filter: PeerDigestQuery = {}): PeerDigestEntry[] {
    this.assertOpen();
    const parsed = safeParseInput(digestFilterSchema, filter, 'peerDigests filter');
    if (!parsed.success) throw filterError(parsed.error);
    const f = parsed.data;
    const limit = Math.min(MAX_QUERY_LIMIT, Math.max(1, f.limit ?? DEFAULT_QUERY_LIMIT));
    if (f.afterSeq !== undefined && f.beforeSeq !== undefined) throw new BusError('INVALID_ARGUMENT', 'peerDigests filter: afterSeq and beforeSeq page in opposite directions; give one');
    const newestFirst = f.beforeSeq !== undefined;
    const after = f.afterSeq ?? 0;
    const before = f.beforeSeq ?? Number.MAX_SAFE_INTEGER;
    const out: PeerDigestEntry[] = [];
    try {
      let firsts: IterableIterator<number>;
      if (newestFirst) {
        // The batch holding `before - 1` may start below it: begin there and go down.
        const from = (this.stmts.containing.get(before - 1) as number | null | undefined) ?? before - 1;
        firsts = (f.peerNode === undefined ? this.stmts.digestBatchesDown.iterate(from) : this.stmts.digestBatchesOfDown.iterate(f.peerNode, from)) as IterableIterator<number>;
      } else {
        const from = (this.stmts.containing.get(after + 1) as number | null | undefined) ?? after + 1;
        firsts = (f.peerNode === undefined ? this.stmts.digestBatches.iterate(from) : this.stmts.digestBatchesOf.iterate(f.peerNode, from)) as IterableIterator<number>;
      }
      try {
        for (const first of firsts) {
          const text = this.stmts.records.get(first) as string | undefined;
          if (text === undefined) continue;
          const lines = text.split('\n').slice(1, -1);
          if (newestFirst) lines.reverse();
          for (const line of lines) {
            if (out.length >= limit) break;
            // `[seq,"digest",…`: skip the other kinds without parsing them.
            if (!line.startsWith('"digest"', line.indexOf(',') + 1)) continue;
            const r = JSON.parse(line.endsWith(',') ? line.slice(0, -1) : line) as unknown[];
            const seq = r[COL.seq] as number;
            if (r[COL.kind] !== 'digest' || seq <= after || seq >= before) continue;
            if (f.peerNode !== undefined && r[COL.peer_node] !== f.peerNode) continue;
            if (f.since !== undefined && !((r[COL.ts] as number) >= f.since)) continue;
            const e: PeerDigestEntry = { seq, digestId: r[COL.message_id] as string, ts: r[COL.ts] as number, peerNode: r[COL.peer_node] as string, payloadHash: r[COL.payload_hash] as string, proof: r[COL.peer_proof] as string };
            if (typeof r[COL.node] === 'string') e.node = r[COL.node] as string;
            out.push(e);
          }
          if (out.length >= limit) break;
        }
      } finally {
        firsts.return?.();
      }
    } catch (e) {
      if (e instanceof BusError) throw e;
      throw unavailable(`cannot read audit database ${this.path}: ${messageOf(e)}`, e);
    }
    return out;
  }

  /**
   * Recomputes the hash chain from the oldest kept record to the last. Catches an edited,
   * deleted, inserted or reordered record (naming the first bad seq) and, given `head`, a
   * truncated tail: the log must still hold that seq with that hash. `checked` counts the
   * records that matched (before the first bad one). Synchronous, and it blocks for a time
   * proportional to the records kept (docs/performance.md has the current figure).
   *
   * @throws BusError `AUDIT_UNAVAILABLE` for a keyed log opened without its key.
   */
  verify(options: VerifyOptions = {}): VerifyResult {
    this.assertOpen();
    const digest = this.byteDigest;
    if (digest === undefined) {
      throw new BusError('AUDIT_UNAVAILABLE', `audit log ${this.path} is keyed (HMAC-SHA-256): its key is needed to verify it`);
    }
    const want = options.head === undefined ? undefined : checkHead(options.head);
    const anchor = this.anchor();
    const recorded = this.recordedAnchor();
    if (this.stmts.firstAnchor.get() !== undefined && (anchor.seq !== recorded.seq || anchor.hash !== recorded.hash)) {
      return {
        ok: false,
        checked: 0,
        firstBad: recorded.seq + 1,
        reason: `the log should start after row ${recorded.seq}, but its oldest kept row is ${anchor.seq + 1}: rows were removed from its start`,
      };
    }
    // A head older than the anchor was dropped by retention: the log is longer, not truncated.
    const headSeen = want === undefined || want.seq < anchor.seq || (want.seq === anchor.seq && want.hash === anchor.hash);
    const result = verifyRows(this.stmts.verify.iterate() as IterableIterator<VerifyRow>, digest, anchor, want, headSeen);
    if (!result.ok) return result;
    // The chain holds: now what queries read beside it (see verify-indexes.ts).
    const schema = checkSchema(this.db);
    if (schema !== undefined) return { ...result, ok: false, checked: 0, firstBad: anchor.seq + 1, reason: `${schema}: queries could show what the chain does not hold` };
    const missing = checkIndexes(this.db, anchor.seq);
    if (missing !== undefined) return { ...result, ok: false, checked: missing.seq - anchor.seq - 1, firstBad: missing.seq, reason: missing.reason };
    return result;
  }

  /** The last record's seq and hash; `{ seq: 0, hash: GENESIS }` for an empty log. */
  head(): ChainHead {
    this.assertOpen();
    const row = this.stmts.head.get() as [number, string] | undefined;
    return row === undefined ? this.anchor() : { seq: row[0], hash: row[1] };
  }

  /**
   * The held messages this file keeps, oldest first, each with its `pending` attempt row as
   * stored (so the caller can check the copy against the chained row).
   */
  holds(afterSeq = -1): StoredHold[] {
    this.assertOpen();
    try {
      const rows = this.stmts.holds.all(afterSeq) as [string, string, number, number, number, string | null, number, number, string, string][];
      const batches = new Map<number, string[]>();
      this.lastBatch = undefined;
      return rows.map(([messageId, to, seq, requestedAt, expiresAt, rule, trust, approved, envelope, payload]) => ({
        approved: approved === 1,
        messageId,
        to,
        seq,
        requestedAt,
        expiresAt,
        ...(rule !== null ? { rule } : {}),
        trust,
        envelope,
        payload,
        attempt: this.storedRecord(seq, batches),
      }));
    } catch (e) {
      if (e instanceof BusError) throw e;
      throw unavailable(`cannot read the held messages of ${this.path}: ${messageOf(e)}`, e);
    }
  }

  /** The key and state of every held message (see HoldStore.holdStates). */
  holdStates(): [string, string, number][] {
    this.assertOpen();
    return this.stmts.holdStates.all() as [string, string, number][];
  }

  /**
   * The stored record `seq` (its column values). Each batch is read once per call (through
   * `batches`: its lines, split but not parsed), and only the wanted line is parsed.
   */
  private storedRecord(seq: number, batches: Map<number, string[]>): unknown[] | undefined {
    let first = this.lastBatch;
    let lines = first === undefined ? undefined : batches.get(first);
    if (first === undefined || lines === undefined || seq < first || seq >= first + lines.length) {
      const found = this.stmts.containing.get(seq) as number | null | undefined;
      if (found === null || found === undefined) return undefined;
      first = found;
      lines = batches.get(first);
      if (lines === undefined) {
        // `[\n` line `,\n` line … `\n]`: one record per line.
        lines = (this.stmts.records.get(first) as string).split('\n').slice(1, -1);
        batches.set(first, lines);
      }
      this.lastBatch = first;
    }
    const line = lines[seq - first];
    if (line === undefined) return undefined;
    const row = JSON.parse(line.endsWith(',') ? line.slice(0, -1) : line) as unknown[];
    return row[0] === seq ? row : undefined;
  }
  private lastBatch: number | undefined;

  /**
   * Takes decisions on held messages, each only if its hold is still stored: in one
   * transaction, the rows of the decisions taken are written and their holds deleted.
   */
  decide(decisions: readonly HoldDecision[]): boolean[] {
    this.assertOpen();
    if (this.readonly) throw new BusError('AUDIT_UNAVAILABLE', `audit log ${this.path} was opened read-only`);
    if (decisions.length === 0) return [];
    this.checkIdentity();
    try {
      return this.decideTx.immediate(decisions);
    } catch (e) {
      throw this.appendError(e, decisions.reduce((n, d) => n + d.records.length, 0));
    }
  }

  /**
   * Every stored record that names `messageId` as its message or as the message it replies
   * to, oldest first. Searches the batches newest first and stops at the batch of the
   * message's attempt: a recent message is found at once, an old one costs a scan.
   */
  messageRecords(messageId: string): unknown[][] {
    this.assertOpen();
    const needle = JSON.stringify(messageId);
    const found: unknown[][] = [];
    const batches = this.stmts.mentioning.iterate(needle) as IterableIterator<[number, string]>;
    try {
      for (const [, text] of batches) {
        let attempt = false;
        for (const row of JSON.parse(text) as unknown[][]) {
          const own = row[COL.message_id] === messageId;
          if (own || (row[COL.in_reply_to] === messageId && row[COL.type] === 'reply')) found.push(row);
          if (own && row[COL.kind] === 'attempt') attempt = true;
        }
        if (attempt) break;
      }
    } catch (e) {
      throw unavailable(`cannot read audit database ${this.path}: ${messageOf(e)}`, e);
    } finally {
      batches.return?.();
    }
    return found.sort((a, b) => (a[0] as number) - (b[0] as number));
  }

  /** The reply kept for `messageId` (a restored message's), deleted when `remove`. */
  keptReply(messageId: string, remove: boolean): string | undefined {
    this.assertOpen();
    const reply = this.stmts.keptReply.get(messageId) as string | undefined;
    if (reply !== undefined && remove) {
      if (this.readonly) throw new BusError('AUDIT_UNAVAILABLE', `audit log ${this.path} was opened read-only`);
      this.stmts.dropReply.run(messageId);
    }
    return reply;
  }

  /**
   * Closes the database. A file log's checkpoint thread closes its connection first, and the
   * WAL is checkpointed and truncated, so the file left is self-contained: once no other
   * connection is open, SQLite removes the `-wal` and `-shm` files. Idempotent; later calls
   * to anything else throw.
   */
  close(): void {
    if (this.closed) return;
    this.endRun();
    this.closed = true;
    this.checkpointer?.stop();
    this.checkpointer = undefined;
    if (this.identity !== undefined && this.lost === undefined) {
      try {
        this.db.pragma('wal_checkpoint(TRUNCATE)');
      } catch {
        // Another connection's snapshot: the last to close checkpoints.
      }
    }
    this.db.close();
  }

  /**
   * Before a commit: when the WAL is past three quarters of `maxWalBytes`, waits for a
   * checkpoint that brings it back under (backpressure) rather than growing it; fails closed
   * when none can be made in time (a reader that holds an old snapshot keeps the WAL).
   */
  private makeRoom(count: number): void {
    // As measured after the last commit: only this connection's checkpoints shrink the file.
    let wal = this.walSize;
    if (wal < this.waitAt) {
      this.backpressured = false;
      this.waitedInVain = false;
      return;
    }
    if (!this.backpressured) {
      this.backpressured = true;
      this.waitedInVain = false;
      if (this.onBackpressure !== undefined) {
        try {
          this.onBackpressure(wal);
        } catch (e) {
          process.emitWarning(`agent-switchboard: audit.onBackpressure threw: ${escapeText(messageOf(e))}`, { code: 'SWITCHBOARD_ON_BACKPRESSURE' });
        }
      }
    }
    // One wait per episode: once a batch waited the whole time in vain, the next ones try a
    // checkpoint and fail closed at once, so a reader that keeps its snapshot for a minute
    // costs one wait (on this thread: the bus's own with worker: false), not one per batch.
    const waitMs = this.waitedInVain ? 0 : this.waitMs;
    const until = performance.now() + waitMs;
    for (;;) {
      this.truncateWal(Math.max(0, until - performance.now()));
      wal = walBytes(this.path);
      if (wal < this.waitAt) return;
      const left = until - performance.now();
      if (left <= 0) {
        const waited = this.waitedInVain ? `since a wait of ${this.waitMs}ms ended in vain earlier in this episode` : `within ${this.waitMs}ms`;
        this.waitedInVain = true;
        throw new BusError(
          'AUDIT_UNAVAILABLE',
          `the WAL of audit database ${this.path} holds ${wal} bytes, past three quarters of audit.maxWalBytes (${this.maxWalBytes}), and no checkpoint could shrink it ${waited} (another connection holds an old snapshot?); none of the ${count} records were written`,
        );
      }
      Atomics.wait(PAUSE, 0, 0, Math.min(10, left)); // a reader's snapshot: let it finish
    }
  }

  /**
   * Copies the WAL into the database and truncates it, on this connection, between two
   * commits; waits at most `waitMs` for the thread's checkpoint, and never for a reader
   * (SQLite's busy timeout is off meanwhile): a reader that holds a snapshot makes it fail at
   * once, and the caller tries again (after the next commit, or in makeRoom's own paced loop)
   * rather than block the writing thread for the busy timeout on every commit.
   */
  private truncateWal(waitMs: number): void {
    const thread = this.checkpointer;
    if (thread !== undefined && !thread.tryAcquire(waitMs)) return;
    try {
      this.db.pragma('busy_timeout = 0');
      this.db.pragma('wal_checkpoint(TRUNCATE)');
      this.uncheckpointed = 0;
      this.walSize = walBytes(this.path);
    } catch {
      // Busy: tried again after the next commit.
    } finally {
      this.db.pragma(`busy_timeout = ${this.options.busyTimeoutMs ?? DEFAULT_BUSY_TIMEOUT_MS}`);
      thread?.release();
    }
  }

  /**
   * Moves the WAL into the database without waiting for readers (PASSIVE). The writer never
   * checkpoints inside a commit (`wal_autocheckpoint = 0`); the worker calls this when idle.
   */
  checkpoint(): void {
    if (this.closed || this.readonly || this.db.memory || this.lost !== undefined) return;
    this.uncheckpointed = 0;
    try {
      this.db.pragma('wal_checkpoint(PASSIVE)');
    } catch {
      // A busy checkpoint is retried next time.
    }
  }

  /** Where the chain is recorded to start: the retention anchor, or the lost head a new file continues, else genesis. */
  private recordedAnchor(): ChainHead {
    const stored = this.stmts.meta.get(META_ANCHOR) as string | undefined;
    return stored === undefined ? { seq: 0, hash: GENESIS } : (JSON.parse(stored) as ChainHead);
  }

  /** Where the kept chain starts: the record before the oldest kept one. */
  private anchor(): ChainHead {
    const first = this.stmts.firstAnchor.get() as [number, string] | undefined;
    if (first !== undefined) return { seq: first[0] - 1, hash: first[1] };
    const stored = this.stmts.meta.get(META_ANCHOR) as string | undefined;
    return stored === undefined ? { seq: 0, hash: GENESIS } : (JSON.parse(stored) as ChainHead);
  }

  /**
   * Stores each encoded batch as one row, chained after the head: every line gets its seq
   * and is hashed exactly as a record always was (`H(prev ‖ line)`), and each index gets one
   * statement per batch (its keys read by `json_each`).
   */
  private writeBatches(batches: readonly EncodedBatch[]): ChainHead {
    const { seq: headSeq, hash: headHash } = this.head();
    let seq = headSeq;
    let prev = headHash;
    const digest = this.digest as Digest; // a writer always has one (checked at open)
    const { insertBatch, insertSlices, insertConversations, insertMessages, insertDigests, insertHold, insertReply } = this.stmts;
    for (const b of batches) {
      const first = seq + 1;
      const batchPrev = prev;
      const lines = b.lines.split('\n');
      if (lines.length !== b.count) throw new TypeError(`an encoded batch holds ${lines.length} lines, not ${b.count}`);
      const hashes = Buffer.allocUnsafe(b.count * 32);
      for (let i = 0; i < b.count; i++) {
        // Encoded with seq 0: `[0,…` becomes `[seq,…`, the record's canonical encoding.
        const line = `[${++seq}${(lines[i] as string).slice(2)}`;
        prev = digest(prev, line);
        hashes.write(prev, i * 32, 'hex');
        lines[i] = line;
      }
      insertBatch.run(first, b.count, batchPrev, hashes, `[\n${lines.join(',\n')}\n]`);
      insertSlices.run(first, b.agents);
      insertConversations.run(first, b.conversations);
      if (b.messages !== '[]') insertMessages.run(first, b.messages);
      if (b.digests !== '[]') insertDigests.run(first, b.digests);
      if (b.holds !== undefined) for (const h of b.holds) insertHold.run(h[1], h[2], first + (h[0] as number), h[3], h[4], h[5], h[6], h[7], h[8]);
      if (b.replies !== undefined) for (const r of b.replies) insertReply.run(r[1], first + (r[0] as number), r[2]);
    }
    if (this.maxRows !== Infinity && seq - this.anchor().seq > this.maxRows) this.trim(seq);
    return { seq, hash: prev };
  }

  /** Drops the oldest batches until at most maxRows records are kept; the new oldest's predecessor becomes the anchor. */
  private trim(headSeq: number): void {
    const { first, dropBatch, dropSlice, dropConversation, dropMessage, dropDigest, setMeta } = this.stmts;
    for (;;) {
      const oldest = first.get() as [number, string, number, string] | undefined;
      if (oldest === undefined) return;
      const [firstSeq, , count, text] = oldest;
      if (headSeq - (firstSeq - 1) <= this.maxRows || firstSeq + count - 1 >= headSeq) return;
      for (const line of text.split('\n').slice(1, -1)) {
        const r = JSON.parse(line.endsWith(',') ? line.slice(0, -1) : line) as unknown[];
        if (r[COL.kind] === 'digest') {
          dropDigest.run(r[COL.peer_node], firstSeq);
          continue;
        }
        dropSlice.run(r[COL.recipient], firstSeq);
        if (typeof r[COL.sender] === 'string') dropSlice.run(r[COL.sender], firstSeq);
        if (typeof r[COL.conversation_id] === 'string') dropConversation.run(r[COL.conversation_id], firstSeq);
        else dropMessage.run(r[COL.message_id], firstSeq);
      }
      dropBatch.run(firstSeq);
      // A kept reply goes with its row (retention); a held message stays until decided.
      this.stmts.dropRepliesBefore.run(firstSeq + count);
      const next = this.stmts.firstAnchor.get() as [number, string] | undefined;
      if (next !== undefined) setMeta.run(META_ANCHOR, JSON.stringify({ seq: next[0] - 1, hash: next[1] }));
    }
  }

  /**
   * A file log checks, before each commit, that the path still leads to the file it writes
   * (same device and inode). If the file was deleted, renamed or replaced, it fails closed
   * and, on the next append, opens the file now at the path (creating it if there is none)
   * and records the break there: the new file's chain starts at the lost head.
   */
  private checkIdentity(): void {
    if (this.identity === undefined && this.lost === undefined) return;
    if (this.lost === undefined) {
      const now = identityOf(this.path);
      if (now !== undefined && now.dev === (this.identity as Identity).dev && now.ino === (this.identity as Identity).ino) return;
      const why = now === undefined ? 'was deleted or renamed' : 'was replaced by another file';
      let head: ChainHead;
      try {
        head = this.head();
      } catch {
        head = { seq: 0, hash: GENESIS };
      }
      this.lost = { head, why };
      this.checkpointer?.stop();
      this.checkpointer = undefined;
      try {
        this.db.close();
      } catch {
        // It is gone either way.
      }
      throw new BusError('AUDIT_UNAVAILABLE', `audit file ${this.path} ${why} while the bus was writing it; refusing until it can write to the file at that path`);
    }
    const lost = this.lost;
    try {
      this.open();
    } catch (e) {
      throw new BusError('AUDIT_UNAVAILABLE', `audit file ${this.path} ${lost.why}, and the file at that path cannot be opened: ${messageOf(e)}`, { cause: e });
    }
    this.lost = undefined;
    this.recordBreak(lost);
  }

  /** Notes a lost file in the new file's metadata; an empty new file continues the lost chain. */
  private recordBreak(lost: { head: ChainHead; why: string }): void {
    const { setMeta, meta } = this.stmts;
    this.db.transaction(() => {
      const empty = this.stmts.head.get() === undefined && meta.get(META_ANCHOR) === undefined;
      if (empty) setMeta.run(META_ANCHOR, JSON.stringify(lost.head));
      const breaks = JSON.parse((meta.get(META_BREAKS) as string | undefined) ?? '[]') as unknown[];
      breaks.push({ at: Date.now(), lostSeq: lost.head.seq, lostHash: lost.head.hash, why: lost.why, continued: empty });
      setMeta.run(META_BREAKS, JSON.stringify(breaks.slice(-100)));
    }).immediate();
  }

  private statement(sql: string): Database.Statement {
    let stmt = this.queryStmts.get(sql);
    if (stmt === undefined) {
      if (this.queryStmts.size >= 64) this.queryStmts.clear(); // filter shapes: keep it bounded
      stmt = this.db.prepare(sql);
      this.queryStmts.set(sql, stmt);
    }
    return stmt;
  }

  private assertOpen(): void {
    if (this.closed) throw new BusError('AUDIT_UNAVAILABLE', `audit log ${this.path} is closed`);
  }

  private appendError(e: unknown, count: number): BusError {
    if (e instanceof BusError) return e;
    const code = (e as { code?: unknown } | null)?.code;
    const invalid = e instanceof TypeError || e instanceof RangeError || (typeof code === 'string' && code.startsWith('SQLITE_CONSTRAINT'));
    const what = invalid
      ? `an audit record of the batch is invalid (${messageOf(e)})`
      : `cannot write to audit database ${this.path} (${typeof code === 'string' ? `${code}: ` : ''}${messageOf(e)})`;
    return unavailable(`${what}; none of the ${count} records were written`, e);
  }
}

/** Every statement the log runs more than once. */
function prepare(db: Database.Database) {
  const stmts = {
    head: db.prepare(HEAD_SQL).raw(),
    firstAnchor: db.prepare('SELECT first_seq, prev_hash FROM audit_batch ORDER BY first_seq LIMIT 1').raw(),
    first: db.prepare('SELECT first_seq, prev_hash, count, records FROM audit_batch ORDER BY first_seq LIMIT 1').raw(),
    meta: db.prepare('SELECT value FROM audit_meta WHERE key = ?').pluck(),
    setMeta: db.prepare('INSERT OR REPLACE INTO audit_meta (key, value) VALUES (?, ?)'),
    verify: db.prepare('SELECT first_seq, count, prev_hash, lower(hex(hashes)), records FROM audit_batch ORDER BY first_seq').raw(),
    insertBatch: db.prepare('INSERT INTO audit_batch (first_seq, count, prev_hash, hashes, records) VALUES (?, ?, ?, ?, ?)'),
    insertSlices: db.prepare('INSERT OR IGNORE INTO audit_slice (agent, first_seq) SELECT value, ? FROM json_each(?)'),
    insertConversations: db.prepare('INSERT OR IGNORE INTO audit_conversation (conversation_id, first_seq) SELECT value, ? FROM json_each(?)'),
    insertMessages: db.prepare('INSERT OR IGNORE INTO audit_message (message_id, first_seq) SELECT value, ? FROM json_each(?)'),
    insertDigests: db.prepare('INSERT OR IGNORE INTO audit_digest (node, first_seq) SELECT value, ? FROM json_each(?)'),
    dropBatch: db.prepare('DELETE FROM audit_batch WHERE first_seq = ?'),
    dropSlice: db.prepare('DELETE FROM audit_slice WHERE agent = ? AND first_seq = ?'),
    dropConversation: db.prepare('DELETE FROM audit_conversation WHERE conversation_id = ? AND first_seq = ?'),
    dropMessage: db.prepare('DELETE FROM audit_message WHERE message_id = ? AND first_seq = ?'),
    dropDigest: db.prepare('DELETE FROM audit_digest WHERE node = ? AND first_seq = ?'),
    digestBatches: db.prepare('SELECT DISTINCT first_seq FROM audit_digest WHERE first_seq >= ? ORDER BY first_seq').pluck(),
    digestBatchesOf: db.prepare('SELECT first_seq FROM audit_digest WHERE node = ? AND first_seq >= ? ORDER BY first_seq').pluck(),
    digestBatchesDown: db.prepare('SELECT DISTINCT first_seq FROM audit_digest WHERE first_seq <= ? ORDER BY first_seq DESC').pluck(),
    digestBatchesOfDown: db.prepare('SELECT first_seq FROM audit_digest WHERE node = ? AND first_seq <= ? ORDER BY first_seq DESC').pluck(),
    records: db.prepare('SELECT records FROM audit_batch WHERE first_seq = ?').pluck(),
    containing: db.prepare('SELECT max(first_seq) FROM audit_batch WHERE first_seq <= ?').pluck(),
    // json_each drives (CROSS JOIN keeps that order): one seek per key, where an IN list would first build a temporary index of the keys.
    followConversations: db.prepare('SELECT j.key, c.first_seq FROM json_each(?) j CROSS JOIN audit_conversation c ON c.conversation_id = j.value AND c.first_seq >= ?').raw(),
    followMessages: db.prepare('SELECT j.key, m.first_seq FROM json_each(?) j CROSS JOIN audit_message m ON m.message_id = j.value AND m.first_seq >= ?').raw(),
    anyMessages: db.prepare('SELECT 1 FROM audit_message LIMIT 1').pluck(),
    conversationUpTo: db.prepare('SELECT first_seq FROM audit_conversation WHERE conversation_id = ? AND first_seq <= ? ORDER BY first_seq DESC').pluck(),
    changes: db.prepare('SELECT total_changes()').pluck(),
    holds: db.prepare('SELECT message_id, recipient, seq, requested_at, expires_at, rule, trust, approved, envelope, payload FROM approval_hold WHERE seq > ? ORDER BY seq').raw(),
    holdStates: db.prepare('SELECT message_id, recipient, approved FROM approval_hold').raw(),
    holdState: db.prepare('SELECT approved FROM approval_hold WHERE message_id = ? AND recipient = ?').pluck(),
    approveHold: db.prepare('UPDATE approval_hold SET approved = 1 WHERE message_id = ? AND recipient = ?'),
    insertHold: db.prepare('INSERT OR IGNORE INTO approval_hold (message_id, recipient, seq, requested_at, expires_at, rule, trust, envelope, payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)'),
    deleteHold: db.prepare('DELETE FROM approval_hold WHERE message_id = ? AND recipient = ?'),
    insertReply: db.prepare('INSERT OR REPLACE INTO kept_reply (message_id, seq, reply) VALUES (?, ?, ?)'),
    keptReply: db.prepare('SELECT reply FROM kept_reply WHERE message_id = ?').pluck(),
    dropReply: db.prepare('DELETE FROM kept_reply WHERE message_id = ?'),
    dropRepliesBefore: db.prepare('DELETE FROM kept_reply WHERE seq < ?'),
    mentioning: db.prepare('SELECT first_seq, records FROM audit_batch WHERE instr(records, ?) > 0 ORDER BY first_seq DESC').raw(),
    dataVersion: db.prepare('PRAGMA data_version').pluck(),
  };
  return stmts;
}

/** What {@link Atomics.wait} sleeps on: nothing ever notifies it. */
const PAUSE = new Int32Array(new SharedArrayBuffer(4));

/** The size of the `-wal` file beside `path` (0 when there is none). */
function walBytes(path: string): number {
  return statSync(`${path}-wal`, { throwIfNoEntry: false })?.size ?? 0;
}

function identityOf(path: string): Identity | undefined {
  const s = statSync(path, { throwIfNoEntry: false });
  return s === undefined ? undefined : { dev: s.dev, ino: s.ino };
}

function checkHead(head: ChainHead): ChainHead {
  if (
    typeof head !== 'object' ||
    head === null ||
    !Number.isSafeInteger(head.seq) ||
    head.seq < 0 ||
    typeof head.hash !== 'string' ||
    !/^[0-9a-f]{64}$/.test(head.hash)
  ) {
    throw new BusError('INVALID_ARGUMENT', `invalid head: expected { seq: a non-negative integer, hash: 64 lowercase hex characters }`);
  }
  return { seq: head.seq, hash: head.hash };
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

/**
 * The error for records that {@link encodeBatches} refused: it names the record, and says
 * nothing was written.
 */
export function invalidBatch(e: unknown, count: number): BusError {
  const what = e instanceof InvalidRecordError ? `audit record ${e.index} of the batch is invalid (${messageOf(e)})` : `an audit record of the batch is invalid (${messageOf(e)})`;
  return unavailable(`${what}; none of the ${count} records were written`, e);
}

/** Writes encoded batches to a log (the worker's path: the records were encoded on the bus's thread). */
export function appendEncoded(log: SqliteAuditLog, batches: readonly EncodedBatch[], count: number): ChainHead {
  return log['appendBatches'](batches, count);
}

function unavailable(message: string, cause: unknown): BusError {
  return new BusError('AUDIT_UNAVAILABLE', message, { cause });
}

/** A query's filter is an argument, not options: its refusal names the filter key in quotes. */
function filterError(error: z.ZodError): BusError {
  const issue = error.issues[0];
  if (issue === undefined) return new BusError('INVALID_ARGUMENT', 'invalid query filter');
  if (issue.code === 'unrecognized_keys') {
    return new BusError('INVALID_ARGUMENT', `unknown query filter ${issue.keys.map((k) => `"${k}"`).join(', ')}`);
  }
  return new BusError('INVALID_ARGUMENT', `invalid query filter "${issue.path.join('.')}": ${issue.message}`);
}

function messageOf(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).replace(/\s+/g, ' ');
}
