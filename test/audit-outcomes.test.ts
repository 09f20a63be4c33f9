// Every outcome recorded: at close, after a failed commit, after a crash.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { MAX_HELD_RECORDS } from '../src/group-commit.js';
import { main } from '../src/cli/main.js';
import { Orchestrator, SqliteAuditLog, type MessageLogEntry } from '../src/index.js';
import { tempDirPerTest } from './support/audit-records.js';
import { closeBuses, deferred, makeBus } from './support/helpers.js';

const dir = tempDirPerTest('switchboard-outcomes-');
afterEach(closeBuses);
afterEach(() => vi.restoreAllMocks());

/** The log of a closed bus's file, read as the CLI would. */
function entriesOf(path: string, agentId?: string): MessageLogEntry[] {
  const log = new SqliteAuditLog({ path, readonly: true });
  try {
    return log.query({ limit: 1000, ...(agentId !== undefined ? { agentId } : {}) });
  } finally {
    log.close();
  }
}

describe('Orchestrator#close()', () => {
  for (const worker of [false, true]) {
    it(`records cancelled (CLOSED) for notifies admitted but not yet run${worker ? ' (worker log)' : ''}`, async () => {
      const path = join(dir.path, 'close.db');
      const bus = new Orchestrator({ audit: { path, worker }, policies: [{ from: 'a', to: 'b', allow: ['notify'] }], limits: { rate: false }, timeouts: { closeMs: 0 } });
      const started = deferred();
      let runs = 0;
      bus.register('b', { handlers: { note: () => ((runs++, started.resolve()), new Promise(() => {})) } });
      const a = bus.register('a');
      for (let i = 0; i < 4; i++) await a.notify('note', { i }, { to: ['b'] });
      await started.promise;
      await bus.close();
      expect(runs).toBe(1);
      const notes = entriesOf(path).filter((e) => e.type === 'notify');
      expect(notes).toHaveLength(4);
      expect(notes.filter((e) => e.outcome === 'delivered')).toHaveLength(1); // the one that ran
      const cancelled = notes.filter((e) => e.outcome === 'cancelled');
      expect(cancelled).toHaveLength(3);
      for (const e of cancelled) expect(e.code).toBe('CLOSED');
    });
  }
});

describe('outcome rows whose commit failed', () => {
  for (const worker of [false, true]) {
    it(`are held and written once the log works again: asks that expired or were answered while the disk refused writes do not stay delivered${worker ? ' (worker log)' : ''}`, async () => {
      const path = join(dir.path, 'held.db');
      const bus = makeBus({ audit: { path, worker, busyTimeoutMs: 0 }, policies: [{ from: 'a', to: 'b', allow: ['ask'] }], limits: { rate: false } });
      const release = deferred();
      bus.register('b', { concurrency: 200, handlers: { slow: () => release.promise.then(() => 'done'), never: () => new Promise(() => {}) } });
      const a = bus.register('a');
      const answered = Array.from({ length: 100 }, () => a.ask('b', 'slow', {}, { timeoutMs: 60_000 }).then(() => 'ok', (e: Error & { code?: string }) => e.code));
      const expiring = Array.from({ length: 20 }, () => a.ask('b', 'never', {}, { timeoutMs: 30 }).then(() => 'ok', (e: Error & { code?: string }) => e.code));
      await bus.flush();
      // Another connection holds the write lock: every commit fails, as on a full disk.
      const other = new Database(path);
      other.exec('BEGIN IMMEDIATE');
      release.resolve();
      expect(new Set(await Promise.all(answered))).toEqual(new Set(['AUDIT_UNAVAILABLE']));
      expect(new Set(await Promise.all(expiring))).toEqual(new Set(['TIMEOUT']));
      other.exec('ROLLBACK');
      other.close();
      // The log works again: the next write (or the retry timer) writes what was held.
      await a.ask('b', 'never', {}, { timeoutMs: 1 }).catch(() => {});
      await bus.flush();
      const asks = bus.getMessageLog({ agentId: 'a', type: 'ask', limit: 1000 });
      const slow = asks.filter((e) => e.intent === 'slow');
      const never = asks.filter((e) => e.intent === 'never');
      expect(slow).toHaveLength(100);
      for (const e of slow) expect([e.outcome, e.code]).toEqual(['failed', 'AUDIT_UNAVAILABLE']);
      for (const e of never) expect(e.outcome).toBe('expired');
      expect(bus.verifyAuditLog().ok).toBe(true);
    });
  }
});

