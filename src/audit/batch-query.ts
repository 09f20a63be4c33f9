/**
 * getMessageLog over batch storage (schema v3). Candidate batches come from an index (the
 * agent's slices, the conversation's batches, or all batches), in seq order; their attempt
 * records are matched against the filter until the page is full; then each entry is folded
 * with its follow-ups (latest outcome, latest approval, the reply that answered it), which
 * live in batches of its conversation at or after its own.
 *
 * Batches read by a query are kept, parsed as far as queries needed, in a {@link BatchCache}
 * for the next queries, as long as the database has not changed since (see there).
 */
import type Database from 'better-sqlite3';
import { COL } from './migrations.js';
import { UNVERIFIED, type AuditOutcome, type MessageLogEntry, type RefusalSummary } from './types.js';

/** A validated filter. */
export interface BatchFilter {
  agentId?: string | undefined;
  conversationId?: string | undefined;
  type?: string | undefined;
  decision?: string | undefined;
  since?: number | undefined;
  before?: number | undefined;
  beforeSeq?: number | undefined;
  afterSeq?: number | undefined;
  limit: number;
}

/** The statements a query needs (prepared once per log). */
export interface BatchStatements {
  readonly records: Database.Statement; // (first_seq) -> records
  readonly containing: Database.Statement; // (seq) -> first_seq of the batch holding it
  /** (conversations as a JSON array, from) -> [index in the array, first_seq]. */
  readonly followConversations: Database.Statement;
  /** (messages as a JSON array, from) -> [index in the array, first_seq]: follow-ups stored without a conversation. */
  readonly followMessages: Database.Statement;
  /** () -> 1 when any record without a conversation is indexed (else the message lookup is skipped). */
  readonly anyMessages: Database.Statement;
  /** (conversation, seq) -> first_seq of each batch of the conversation starting at or before seq, newest first. */
  readonly conversationUpTo: Database.Statement;
  /** () -> total_changes(): rows this connection changed since it opened. */
  readonly changes: Database.Statement;
  /** () -> PRAGMA data_version: changes when another connection committed a change. */
  readonly dataVersion: Database.Statement;
}

/** How many parsed batches a {@link BatchCache} keeps (a page of 50 of one agent spans one or two). */
export const CACHED_BATCHES = 32;

/**
 * The batches recent queries read, parsed as far as they needed, kept for the next queries
 * of the same connection while the database is unchanged: every query first reads the
 * connection's change counter and SQLite's `data_version`, and any change by this
 * connection (an append, retention dropping old batches, any other write) or by another
 * (the worker's writer, a tool, someone editing the file) empties the cache. So a query
 * never sees a batch as it was before a change; an unchanged log (a closed bus's file, an
 * idle bus, paging through history) is read and parsed once more after the first query,
 * then kept. At most {@link CACHED_BATCHES} are kept, the least recently used dropped first.
 */
export class BatchCache {
  private readonly batches = new Map<number, Batch>();
  private changes = -1;
  private dataVersion = -1;
  private anyMessages: boolean | undefined;

  /** True when the database was unchanged between the last two queries: only then are batches kept. */
  private steady = false;

  /**
   * Empties the cache unless the database is as it was at the last query. A log that
   * changed since keeps nothing from this query either: on a busy log every batch kept would
   * be dropped at the next query, after living long enough to cost the GC (promoted).
   */
  check(stmts: BatchStatements): void {
    const changes = stmts.changes.get() as number;
    const dataVersion = stmts.dataVersion.get() as number;
    this.steady = changes === this.changes && dataVersion === this.dataVersion;
    if (this.steady) return;
    this.changes = changes;
    this.dataVersion = dataVersion;
    this.clear();
  }

  clear(): void {
    this.batches.clear();
    this.anyMessages = undefined;
  }

  /** True when any record without a conversation is indexed. */
  hasMessages(stmts: BatchStatements): boolean {
    return (this.anyMessages ??= stmts.anyMessages.get() !== undefined);
  }

  get(first: number): Batch | undefined {
    const b = this.batches.get(first);
    if (b !== undefined) {
      this.batches.delete(first);
      this.batches.set(first, b);
    }
    return b;
  }

  set(b: Batch): void {
    if (!this.steady) return;
    if (this.batches.size >= CACHED_BATCHES) this.batches.delete(this.batches.keys().next().value as number);
    this.batches.set(b.first, b);
  }

  /** How many batches are kept (for tests). */
  get size(): number {
    return this.batches.size;
  }
}

type Row = unknown[];

