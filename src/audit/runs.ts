/**
 * Runs of a file log, and the requests a crashed run left without an outcome.
 *
 * Every writer that opens a file registers its run in `audit_meta` (`runs`: process id,
 * host, the first seq it may write) and removes it at `close()`. A run still listed when the
 * file is opened again, whose process is gone, ended without closing (a crash, a kill, a
 * power loss): its asks and delegates that have no outcome yet, and are not held for a
 * human, can never get one, and {@link interruptedSince} finds them so the opener records
 * them `interrupted` (one batch, in the chain). A run that may still be alive (this very
 * process, another process on this host that exists, or any process of another host, which
 * cannot be checked from here) is left alone, and so is every dead one while another run is
 * alive: their records interleave, and a live run's pending asks must not be marked.
 */
import { hostname } from 'node:os';
import type Database from 'better-sqlite3';
import { COL } from './migrations.js';
import type { OutcomeRecord } from './types.js';

/** One writer of the file, as registered in `audit_meta`. */
export interface Run {
  readonly id: string;
  readonly pid: number;
  readonly host: string;
  /** The first seq this run could have written. */
  readonly from: number;
  /** Epoch ms of the open. */
  readonly at: number;
}

export const META_RUNS = 'runs';

/** This process's new run, starting after `headSeq`. */
export function newRun(headSeq: number): Run {
  return { id: `${process.pid}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`, pid: process.pid, host: hostname(), from: headSeq + 1, at: Date.now() };
}

/** The runs listed in the metadata (a malformed list reads as none: it is advisory, not evidence). */
export function parseRuns(value: string | undefined): Run[] {
  if (value === undefined) return [];
  try {
    const list = JSON.parse(value) as unknown;
    if (!Array.isArray(list)) return [];
    return list.filter(
      (r): r is Run =>
        typeof r === 'object' && r !== null && typeof r.id === 'string' && Number.isSafeInteger(r.pid) && typeof r.host === 'string' && Number.isSafeInteger(r.from) && Number.isFinite(r.at),
    );
  } catch {
    return [];
  }
}

/**
 * False only when the run's process is known to be gone: a run of this host whose process
 * id no process has, or that this very process id registered before this process started
 * (a restarted container often runs as the same pid).
 */
export function mayBeAlive(run: Run): boolean {
  if (run.host !== hostname()) return true;
  if (run.pid === process.pid) return run.at >= Date.now() - process.uptime() * 1000 - 1000;
  try {
    process.kill(run.pid, 0);
    return true;
  } catch (e) {
    return (e as { code?: unknown }).code === 'EPERM'; // exists, owned by someone else
  }
}

interface Open {
  readonly id: string;
  readonly to: string;
  readonly from: unknown;
  readonly conversationId: unknown;
  readonly node: unknown;
  readonly peerNode: unknown;
  held: boolean;
}

/**
 * The `interrupted` outcome records for every ask and delegate attempted at or after seq
 * `from` that has no outcome (replied, failed, expired, cancelled…) and is not held for
 * approval (a `pending` attempt with no approval decision, or one still in `approval_hold`:
 * approved and waiting for its recipient), timestamped `now`.
 */