describe(`records nobody waits for, beyond ${MAX_HELD_RECORDS} while the log fails`, () => {
  for (const worker of [false, true]) {
    it(`keeps exactly the newest ${MAX_HELD_RECORDS}, writes them in order once the log works, warns once naming how many were dropped, and the log verifies${worker ? ' (worker log)' : ''}`, { timeout: 60_000 }, async () => {
      const path = join(dir.path, 'bound.db');
      // The sender's rate is so high that each refusal is a row of its own (no summary).
      const bus = makeBus({ audit: { path, worker, busyTimeoutMs: 0 }, limits: { rate: { perSecond: 1e9, burst: 1e9 } } });
      bus.register('b');
      const a = bus.register('a');
      const refused: string[] = [];
      bus.events.on('message:denied', ({ attempt }) => void refused.push(attempt.id));
      await a.ask('b', 'q', {}).catch(() => {}); // the file exists, and its first row
      await bus.flush();
      const warnings: Array<[string, string | undefined]> = [];
      vi.spyOn(process, 'emitWarning').mockImplementation(((w: string, o?: { code?: string }) => void warnings.push([w, o?.code])) as typeof process.emitWarning);
      const other = new Database(path);
      other.exec('BEGIN IMMEDIATE'); // every commit fails, as on a full disk
      const extra = 140; // (10,000 + 140) / 5 refusals a turn
      // In several turns, so that several batches fail and are held one after the other.
      for (let turn = 0; turn < 5; turn++) {
        for (let i = 0; i < (MAX_HELD_RECORDS + extra) / 5; i++) await a.ask('b', 'q', { turn, i }).catch(() => {});
        await bus.flush();
      }
      expect(refused).toHaveLength(1 + MAX_HELD_RECORDS + extra);
      expect(warnings.filter(([, code]) => code === 'SWITCHBOARD_AUDIT_LOST')).toEqual([]); // nothing said before the log works: it may still
      other.exec('ROLLBACK');
      other.close();
      await bus.flush();
      const lost = warnings.filter(([, code]) => code === 'SWITCHBOARD_AUDIT_LOST').map(([w]) => w);
      expect(lost).toEqual([`agent-switchboard: the audit log works again; ${extra} audit records held while it failed were dropped (more than ${MAX_HELD_RECORDS} waited)`]);
      // The file, read apart from the bus: the first refusal, then exactly the newest held, in order.
      const reader = new Database(path, { readonly: true });
      const rows = reader.prepare("SELECT message_id FROM audit_records WHERE kind = 'attempt' ORDER BY seq").pluck().all() as string[];
      reader.close();
      expect(rows).toEqual([refused[0], ...refused.slice(1 + extra)]);
      expect(bus.verifyAuditLog()).toMatchObject({ ok: true });
      await bus.close();
      expect(warnings.filter(([, code]) => code === 'SWITCHBOARD_AUDIT_LOST')).toHaveLength(1); // close() has nothing more to say
    });
  }
});

/** Runs the child until it printed its ids, then SIGKILLs it. */
function runAndKill(path: string, worker: boolean): Promise<Record<string, string[]>> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'fixtures', 'interrupt-child.ts'), path, worker ? 'worker' : 'inline'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    proc.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString('utf8');
      if (out.includes('\n')) proc.kill('SIGKILL');
    });
    proc.stderr.on('data', (chunk: Buffer) => (err += chunk.toString('utf8')));
    proc.on('error', reject);
    proc.on('exit', (_code, signal) => {
      if (signal !== 'SIGKILL' || !out.includes('\n')) return reject(new Error(`child exited on its own: ${err}`));
      resolve(JSON.parse(out.slice(0, out.indexOf('\n'))) as Record<string, string[]>);
    });
  });
}

describe('a file log opened after a crash', () => {
  for (const worker of [false, true]) {
    it(`records interrupted for every ask and delegate of the crashed run with no outcome, not for one held for approval${worker ? ' (worker log)' : ''}`, { timeout: 30_000 }, async () => {
      const path = join(dir.path, 'crash.db');
      const ids = await runAndKill(path, worker);
      const before = entriesOf(path, 'a');
      expect(before.filter((e) => e.outcome === 'interrupted')).toEqual([]);
      const bus = makeBus({ audit: { path, worker } });
      const head = bus.auditHead();
      const after = bus.getMessageLog({ agentId: 'a', limit: 100 });
      const outcome = (id: string) => after.find((e) => e.messageId === id && e.type !== 'reply')?.outcome;
      for (const id of ids.stall!) expect(outcome(id), id).toBe('interrupted');
      expect(outcome(ids.answer![0]!)).toBe('replied');
      expect(outcome(ids.note![0]!)).toBe('delivered');
      const held = after.find((e) => e.messageId === ids.open![0]);
      expect(held).toMatchObject({ decision: 'pending' });
      expect(held?.outcome).toBeUndefined();
      expect(bus.verifyAuditLog({ head })).toMatchObject({ ok: true });
      // One batch: the interrupted rows are consecutive, at the end.
      const rows = new Database(path, { readonly: true }).prepare("SELECT seq FROM audit_records WHERE kind = 'outcome' AND outcome = 'interrupted' ORDER BY seq").pluck().all() as number[];
      expect(rows).toHaveLength(3);
      expect(rows[2]! - rows[0]!).toBe(2);
      await bus.close();
      // Opened again after a clean close: nothing more is marked.
      const again = makeBus({ audit: { path } });
      expect(again.getMessageLog({ agentId: 'a', limit: 100 }).filter((e) => e.outcome === 'interrupted')).toHaveLength(3);
      await again.close();
      // The CLI shows it, in the table and in export.
      const out: string[] = [];
      expect(main(['log', path, '--agent', 'a'], { out: (l) => out.push(l), err: (l) => out.push(l), env: {} })).toBe(0);
      expect(out.filter((l) => l.includes('interrupted'))).toHaveLength(3);
      const exported: string[] = [];
      expect(main(['export', path], { out: (l) => exported.push(l), err: (l) => exported.push(l), env: {} })).toBe(0);
      expect(exported.map((l) => JSON.parse(l) as MessageLogEntry).filter((e) => e.outcome === 'interrupted').map((e) => e.messageId).sort()).toEqual([...ids.stall!].sort());
    });
  }
});