/** The lines of one batch, parsed on demand, and its follow-up index built on demand. */
class Batch {
  /** `[`, then one line per record (all but the last ending in `,`), then `]`. */
  private readonly parts: string[];
  readonly count: number;
  private readonly parsed: (Row | undefined)[];
  private follow: Map<string, number[]> | undefined;
  /** Per needle (or '' for none): the indexes of the attempt lines containing it, ascending. */
  private readonly attempts = new Map<string, Int32Array>();
  /** Set when a query after the one that read it took it from the cache. */
  reused = false;

  constructor(
    readonly first: number,
    text: string,
  ) {
    this.parts = text.split('\n');
    this.count = Math.max(0, this.parts.length - 2);
    this.parsed = new Array(this.count);
  }

  /** Record `i`'s line, possibly with its trailing comma (the text checks below do not mind it). */
  line(i: number): string {
    return this.parts[i + 1] as string;
  }

  /**
   * Indexes of the lines that may be attempts matching `needle` (a JSON string that a
   * matching line must contain; '' for any), ascending; worked out once per needle (a few
   * are kept) but only for a batch that a later query reused from the cache: undefined on a
   * batch's first use, when the caller checks lines one by one ({@link mayMatch}) and stops
   * as soon as its page is full.
   */
  attemptLines(needle: string): Int32Array | undefined {
    if (!this.reused) return undefined;
    let list = this.attempts.get(needle);
    if (list === undefined) {
      const out: number[] = [];
      for (let i = 0; i < this.count; i++) if (this.mayMatch(i, needle)) out.push(i);
      list = Int32Array.from(out);
      if (this.attempts.size >= 8) this.attempts.clear();
      this.attempts.set(needle, list);
    }
    return list;
  }

  /** Cheap checks on the text before parsing: line `i` is an attempt holding `needle`. */
  mayMatch(i: number, needle: string): boolean {
    const line = this.line(i);
    return line.charCodeAt(line.indexOf(',') + 2) === 97 /* "a"ttempt */ && (needle === '' || line.includes(needle));
  }

  row(i: number): Row {
    let r = this.parsed[i];
    if (r === undefined) {
      const line = this.line(i);
      r = this.parsed[i] = JSON.parse(line.endsWith(',') ? line.slice(0, -1) : line) as Row;
    }
    return r;
  }

  /**
   * Indexes of the follow-up records of message `id` (outcomes, approvals, replies to it).
   * Built once per batch without parsing most lines: an outcome or approval line names its
   * message fourth; only lines that may be replies are parsed.
   */
  followUps(id: string): readonly number[] {
    if (this.follow === undefined) {
      const m = new Map<string, number[]>();
      const add = (key: unknown, i: number) => {
        if (typeof key !== 'string') return;
        const list = m.get(key);
        if (list === undefined) m.set(key, [i]);
        else list.push(i);
      };
      for (let i = 0; i < this.count; i++) {
        const line = this.line(i);
        const k = line.indexOf(',') + 2; // first letter of the kind
        const c = line.charCodeAt(k);
        if (c === 111 /* o */ || line.startsWith('approval"', k)) {
          add(messageIdOf(line, k) ?? this.row(i)[COL.message_id], i);
        } else if (line.includes('"reply"')) {
          const r = this.row(i);
          if (r[COL.kind] === 'attempt' && r[COL.type] === 'reply') add(r[COL.in_reply_to], i);
        }
      }
      this.follow = m;
    }
    return this.follow.get(id) ?? NONE;
  }
}

/**
 * Runs one query. `candidates` yields batch first_seqs in the page's order; `cache` was
 * checked ({@link BatchCache.check}) before `candidates` was started.
 */