export function interruptedSince(db: Database.Database, from: number, now: number, why: string): OutcomeRecord[] {
  const open = new Map<string, Open>();
  // Released (approved, or delivered after approval) in the range, attempted before it: a
  // message held across a restart. Its attempt is looked up at the end unless it ended.
  const earlier = new Map<string, { id: string; to: string; conversationId: unknown }>();
  const keyOf = (id: unknown, to: unknown) => `${String(id)}\n${String(to)}`;
  const start = (db.prepare('SELECT max(first_seq) FROM audit_batch WHERE first_seq <= ?').pluck().get(from) as number | null) ?? from;
  const batches = db.prepare('SELECT first_seq, records FROM audit_batch WHERE first_seq >= ? ORDER BY first_seq').raw().iterate(start) as IterableIterator<[number, string]>;
  const release = (r: unknown[]) => {
    const key = keyOf(r[COL.message_id], r[COL.recipient]);
    const o = open.get(key);
    if (o !== undefined) o.held = false;
    else earlier.set(key, { id: r[COL.message_id] as string, to: r[COL.recipient] as string, conversationId: r[COL.conversation_id] });
  };
  const end = (key: string) => {
    open.delete(key);
    earlier.delete(key);
  };
  for (const [first, text] of batches) {
    const lines = text.split('\n');
    for (let i = 1; i < lines.length - 1; i++) {
      if (first + i - 1 < from) continue;
      const r = parseLine(lines[i]!);
      const kind = r[COL.kind];
      if (kind === 'attempt') {
        const type = r[COL.type];
        const decision = r[COL.decision];
        if ((type === 'ask' || type === 'delegate') && (decision === 'allowed' || decision === 'pending')) {
          const id = r[COL.message_id] as string;
          const to = r[COL.recipient] as string;
          open.set(keyOf(id, to), { id, to, from: r[COL.sender], conversationId: r[COL.conversation_id], node: r[COL.node], peerNode: r[COL.peer_node], held: decision === 'pending' });
        } else if (type === 'reply' && decision === 'allowed') {
          end(keyOf(r[COL.in_reply_to], r[COL.sender]));
        }
      } else if (kind === 'outcome') {
        // 'delivered' after an approval: on its way, not ended.
        if (r[COL.outcome] === 'delivered') release(r);
        else end(keyOf(r[COL.message_id], r[COL.recipient]));
      } else if (kind === 'approval' && r[COL.approval] === 'approved') {
        release(r);
      }
    }
  }
  for (const [key, e] of earlier) {
    const attempt = findAttempt(db, e.id, e.to, e.conversationId, start);
    if (attempt === undefined) continue;
    const type = attempt[COL.type];
    if (type !== 'ask' && type !== 'delegate') continue;
    open.set(key, { id: e.id, to: e.to, from: attempt[COL.sender], conversationId: attempt[COL.conversation_id], node: attempt[COL.node], peerNode: attempt[COL.peer_node], held: false });
  }
  // A durable hold (decided or not) is still the bus's to deliver: never interrupted.
  const stillHeld = new Set(
    (db.prepare('SELECT message_id, recipient FROM approval_hold').raw().all() as [string, string][]).map(([id, to]) => keyOf(id, to)),
  );
  const out: OutcomeRecord[] = [];
  for (const [key, o] of open) {
    if (o.held || stillHeld.has(key)) continue;
    out.push({
      kind: 'outcome',
      ts: now,
      messageId: o.id,
      to: o.to,
      outcome: 'interrupted',
      reason: why,
      ...(typeof o.from === 'string' ? { from: o.from } : {}),
      ...(typeof o.conversationId === 'string' ? { conversationId: o.conversationId } : {}),
      ...(typeof o.node === 'string' ? { node: o.node } : {}),
      ...(typeof o.peerNode === 'string' ? { peerNode: o.peerNode } : {}),
    });
  }
  return out;
}

function parseLine(line: string): unknown[] {
  return JSON.parse(line.endsWith(',') ? line.slice(0, -1) : line) as unknown[];
}

/** The attempt of message `id` to `to`, in its conversation's batches before `before`. */
function findAttempt(db: Database.Database, id: string, to: string, conversationId: unknown, before: number): unknown[] | undefined {
  if (typeof conversationId !== 'string') return undefined;
  const needle = JSON.stringify(id);
  const firsts = db.prepare('SELECT first_seq FROM audit_conversation WHERE conversation_id = ? AND first_seq < ? ORDER BY first_seq DESC').pluck().all(conversationId, before) as number[];
  const records = db.prepare('SELECT records FROM audit_batch WHERE first_seq = ?').pluck();
  for (const first of firsts) {
    const lines = ((records.get(first) as string | undefined) ?? '').split('\n');
    for (let i = 1; i < lines.length - 1; i++) {
      if (!lines[i]!.includes(needle)) continue;
      const r = parseLine(lines[i]!);
      if (r[COL.kind] === 'attempt' && r[COL.message_id] === id && r[COL.recipient] === to) return r;
    }
  }
  return undefined;
}
