/**
 * Tampering with a v3 audit file the way an attacker with write access to the file would:
 * read every record (its stored line and hash), change the list, write it back (one batch
 * row per record, each naming the previous stored hash as its predecessor).
 */
import Database from 'better-sqlite3';

export interface StoredRecord {
  /** Where the record is stored (its batch's first_seq). */
  seq: number;
  /** The record's canonical JSON line (what is hashed). */
  line: string;
  /** Its stored hash, hex. */
  hash: string;
}

export function readRecords(db: Database.Database): StoredRecord[] {
  const out: StoredRecord[] = [];
  const rows = db.prepare('SELECT first_seq, hashes, records FROM audit_batch ORDER BY first_seq').raw().all() as [number, Buffer, string][];
  for (const [first, hashes, text] of rows) {
    const lines = text.split('\n').slice(1, -1);
    lines.forEach((l, i) => out.push({ seq: first + i, line: l.endsWith(',') ? l.slice(0, -1) : l, hash: hashes.toString('hex', i * 32, i * 32 + 32) }));
  }
  return out;
}

export function writeRecords(db: Database.Database, records: readonly StoredRecord[]): void {
  db.transaction(() => {
    db.exec('DELETE FROM audit_batch');
    const insert = db.prepare('INSERT INTO audit_batch (first_seq, count, prev_hash, hashes, records) VALUES (?, 1, ?, ?, ?)');
    let prev = '0'.repeat(64);
    for (const r of records) {
      insert.run(r.seq, prev, Buffer.from(r.hash, 'hex'), `[\n${r.line}\n]`);
      prev = r.hash;
    }
  })();
}

/** Reads, lets `change` edit the list in place, writes back. */
export function tamper(path: string, change: (records: StoredRecord[]) => void): void {
  const db = new Database(path);
  try {
    const records = readRecords(db);
    change(records);
    writeRecords(db, records);
  } finally {
    db.close();
  }
}
