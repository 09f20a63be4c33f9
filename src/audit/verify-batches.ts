/**
 * The hash-chain walk of `verify` over batch storage (schema v3), on the stored bytes.
 *
 * A batch's `records` is `[`, then one canonical record line per record (all but the last
 * ending in `,`), then `]`, one per line; its `hashes` are the records' 32-byte hashes. Each
 * record must sit at its seq and hash to its stored hash from the one before it:
 * `H(prev ‖ line)`, `prev` as 64 hex characters. The walk writes each batch's text (as
 * UTF-8, as it was hashed) and its hashes (as hex, from SQLite) into one reused buffer, finds
 * the lines by their newlines, and hashes each `prev ‖ line` there: no string is built per
 * record but the digest, and no buffer per batch (external memory the GC would have to chase).
 */
import type { ByteDigest } from './hash-chain.js';
import type { ChainHead, VerifyResult } from './types.js';

/** One stored batch row: first seq, count, hash before the first, the hashes in lowercase hex, the records text. */
export type VerifyRow = [first: number, count: number, prevHash: unknown, hashes: unknown, records: unknown];

/**
 * Walks `rows` (in seq order) from `anchor`; `want` is the head the log must still hold
 * (`headSeen` is true when it needs no check). `checked` counts the records that matched
 * before the first bad one.
 */
export function verifyRows(rows: Iterable<VerifyRow>, digest: ByteDigest, anchor: ChainHead, want: ChainHead | undefined, headSeen: boolean): VerifyResult {
  let expected = anchor.seq + 1;
  let prev = anchor.hash;
  let checked = 0;
  // `views[n]` is the first n bytes of work (reused: no view per record).
  let scratch = 4096;
  let work = Buffer.allocUnsafeSlow(scratch + 256 * 1024);
  let views: Uint8Array[] = [];
  let newlines = new Int32Array(1024);
  for (const [first, count, prevHash, hashes, records] of rows) {
    if (first !== expected) {
      return first > expected
        ? bad(expected, `row ${expected} is missing (the next row is ${first})`, checked, anchor)
        : bad(first, `row ${first} is out of sequence (expected row ${expected})`, checked, anchor);
    }
    if (prevHash !== prev) return bad(first, `row ${first} does not continue the chain: its batch names another predecessor`, checked, anchor);
    if (typeof records !== 'string' || typeof hashes !== 'string' || hashes.length !== count * 64) {
      return bad(first, `the batch starting at row ${first} is malformed`, checked, anchor);
    }
    // work: [0, scratch) `prev ‖ line` of the record being hashed, the hashes in hex, the batch's UTF-8 bytes.
    const size = Buffer.byteLength(records, 'utf8');
    if (scratch + hashes.length + size > work.length) {
      work = Buffer.allocUnsafeSlow(2 * (scratch + hashes.length + size));
      views = [];
    }
    const hex = hashes;
    let hexAt = scratch;
    let bytesAt = hexAt + hex.length;
    work.write(records, bytesAt, 'utf8');
    let bytes = work.subarray(bytesAt, bytesAt + size);
    // Exactly count + 1 newlines: `[` alone on the first line, `]` alone on the last.
    if (newlines.length < count + 1) newlines = new Int32Array(2 * (count + 1));
    let n = 0;
    for (let at = bytes.indexOf(10); at >= 0; at = bytes.indexOf(10, at + 1)) {
      if (n > count) return bad(first, `the batch starting at row ${first} is malformed`, checked, anchor);
      newlines[n++] = at;
    }
    if (n !== count + 1 || bytes[0] !== 91 || newlines[0] !== 1 || size !== newlines[count]! + 2 || bytes[size - 1] !== 93) {
      return bad(first, `the batch starting at row ${first} is malformed`, checked, anchor);
    }
    let longest = 0;
    for (let i = 0; i < count; i++) longest = Math.max(longest, newlines[i + 1]! - newlines[i]!);
    if (64 + longest > scratch) {
      // A line longer than the scratch area: make room and lay the bytes out again (the newlines are relative).
      scratch = 2 * (64 + longest);
      work = Buffer.allocUnsafeSlow(2 * (scratch + hex.length + size));
      views = [];
      hexAt = scratch;
      bytesAt = hexAt + hex.length;
      work.write(records, bytesAt, 'utf8');
      bytes = work.subarray(bytesAt, bytesAt + size);
    }
    work.write(prev, 0, 'latin1');
    work.write(hex, hexAt, 'latin1');
    for (let i = 0; i < count; i++) {
      const seq = first + i;
      const start = newlines[i]! + 1;
      // All but the last line end in the separating comma: it is not hashed (a missing one fails the hash).
      const end = i < count - 1 ? newlines[i + 1]! - 1 : newlines[i + 1]!;
      if (!startsWithSeq(bytes, start, end, seq)) return bad(seq, `row ${seq} is out of sequence or malformed`, checked, anchor);
      if (i > 0) work.copyWithin(0, hexAt + 64 * (i - 1), hexAt + 64 * i);
      const length = 64 + end - start;
      work.copyWithin(64, bytesAt + start, bytesAt + end);
      const hash = digest((views[length] ??= work.subarray(0, length)));
      // (slice and ===: a matching startsWith at an offset is several times slower)
      if (hex.slice(64 * i, 64 * i + 64) !== hash) {
        return bad(seq, `row ${seq} does not match its hash: it was changed, or a row was inserted before it`, checked, anchor);
      }
      if (want !== undefined && seq === want.seq) {
        if (hash !== want.hash) return bad(seq, `row ${seq} has another hash than the head given: the log was rewritten after it`, checked, anchor);
        headSeen = true;
      }
      prev = hash;
      expected++;
      checked++;
    }
  }
  if (!headSeen && want !== undefined) {
    return bad(Math.min(expected, want.seq), `the log ends at row ${expected - 1} but the head given is row ${want.seq}: rows were removed from its end (or the head is not from this log)`, checked, anchor);
  }
  return { ok: true, checked, ...(anchor.seq > 0 ? { anchor } : {}) };
}

function bad(firstBad: number, reason: string, checked: number, anchor: ChainHead): VerifyResult {
  return { ok: false, checked, firstBad, reason, ...(anchor.seq > 0 ? { anchor } : {}) };
}

/** True when the line at `start` in `bytes` begins `[seq,` (the seq in decimal). */
function startsWithSeq(bytes: Buffer, start: number, end: number, seq: number): boolean {
  let digits = 1;
  for (let v = seq; v >= 10; v = Math.floor(v / 10)) digits++;
  if (end - start < digits + 2 || bytes[start] !== 91 || bytes[start + 1 + digits] !== 44) return false;
  let v = seq;
  for (let at = start + digits; at > start; at--) {
    if (bytes[at] !== 48 + (v % 10)) return false;
    v = Math.floor(v / 10);
  }
  return true;
}