export function runQuery(stmts: BatchStatements, cache: BatchCache, candidates: Iterable<number>, f: BatchFilter): MessageLogEntry[] {
  // This query's batches stay here even when the cache drops them (a page may span more).
  const mine = new Map<number, Batch>();
  const load = (first: number): Batch | undefined => {
    let b = mine.get(first);
    if (b === undefined) {
      b = cache.get(first);
      if (b !== undefined) b.reused = true;
      else {
        const text = stmts.records.get(first) as string | undefined;
        if (text === undefined) return undefined;
        b = new Batch(first, text);
        cache.set(b);
      }
      mine.set(first, b);
    }
    return b;
  };
  const ascending = f.afterSeq !== undefined;
  // The page: each entry's attempt record and the batch holding it.
  const rows: Row[] = [];
  const batches: number[] = [];
  const agent = f.agentId;
  // A line that does not contain the value as a JSON string cannot match: skip its parse.
  const needle = agent !== undefined ? JSON.stringify(agent) : f.conversationId !== undefined ? JSON.stringify(f.conversationId) : '';
  outer: for (const first of candidates) {
    const b = load(first);
    if (b === undefined) continue;
    const lines = b.attemptLines(needle);
    const n = lines === undefined ? b.count : lines.length;
    for (let k = 0; k < n; k++) {
      const j = ascending ? k : n - 1 - k;
      const i = lines === undefined ? j : (lines[j] as number);
      const seq = first + i;
      if (f.beforeSeq !== undefined && seq >= f.beforeSeq) continue;
      if (f.afterSeq !== undefined && seq <= f.afterSeq) continue;
      if (lines === undefined && !b.mayMatch(i, needle)) continue;
      const r = b.row(i);
      if (r[COL.kind] !== 'attempt') continue;
      if (agent !== undefined && r[COL.sender] !== agent && r[COL.recipient] !== agent) continue;
      if (f.conversationId !== undefined && r[COL.conversation_id] !== f.conversationId) continue;
      if (f.type !== undefined && r[COL.type] !== f.type) continue;
      if (f.decision !== undefined && r[COL.decision] !== f.decision) continue;
      const ts = r[COL.ts] as number;
      if (f.since !== undefined && !(ts >= f.since)) continue;
      if (f.before !== undefined && !(ts < f.before)) continue;
      rows.push(r);
      batches.push(first);
      if (rows.length >= f.limit) break outer;
    }
  }
  if (rows.length === 0) return [];
  // Where the page's follow-ups are: one index lookup for the whole page, each distinct key numbered.
  let from = Infinity;
  for (const b of batches) if (b < from) from = b;
  const conversations = new Map<string, number>();
  const conversationOf = number(rows, COL.conversation_id, conversations);
  const byConversation = lookup(stmts.followConversations, conversations, from);
  let byMessage: (number | number[] | undefined)[] = [];
  let messageOf: number[] | undefined;
  if (cache.hasMessages(stmts)) {
    const messages = new Map<string, number>();
    messageOf = number(rows, COL.message_id, messages);
    byMessage = lookup(stmts.followMessages, messages, from);
  }
  const firsts: number[] = [];
  return rows.map((row, k) => {
    const batch = batches[k] as number;
    firsts.length = 0;
    addFrom(firsts, byConversation[conversationOf[k] as number], batch);
    if (messageOf !== undefined) addFrom(firsts, byMessage[messageOf[k] as number], batch);
    return fold(load, row, firsts, stmts);
  });
}

/** Numbers the distinct values of column `col` of `rows` in `keys` (in order of first use); returns each row's number. */
function number(rows: readonly Row[], col: number, keys: Map<string, number>): number[] {
  // (A plain array: a typed array would put a backing store outside the heap for the GC to track.)
  const of: number[] = [];
  for (const row of rows) {
    const key = row[col] as string;
    let i = keys.get(key);
    if (i === undefined) keys.set(key, (i = keys.size));
    of.push(i);
  }
  return of;
}

/**
 * The batches at or after `from` that an index lists for each of `keys`, by the key's number:
 * one first_seq, or a list when there are more (most keys have one: no array for those).
 */
function lookup(stmt: Database.Statement, keys: Map<string, number>, from: number): (number | number[] | undefined)[] {
  const out: (number | number[] | undefined)[] = [];
  for (const [i, first] of stmt.all(JSON.stringify([...keys.keys()]), from) as [number, number][]) {
    const had = out[i];
    if (had === undefined) out[i] = first;
    else if (typeof had === 'number') out[i] = [had, first];
    else had.push(first);
  }
  return out;
}

/** Adds to `firsts` the batches of `found` (from {@link lookup}) at or after `batch` that it does not hold yet. */
function addFrom(firsts: number[], found: number | number[] | undefined, batch: number): void {
  if (found === undefined) return;
  if (typeof found === 'number') {
    if (found >= batch && !firsts.includes(found)) firsts.push(found);
    return;
  }
  for (const first of found) if (first >= batch && !firsts.includes(first)) firsts.push(first);
}

const NONE: readonly number[] = [];

/** The message id of an outcome or approval line (`[seq,"kind",ts,"id",…`), or undefined when it needs a real parse. */
function messageIdOf(line: string, kindAt: number): string | undefined {
  const open = line.indexOf('"', line.indexOf(',', line.indexOf(',', kindAt) + 1) + 1);
  const close = line.indexOf('"', open + 1);
  if (open < 0 || close < 0) return undefined;
  const id = line.slice(open + 1, close);
  return id.includes('\\') ? undefined : id;
}

