// verify() walks the stored bytes of each batch (src/audit/verify-batches.ts): it must accept
// every log the writer produces (multi-byte text, lines longer than its first buffer, many
// batches, a keyed chain) and name the exact row or batch that was changed.
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { SqliteAuditLog } from '../src/audit/index.js';
import { attemptMaker, tempDirPerTest } from './support/audit-records.js';

const dir = tempDirPerTest('switchboard-verify-');
const attempt = attemptMaker();

/** Runs `sql` on the file with a connection of its own (as someone with write access would). */
function edit(path: string, sql: string): void {
  const db = new Database(path);
  db.exec(sql);
  db.close();
}

describe('verify over stored bytes', () => {
  it('accepts multi-byte text and a line longer than its first buffer, and names the row whose multi-byte text was changed', () => {
    const path = join(dir.path, 'utf8.db');
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
    const path = join(dir.path, 'keyed.db');
    const log = new SqliteAuditLog({ path, key: 'k' });
    const records = Array.from({ length: 1500 }, () => attempt());
    for (let b = 0; b < 5; b++) log.append(records.slice(b * 300, (b + 1) * 300));
    expect(log.verify()).toEqual({ ok: true, checked: 1500 });
    log.close();
    edit(path, `UPDATE audit_batch SET records = replace(records, '"${records[776]!.messageId}"', '"m0"')`); // row 777
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
    const path = join(dir.path, 'frame.db');
    const log = new SqliteAuditLog({ path });
    log.append([attempt(), attempt(), attempt()]);
    log.close();
    edit(path, sql);
    const again = new SqliteAuditLog({ path });
    expect(again.verify()).toMatchObject({ ok: false, firstBad: 1, checked: 0, reason: 'the batch starting at row 1 is malformed' });
    again.close();
  });

  it('names a record whose seq was rewritten in place', () => {
    const path = join(dir.path, 'seq.db');
    const log = new SqliteAuditLog({ path });
    log.append([attempt(), attempt(), attempt()]);
    log.close();
    edit(path, "UPDATE audit_batch SET records = replace(records, '\n[2,', '\n[9,')");
    const again = new SqliteAuditLog({ path });
    expect(again.verify()).toMatchObject({ ok: false, firstBad: 2, checked: 1, reason: 'row 2 is out of sequence or malformed' });
    again.close();
  });
});
