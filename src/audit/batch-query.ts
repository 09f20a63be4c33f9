/**
 * getMessageLog over batch storage (schema v3). Candidate batches come from an index (the
 * agent's slices, the conversation's batches, or all batches), in seq order; their attempt
 * records are matched against the filter until the page is full; then each entry is folded
 * with its follow-ups (latest outcome, latest approval, the reply that answered it), which
 * live in batches of its conversation at or after its own.
 */
import type Database from 'better-sqlite3';
import { COL } from './migrations.js';
import type { AuditOutcome, MessageLogEntry, RefusalSummary } from './types.js';

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
  /** (conversations as a JSON array, from) -> [conversation, first_seq]. */
  readonly followConversations: Database.Statement;
  /** (messages as a JSON array, from) -> [message, first_seq]: follow-ups stored without a conversation. */
  readonly followMessages: Database.Statement;
  /** () -> 1 when any record without a conversation is indexed (else the message lookup is skipped). */
  readonly anyMessages: Database.Statement;
  /** (conversation, seq) -> first_seq of each batch of the conversation starting at or before seq, oldest first. */
  readonly conversationUpTo: Database.Statement;
}

type Row = unknown[];

/** The lines of one batch, parsed on demand, and its follow-up index built on demand. */
class Batch {
  /** `[`, then one line per record (all but the last ending in `,`), then `]`. */
  private readonly parts: string[];
  readonly count: number;
  private readonly parsed: (Row | undefined)[];
  private follow: Map<string, number[]> | undefined;

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
    return this.follow.get(id) ?? [];
  }
}

/** Runs one query. `candidates` yields batch first_seqs in the page's order. */
export function runQuery(stmts: BatchStatements, candidates: Iterable<number>, f: BatchFilter): MessageLogEntry[] {
  const cache = new Map<number, Batch>();
  const load = (first: number): Batch | undefined => {
    let b = cache.get(first);
    if (b === undefined) {
      const text = stmts.records.get(first) as string | undefined;
      if (text === undefined) return undefined;
      b = new Batch(first, text);
      cache.set(first, b);
    }
    return b;
  };
  const ascending = f.afterSeq !== undefined;
  const found: { row: Row; batch: number }[] = [];
  const agent = f.agentId;
  // A line that does not contain the value as a JSON string cannot match: skip its parse.
  const needle = agent !== undefined ? JSON.stringify(agent) : f.conversationId !== undefined ? JSON.stringify(f.conversationId) : undefined;
  outer: for (const first of candidates) {
    const b = load(first);
    if (b === undefined) continue;
    const n = b.count;
    for (let k = 0; k < n; k++) {
      const i = ascending ? k : n - 1 - k;
      const seq = first + i;
      if (f.beforeSeq !== undefined && seq >= f.beforeSeq) continue;
      if (f.afterSeq !== undefined && seq <= f.afterSeq) continue;
      const line = b.line(i);
      // Cheap checks on the text before parsing: attempts only.
      if (line.charCodeAt(line.indexOf(',') + 2) !== 97 /* "a"ttempt */) continue;
      if (needle !== undefined && !line.includes(needle)) continue;
      const r = b.row(i);
      if (r[COL.kind] !== 'attempt') continue;
      if (agent !== undefined && r[COL.sender] !== agent && r[COL.recipient] !== agent) continue;
      if (f.conversationId !== undefined && r[COL.conversation_id] !== f.conversationId) continue;
      if (f.type !== undefined && r[COL.type] !== f.type) continue;
      if (f.decision !== undefined && r[COL.decision] !== f.decision) continue;
      const ts = r[COL.ts] as number;
      if (f.since !== undefined && !(ts >= f.since)) continue;
      if (f.before !== undefined && !(ts < f.before)) continue;
      found.push({ row: r, batch: first });
      if (found.length >= f.limit) break outer;
    }
  }
  if (found.length === 0) return [];
  // Where the page's follow-ups are: one index lookup for the whole page.
  let from = Infinity;
  const conversations = new Set<string>();
  const messages = new Set<string>();
  for (const { row, batch } of found) {
    if (batch < from) from = batch;
    conversations.add(row[COL.conversation_id] as string);
    messages.add(row[COL.message_id] as string);
  }
  const where = new Map<string, number[]>();
  const note = (key: string, first: number) => {
    const list = where.get(key);
    if (list === undefined) where.set(key, [first]);
    else list.push(first);
  };
  for (const [c, first] of stmts.followConversations.all(JSON.stringify([...conversations]), from) as [string, number][]) note(`c:${c}`, first);
  if (stmts.anyMessages.get() !== undefined) {
    for (const [m, first] of stmts.followMessages.all(JSON.stringify([...messages]), from) as [string, number][]) note(`m:${m}`, first);
  }
  return found.map(({ row, batch }) => {
    const firsts = new Set<number>();
    for (const first of where.get(`c:${row[COL.conversation_id] as string}`) ?? []) if (first >= batch) firsts.add(first);
    for (const first of where.get(`m:${row[COL.message_id] as string}`) ?? []) if (first >= batch) firsts.add(first);
    return fold(load, row, firsts, stmts);
  });
}

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
  return e;
}

function copySummary(t: RefusalSummary): RefusalSummary {
  return { count: t.count, first: t.first, last: t.last, codes: { ...t.codes } };
}

/**
 * True when an attempt of the same message to the same recipient, not refused, comes before
 * `a` in its conversation: `a` is a repeat. Only asked for a refused attempt that has
 * follow-ups (rare), so it may read the conversation's earlier batches.
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
