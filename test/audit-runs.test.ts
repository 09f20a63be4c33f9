// The runs of a file log (src/audit/runs.ts): which earlier runs count as ended, and what a
// crashed run left to be marked interrupted.
import { spawnSync } from 'node:child_process';
import { hostname } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { SqliteAuditLog } from '../src/audit/index.js';
import { Orchestrator } from '../src/index.js';
import { mayBeAlive, type Run } from '../src/audit/runs.js';
import { attemptMaker, tempDirPerTest } from './support/audit-records.js';

const dir = tempDirPerTest('switchboard-runs-');

/** The pid of a process that has exited (its pid is free, barring reuse in the meantime). */
function deadPid(): number {
  return Number(spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' }).stdout);
}

const run = (over: Partial<Run>): Run => ({ id: 'r', pid: process.pid, host: hostname(), from: 1, at: Date.now(), ...over });

describe('mayBeAlive()', () => {
  it('counts this process, a live process of this host and any run of another host as alive', () => {
    expect(mayBeAlive(run({}))).toBe(true);
    expect(mayBeAlive(run({ pid: process.ppid }))).toBe(true);
    expect(mayBeAlive(run({ host: `${hostname()}-elsewhere`, pid: deadPid() }))).toBe(true);
  });

  it('counts a run of this host whose process is gone, or of this pid before this process started, as ended', () => {
    expect(mayBeAlive(run({ pid: deadPid() }))).toBe(false);
    expect(mayBeAlive(run({ at: Date.now() - process.uptime() * 1000 - 60_000 }))).toBe(false);
  });
});

describe('a file log opened after a crashed run', () => {
  it('marks interrupted an ask held across an earlier clean close and approved in the crashed run', () => {
    const path = join(dir.path, 'held.db');
    const attempt = attemptMaker();
    const held = attempt({ decision: 'pending' });
    const first = new SqliteAuditLog({ path });
    first.append([held, attempt({ type: 'notify', decision: 'pending' })]);
    first.close();
    const second = new SqliteAuditLog({ path });
    const from = second.head().seq + 1;
    second.append([
      { kind: 'approval', ts: 2, messageId: held.messageId, to: held.to, from: held.from, conversationId: held.conversationId, approval: 'approved', policyVersion: 1 },
      { kind: 'outcome', ts: 3, messageId: held.messageId, to: held.to, from: held.from, conversationId: held.conversationId, outcome: 'delivered' },
    ]);
    second.close();
    // As if the second run had crashed: its run is still listed, and its process is gone.
    const db = new Database(path);
    db.prepare("INSERT OR REPLACE INTO audit_meta (key, value) VALUES ('runs', ?)").run(JSON.stringify([run({ pid: deadPid(), from })]));
    db.close();
    const third = new SqliteAuditLog({ path });
    const entries = third.query({ limit: 10 });
    expect(entries.find((e) => e.messageId === held.messageId)?.outcome).toBe('interrupted');
    expect(entries.filter((e) => e.outcome === 'interrupted')).toHaveLength(1); // the notify is not a request
    expect(third.verify().ok).toBe(true);
    third.close();
  });

  it('leaves an ask approved in the crashed run and still waiting for its recipient held, not interrupted', () => {
    const path = join(dir.path, 'approved-waiting.db');
    const attempt = attemptMaker();
    const held = attempt({ decision: 'pending' });
    const first = new SqliteAuditLog({ path });
    first.append([held]);
    first.close();
    const second = new SqliteAuditLog({ path });
    const from = second.head().seq + 1;
    second.append([{ kind: 'approval', ts: 2, messageId: held.messageId, to: held.to, from: held.from, conversationId: held.conversationId, approval: 'approved', policyVersion: 1 }]);
    second.close();
    // As the durable approvals leave it: approved, its copy kept until the recipient registers.
    const db = new Database(path);
    db.prepare('INSERT INTO approval_hold (seq, message_id, recipient, requested_at, expires_at, rule, trust, approved, envelope, payload) VALUES (1, ?, ?, 1, ?, NULL, 0, 1, ?, ?)').run(
      held.messageId, held.to, Date.now() + 3_600_000, '{}', '{}',
    );
    db.prepare("INSERT OR REPLACE INTO audit_meta (key, value) VALUES ('runs', ?)").run(JSON.stringify([run({ pid: deadPid(), from })]));
    db.close();
    const third = new SqliteAuditLog({ path });
    expect(third.query({ limit: 10 }).some((e) => e.outcome === 'interrupted')).toBe(false);
    third.close();
  });
});

describe('Orchestrator#result() of an interrupted message', () => {
  it('rejects with CLOSED, naming the process that stopped', async () => {
    const path = join(dir.path, 'interrupted.db');
    const attempt = attemptMaker();
    const ask = attempt();
    const first = new SqliteAuditLog({ path });
    const from = first.head().seq + 1;
    first.append([ask]);
    first.close();
    const db = new Database(path);
    db.prepare("INSERT OR REPLACE INTO audit_meta (key, value) VALUES ('runs', ?)").run(JSON.stringify([run({ pid: deadPid(), from })]));
    db.close();
    const bus = new Orchestrator({ audit: { path } });
    try {
      const error = await bus.result(ask.messageId).then(() => undefined, (e: unknown) => e);
      expect(error).toMatchObject({ code: 'CLOSED', messageId: ask.messageId });
      expect((error as Error).message).toMatch(/stopped without closing/);
    } finally {
      await bus.close();
    }
  });
});
