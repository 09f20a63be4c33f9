// The runs of a file log (src/audit/runs.ts): which earlier runs count as ended, and what a
// crashed run left to be marked interrupted.
import { spawnSync } from 'node:child_process';
import { hostname } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { SqliteAuditLog } from '../src/audit/index.js';
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
});
