import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { SqliteAuditLog } from '../src/index.js';

const child = join(import.meta.dirname, 'fixtures', 'crash-child.ts');
const dir = mkdtempSync(join(tmpdir(), 'switchboard-crash-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Runs the child until it has shown `minSeen` deliveries plus a random extra delay, then SIGKILLs it. */
function runAndKill(db: string, killAfterMs: number): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, ['--import', 'tsx', child, db], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    let timer: NodeJS.Timeout | undefined;
    proc.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString('utf8');
      if (timer === undefined && out.includes('ready\n')) timer = setTimeout(() => proc.kill('SIGKILL'), killAfterMs);
    });
    proc.stderr.on('data', (chunk: Buffer) => (err += chunk.toString('utf8')));
    proc.on('error', reject);
    proc.on('exit', (_code, signal) => {
      if (signal !== 'SIGKILL') return reject(new Error(`child exited without being killed: ${err}`));
      // The last line may be cut mid-write by the kill: keep only complete lines.
      const lines = out.split('\n').slice(0, -1);
      resolve(lines.filter((line) => line !== 'ready'));
    });
  });
}

/** The set of message ids with a committed attempt row. */
function committedIds(db: string): Set<string> {
  const conn = new Database(db, { readonly: true });
  try {
    const rows = conn.prepare(`SELECT message_id AS id FROM audit_records WHERE kind = 'attempt'`).all() as { id: string }[];
    return new Set(rows.map((r) => r.id));
  } finally {
    conn.close();
  }
}

function integrity(db: string): string {
  const conn = new Database(db, { readonly: true });
  try {
    return (conn.pragma('integrity_check', { simple: true }) as string) ?? '';
  } finally {
    conn.close();
  }
}

// Modest here; `npm run crash-soak [kills]` (scripts/crash-soak.ts) kills many more times.
const KILLS = Number(process.env.CRASH_KILLS ?? 4);

describe('audit log under SIGKILL', () => {
  it(`keeps a committed row for every message the recipient saw, across ${KILLS} kills at random moments`, { timeout: 60_000 + KILLS * 5_000 }, async () => {
    const db = join(dir, 'crash.db');
    let seenTotal = 0;
    for (let i = 0; i < KILLS; i++) {
      const seen = await runAndKill(db, 150 + Math.floor(Math.random() * 400));
      seenTotal += seen.length;
      const committed = committedIds(db);
      const missing = seen.filter((id) => !committed.has(id));
      expect(missing, `kill ${i}: delivered without a committed row`).toEqual([]);
      expect(integrity(db)).toBe('ok');
      const log = new SqliteAuditLog({ path: db });
      const verified = log.verify();
      log.close();
      expect(verified.ok, `kill ${i}: chain broken at ${verified.firstBad}`).toBe(true);
    }
    expect(seenTotal).toBeGreaterThan(0);
  });
});
