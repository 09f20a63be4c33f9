// verify() walks the stored bytes of each batch (src/audit/verify-batches.ts): it must accept
// every log the writer produces (multi-byte text, lines longer than its first buffer, many
// batches, a keyed chain) and name the exact row or batch that was changed.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SqliteAuditLog, type AttemptRecord } from '../src/audit/index.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'switchboard-verify-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

let n = 0;
const attempt = (over: Partial<AttemptRecord> = {}): AttemptRecord => ({
  kind: 'attempt',
  ts: 1_700_000_000_000 + n,
  messageId: `m${++n}`,
  from: 'a',
  to: 'b',
  type: 'ask',
  intent: 'work',
  payloadHash: 'f'.repeat(64),
  payloadBytes: 10,
  decision: 'allowed',
  policyVersion: 1,
  conversationId: `c${n}`,
  ...over,
});

/** Runs `sql` on the file with a connection of its own (as someone with write access would). */
function edit(path: string, sql: string): void {
  const db = new Database(path);
  db.exec(sql);
  db.close();
}

describe('verify over stored bytes', () => {
  it('accepts multi-byte text and a line longer than its first buffer, and names the row whose multi-byte text was changed', () => {
    const path = join(dir, 'utf8.db');
    const log = new SqliteAuditLog({ path });
    const wide = '😀'.repeat(512); // 1024 UTF-16 units, 2 KB of UTF-8 per field
    log.append([attempt({ intent: 'résumé' }), attempt({ reason: wide, intent: `x${wide}`.slice(0, 1000), from: 'élan' }), attempt({ intent: 'naïve' })]);
    expect(log.verify()).toEqual({ ok: true, checked: 3 });
    log.close();
    // Same byte length, other character: only the hash can tell.
    edit(path, "UPDATE audit_batch SET records = replace(records, 'naïve', 'naïvf')");
    const again = new SqliteAuditLog({ path });
    expect(again.verify()).toMatchObject({ ok: false, firstBad: 3, checked: 2, reason: expect.stringMatching(/row 3 does not match its hash/) });
    again.close();
  });

  it('checks every record of many batches, a keyed chain included, and names the changed one', () => {
    const path = join(dir, 'keyed.db');
    const log = new SqliteAuditLog({ path, key: 'k' });
    const firstId = n + 1; // record seq s carries messageId m<firstId + s - 1>
    for (let b = 0; b < 5; b++) log.append(Array.from({ length: 300 }, () => attempt()));
    expect(log.verify()).toEqual({ ok: true, checked: 1500 });
    log.close();
    edit(path, `UPDATE audit_batch SET records = replace(records, '"m${firstId + 776}"', '"m0"')`);
    const again = new SqliteAuditLog({ path, key: 'k' });
    expect(again.verify()).toMatchObject({ ok: false, firstBad: 777, checked: 776, reason: expect.stringMatching(/row 777 does not match its hash/) });
    again.close();
  });

  it.each([
    ['its opening line replaced', "UPDATE audit_batch SET records = '{' || substr(records, 2)"],
    ['its closing line replaced', "UPDATE audit_batch SET records = substr(records, 1, length(records) - 1) || '}'"],
    ['a newline between two records removed', "UPDATE audit_batch SET records = replace(records, ',\n[2,', ',[2,')"],
    ['a newline added', "UPDATE audit_batch SET records = replace(records, ',\n[2,', ',\n\n[2,')"],
    ['its hashes cut short', 'UPDATE audit_batch SET hashes = substr(hashes, 1, 64)'],
    ['its records emptied', "UPDATE audit_batch SET records = ''"],
  ])('calls a batch malformed at its first row (%s)', (_what, sql) => {
    const path = join(dir, 'frame.db');
    const log = new SqliteAuditLog({ path });
    log.append([attempt(), attempt(), attempt()]);
    log.close();
    edit(path, sql);
    const again = new SqliteAuditLog({ path });
    expect(again.verify()).toMatchObject({ ok: false, firstBad: 1, checked: 0, reason: 'the batch starting at row 1 is malformed' });
    again.close();
  });

  it('names a record whose seq was rewritten in place', () => {
    const path = join(dir, 'seq.db');
    const log = new SqliteAuditLog({ path });
    log.append([attempt(), attempt(), attempt()]);
    log.close();
    edit(path, "UPDATE audit_batch SET records = replace(records, '\n[2,', '\n[9,')");
    const again = new SqliteAuditLog({ path });
    expect(again.verify()).toMatchObject({ ok: false, firstBad: 2, checked: 1, reason: 'row 2 is out of sequence or malformed' });
    again.close();
  });
});