function fold(load: (first: number) => Batch | undefined, a: Row, firsts: Iterable<number>, stmts: BatchStatements): MessageLogEntry {
  const seq = a[COL.seq] as number;
  const id = a[COL.message_id] as string;
  const to = a[COL.recipient] as string;
  let outcomeSeq = -1;
  let outcome: Row | undefined;
  let approvalSeq = -1;
  let approval: Row | undefined;
  let replySeq = -1;
  for (const first of firsts) {
    const b = load(first);
    if (b === undefined) continue;
    for (const i of b.followUps(id)) {
      const s = first + i;
      if (s <= seq) continue;
      const r = b.row(i);
      const kind = r[COL.kind];
      if (kind === 'outcome') {
        if (r[COL.recipient] === to && s > outcomeSeq) [outcomeSeq, outcome] = [s, r];
      } else if (kind === 'approval') {
        if (r[COL.recipient] === to && s > approvalSeq) [approvalSeq, approval] = [s, r];
      } else if (r[COL.sender] === to && r[COL.decision] === 'allowed' && r[COL.in_reply_to] === id && s > replySeq) {
        replySeq = s;
      }
    }
  }
  // A refused repeat of a message already admitted (a peer replaying an id) shares the
  // original's id: the follow-ups after it are the original's, not its own.
  if (a[COL.decision] === 'denied' && (outcome !== undefined || approval !== undefined || replySeq >= 0) && repeatsAdmitted(load, a, stmts)) {
    outcome = approval = undefined;
    outcomeSeq = replySeq = -1;
  }
  // The latest of: the reply that answered it, its latest outcome record, its initial outcome.
  const replied = replySeq > outcomeSeq;
  const finalOutcome = (replied ? 'replied' : ((outcome?.[COL.outcome] as AuditOutcome | undefined) ?? a[COL.outcome])) as AuditOutcome | null;
  const code = replied ? a[COL.code] : (outcome?.[COL.code] ?? a[COL.code]);
  const e = {
    seq,
    messageId: id,
    ts: a[COL.ts],
    from: a[COL.sender],
    to,
    type: a[COL.type],
    intent: a[COL.intent],
    payloadHash: a[COL.payload_hash],
    payloadBytes: a[COL.payload_bytes],
    decision: a[COL.decision],
  } as MessageLogEntry;
  if (a[COL.reason] != null) e.reason = a[COL.reason] as string;
  if (a[COL.rule] != null) e.rule = a[COL.rule] as string;
  e.policyVersion = a[COL.policy_version] as number;
  if (code != null) e.code = code as MessageLogEntry['code'] & string;
  if (approval !== undefined) {
    e.approval = approval[COL.approval] as MessageLogEntry['approval'] & string;
    if (approval[COL.decided_by] != null) e.decidedBy = approval[COL.decided_by] as string;
  }
  if (finalOutcome != null) e.outcome = finalOutcome;
  e.conversationId = a[COL.conversation_id] as string;
  if (a[COL.in_reply_to] != null) e.inReplyTo = a[COL.in_reply_to] as string;
  if (a[COL.causation_id] != null) e.causationId = a[COL.causation_id] as string;
  const tally = a[COL.note]; // an attempt's note is only ever a refusal summary's tally
  if (tally != null && typeof tally === 'object') e.refusals = copySummary(tally as RefusalSummary);
  const truncated = a[COL.truncated];
  if (truncated != null) e.truncated = { ...(truncated as Record<string, number>) };
  if (a[COL.node] != null) e.node = a[COL.node] as string;
  if (a[COL.peer_node] != null) e.peerNode = a[COL.peer_node] as string;
  const proof = a[COL.peer_proof];
  if (proof === UNVERIFIED) e.unverified = true;
  else if (typeof proof === 'string') e.proof = proof;
  return e;
}

function copySummary(t: RefusalSummary): RefusalSummary {
  return { count: t.count, first: t.first, last: t.last, codes: { ...t.codes } };
}

/**
 * True when an attempt of the same message to the same recipient, not refused, comes before
 * `a` in its conversation: `a` is a repeat. Only asked for a refused attempt that has
 * follow-ups (rare); it reads the conversation's earlier batches newest first, where the
 * original (sent shortly before its repeat) is, and stops at it.
 */
function repeatsAdmitted(load: (first: number) => Batch | undefined, a: Row, stmts: BatchStatements): boolean {
  const conversation = a[COL.conversation_id];
  if (typeof conversation !== 'string') return false;
  const seq = a[COL.seq] as number;
  const id = a[COL.message_id] as string;
  const to = a[COL.recipient];
  const needle = JSON.stringify(id);
  for (const first of stmts.conversationUpTo.all(conversation, seq) as number[]) {
    const b = load(first);
    if (b === undefined) continue;
    for (let i = 0; i < b.count && first + i < seq; i++) {
      if (!b.line(i).includes(needle)) continue;
      const r = b.row(i);
      if (r[COL.kind] === 'attempt' && r[COL.message_id] === id && r[COL.recipient] === to && r[COL.decision] !== 'denied') return true;
    }
  }
  return false;
}
