import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { tamper } from './support/audit-tamper.js';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SCHEMA_VERSION, SqliteAuditLog } from '../src/audit/index.js';
import type { AttemptRecord, MessageLogEntry } from '../src/audit/index.js';
import { main } from '../src/cli/main.js';

let n = 0;
function attempt(over: Partial<AttemptRecord> = {}): AttemptRecord {
  n++;
  return {
    kind: 'attempt',
    ts: Date.UTC(2025, 0, 2, 3, 4, 5, n),
    messageId: `m${n}`,
    from: 'research',
    to: 'writer',
    type: 'delegate',
    intent: 'summarize',
    payloadHash: createHash('sha256').update(`{"n":${n}}`).digest('hex'),
    payloadBytes: 7,
    decision: 'allowed',
    rule: 'research->writer',
    policyVersion: 1,
    outcome: 'delivered',
    conversationId: 'conv-1',
    ...over,
  };
}

interface Run {
  code: number;
  out: string[];
  err: string[];
}
function run(argv: string[], env: Record<string, string | undefined> = {}): Run {
  const out: string[] = [];
  const err: string[] = [];
  const code = main(argv, { out: (l) => out.push(l), err: (l) => err.push(l), env }) as number;
  return { code, out, err };
}
const fileHash = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');

let dir: string;
let db: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'switchboard-cli-'));
  db = join(dir, 'audit.db');
  const log = new SqliteAuditLog({ path: db });
  const held = attempt({ messageId: 'held', from: 'purchase', to: 'payment', decision: 'pending', intent: 'charge' });
  const { outcome: _none, ...denied } = attempt({
    messageId: 'denied',
    from: 'writer',
    to: 'vault',
    type: 'notify',
    intent: 'leak',
    decision: 'denied',
    rule: 'no-vault',
    code: 'POLICY_DENIED',
  });
  log.append([attempt({ messageId: 'first' }), denied, held]);
  log.append([
    { kind: 'approval', ts: held.ts + 1, messageId: 'held', to: 'payment', approval: 'approved', decidedBy: 'alice', policyVersion: 1 },
    { kind: 'outcome', ts: held.ts + 2, messageId: 'held', to: 'payment', outcome: 'replied' },
  ]);
  log.close();
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('switchboard log', () => {
  it('prints an aligned table, newest first', () => {
    const r = run(['log', db]);
    expect(r.code).toBe(0);
    expect(r.err).toEqual([]);
    const [header, ...rows] = r.out;
    expect(header).toMatch(/^TIME\s+FROM\s+TO\s+TYPE\s+INTENT\s+DECISION\s+OUTCOME\s+APPROVAL\s+RULE\/CODE$/);
    expect(rows).toHaveLength(3);
    expect(rows[0]).toMatch(/^2025-01-02T03:04:05\.\d{3}Z\s+purchase\s+payment\s+delegate\s+charge\s+pending\s+replied\s+approved\/alice\s+research->writer$/);
    expect(rows[1]).toMatch(/writer\s+vault\s+notify\s+leak\s+denied\s+-\s+-\s+POLICY_DENIED\/no-vault$/);
    expect(rows[2]).toMatch(/research\s+writer\s+delegate\s+summarize\s+allowed\s+delivered/);
    // Aligned: each column starts where its title does, on every line.
    const starts = [...(header ?? '').matchAll(/\S+/g)].map((m) => m.index);
    for (const row of rows) for (const at of starts) expect(at === 0 ? row[0] : row.slice(at - 1, at + 1)).toMatch(at === 0 ? /^\S$/ : /^ \S$/);
  });

  it('prints JSON Lines with --json, one entry per line', () => {
    const r = run(['log', db, '--json']);
    expect(r.code).toBe(0);
    const entries = r.out.map((l) => JSON.parse(l) as MessageLogEntry);
    expect(entries.map((e) => e.messageId)).toEqual(['held', 'denied', 'first']);
    expect(entries[0]).toMatchObject({ approval: 'approved', decidedBy: 'alice', outcome: 'replied', decision: 'pending' });
    expect(entries[1]).toMatchObject({ code: 'POLICY_DENIED', rule: 'no-vault' });
  });

  it('filters by --agent (sender or recipient) and --limit', () => {
    const writer = run(['log', db, '--agent', 'writer', '--json']);
    expect(writer.out.map((l) => (JSON.parse(l) as MessageLogEntry).messageId)).toEqual(['denied', 'first']);
    expect(run(['log', db, '--limit', '1', '--json']).out).toHaveLength(1);
    expect(run(['log', '--agent=nobody', db]).out).toEqual(['(no entries)']);
  });

  it('rejects a bad --limit with exit 2', () => {
    for (const limit of ['0', 'ten', '10001', '-1', '2.5']) {
      const r = run(['log', db, `--limit=${limit}`]);
      expect(r.code).toBe(2);
      expect(r.err[0]).toMatch(/--limit must be an integer/);
    }
  });

  it('escapes control characters instead of sending them to the terminal', () => {
    const path = join(dir, 'evil.db');
    const log = new SqliteAuditLog({ path });
    log.append([attempt({ intent: 'x\u001b[2Jy' })]);
    log.close();
    const r = run(['log', path]);
    expect(r.out.join('\n')).not.toContain('\u001b');
    expect(r.out[1]).toContain('x\\x1b[2Jy');
  });

  it('escapes bidirectional controls and C1 controls (in the table, --json and export), so no text is reordered or steered', () => {
    const path = join(dir, 'bidi.db');
    const log = new SqliteAuditLog({ path });
    const reason = 'ok\u202Edeyorppa \u2066x\u2069 \u200F\u061C \u009b31m';
    log.append([attempt({ intent: 'ok\u202Edeyorppa', decision: 'denied', reason, outcome: undefined as never })]);
    log.close();
    const unsafe = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/;
    const table = run(['log', path]);
    for (const line of table.out) expect(line).not.toMatch(unsafe);
    expect(table.out[1]).toContain('ok\\u202edeyorppa');
    for (const argv of [['log', path, '--json'], ['export', path], ['export', path, '--format', 'csv']]) {
      const r = run(argv);
      expect(r.code).toBe(0);
      for (const line of r.out) expect(line, argv.join(' ')).not.toMatch(unsafe);
    }
    // JSON Lines stay lossless: the escapes are JSON's own.
    expect((JSON.parse(run(['export', path]).out[0]!) as MessageLogEntry).reason).toBe(reason);
  });
});

describe('switchboard verify', () => {
  it('exits 0 and counts the rows when the chain holds', () => {
    const r = run(['verify', db]);
    expect(r.code).toBe(0);
    expect(r.out[0]).toBe('ok: 5 rows verified');
    expect(r.out[1]).toMatch(/^head: 5:[0-9a-f]{64}$/);
  });

  it('prints a bad file\'s own names escaped: an index named with control characters cannot write to the terminal', () => {
    const edit = new Database(db);
    edit.exec('CREATE INDEX "x\u001b[2J\u001b]0;owned\u0007" ON audit_message (1)');
    edit.close();
    const r = run(['verify', db]);
    expect(r.code).toBe(1);
    expect(r.out[0]).toMatch(/^bad: an unexpected index x/);
    for (const line of [...r.out, ...r.err]) expect(line).not.toMatch(/[\u0000-\u001f\u007f]/);
  });

  it('exits 1 naming the first bad row', () => {
    tamper(db, (r) => (r[1]!.line = r[1]!.line.replace(/"(denied|pending)"/, '"allowed"').replace('"delivered"', '"failed"')));
    const r = run(['verify', db]);
    expect(r.code).toBe(1);
    expect(r.out[0]).toMatch(/^bad: row 2 does not match its hash/);
    expect(r.out[1]).toBe('1 row verified before it');
  });

  it('verifies a keyed log with --key or SWITCHBOARD_AUDIT_KEY, and refuses without it', () => {
    const path = join(dir, 'keyed.db');
    const log = new SqliteAuditLog({ path, key: 's3cret' });
    log.append([attempt(), attempt()]);
    log.close();
    expect(run(['verify', path, '--key', 's3cret'])).toMatchObject({ code: 0, out: ['ok: 2 rows verified', expect.any(String)] });
    expect(run(['verify', path], { SWITCHBOARD_AUDIT_KEY: 's3cret' }).code).toBe(0);
    const none = run(['verify', path]);
    expect(none.code).toBe(1);
    expect(none.err[0]).toMatch(/keyed.*--key or set SWITCHBOARD_AUDIT_KEY/);
    const wrong = run(['verify', path, '--key', 'guess']);
    expect(wrong.code).toBe(1);
    expect(wrong.err[0]).toMatch(/does not match/);
    expect(run(['log', path]).code).toBe(0); // reading needs no key
  });
});

describe('switchboard (usage and safety)', () => {
  it('prints help for the top level and for each command', () => {
    for (const argv of [['--help'], ['-h'], ['log', '--help'], ['verify', '-h']]) {
      const r = run(argv);
      expect(r.code).toBe(0);
      expect(r.out[0]).toMatch(/^Usage: switchboard/);
    }
    expect(run(['log', '--help']).out[0]).toContain('--agent ID');
    expect(run(['verify', '--help']).out[0]).toContain('SWITCHBOARD_AUDIT_KEY');
  });

  it('prints the package version for --version and -v', () => {
    const { version } = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
    for (const flag of ['--version', '-v']) expect(run([flag])).toEqual({ code: 0, out: [version], err: [] });
  });

  it('exits 2 with a message for an unknown command, an unknown option or a missing argument', () => {
    expect(run([])).toMatchObject({ code: 2 });
    const cmd = run(['tail', db]);
    expect(cmd.code).toBe(2);
    expect(cmd.err[0]).toBe('switchboard: unknown command "tail"');
    const flag = run(['log', db, '--follow']);
    expect(flag.code).toBe(2);
    expect(flag.err[0]).toMatch(/--follow/);
    expect(run(['--verbose']).code).toBe(2);
    expect(run(['verify']).err[0]).toMatch(/missing <db>/);
    expect(run(['log', db, db]).code).toBe(2);
  });

  it('reports a missing file without creating it', () => {
    const missing = join(dir, 'nope.db');
    for (const command of ['log', 'verify']) {
      const r = run([command, missing]);
      expect(r.code).toBe(1);
      expect(r.err[0]).toBe(`switchboard: no such file: ${missing}`);
      expect(existsSync(missing)).toBe(false);
    }
  });

  it('never modifies the database', () => {
    const before = fileHash(db);
    run(['log', db]);
    run(['log', db, '--agent', 'writer', '--json']);
    run(['verify', db]);
    expect(fileHash(db)).toBe(before);
  });

  it('refuses a database that would need a migration, and one newer than it knows', () => {
    const blank = join(dir, 'blank.db');
    writeFileSync(blank, '');
    const r = run(['log', blank]);
    expect(r.code).toBe(1);
    expect(r.err[0]).toMatch(/not an agent-switchboard audit log/);
    expect(readFileSync(blank).length).toBe(0);

    const bump = new Database(db);
    bump.pragma(`user_version = ${SCHEMA_VERSION + 1}`);
    bump.close();
    const newer = run(['verify', db]);
    expect(newer.code).toBe(1);
    expect(newer.err[0]).toMatch(new RegExp(`schema version ${SCHEMA_VERSION + 1}, newer than this code supports \\(${SCHEMA_VERSION}\\)`));
  });

  it('runs as an executable script', () => {
    const out = execFileSync(process.execPath, ['--import', 'tsx', join(import.meta.dirname, '../src/cli/main.ts'), 'verify', db], { encoding: 'utf8' });
    expect(out).toMatch(/^ok: 5 rows verified\n/);
  });
});

describe('switchboard export', () => {
  it('streams every entry oldest first across pages, as JSON Lines', () => {
    const path = join(dir, 'big.db');
    const log = new SqliteAuditLog({ path });
    for (let i = 0; i < 3; i++) log.append(Array.from({ length: 7_000 }, () => attempt({ ts: 1_000 })));
    log.close();
    const r = run(['export', path]);
    expect(r.code).toBe(0);
    expect(r.out).toHaveLength(21_000);
    expect(r.out.map((l) => (JSON.parse(l) as MessageLogEntry).seq)).toEqual(Array.from({ length: 21_000 }, (_, i) => i + 1));
  });

  it('writes CSV with a header, quoting what needs it and neutralising formulas, and honours --since', () => {
    const path = join(dir, 'csv.db');
    const log = new SqliteAuditLog({ path });
    log.append([attempt({ ts: 10, messageId: 'old' }), attempt({ ts: 20, messageId: 'new', decision: 'denied', reason: '=HYPERLINK("x"), a', outcome: undefined as never })]);
    log.close();
    const r = run(['export', path, '--format', 'csv', '--since', '15']);
    expect(r.code).toBe(0);
    expect(r.out[0]).toMatch(/^seq,messageId,ts,from,to,/);
    expect(r.out).toHaveLength(2);
    expect(r.out[1]).toContain(`"'=HYPERLINK(""x""), a"`);
    expect(r.out[1]?.startsWith('2,new,20,')).toBe(true);
  });

  it('refuses an unknown format in its own words (exit 2)', () => {
    const r = run(['export', db, '--format', 'xml']);
    expect(r.code).toBe(2);
    expect(r.err[0]).toBe('switchboard: --format must be one of jsonl, csv, got "xml"');
  });
});

describe('switchboard log filters', () => {
  it('filters by type, decision, conversation and pages by seq', () => {
    const all = run(['log', db, '--json', '--limit', '100']).out.map((l) => JSON.parse(l) as MessageLogEntry);
    const denied = run(['log', db, '--json', '--decision', 'denied']).out.map((l) => JSON.parse(l) as MessageLogEntry);
    expect(denied.map((e) => e.messageId)).toEqual(all.filter((e) => e.decision === 'denied').map((e) => e.messageId));
    const notify = run(['log', db, '--json', '--type', 'notify']).out.map((l) => JSON.parse(l) as MessageLogEntry);
    expect(notify.every((e) => e.type === 'notify') && notify.length > 0).toBe(true);
    const second = all[1]!;
    const page = run(['log', db, '--json', '--before-seq', String(all[0]!.seq), '--limit', '1']).out.map((l) => JSON.parse(l) as MessageLogEntry);
    expect(page.map((e) => e.seq)).toEqual([second.seq]);
    const up = run(['log', db, '--json', '--after-seq', '0', '--limit', '1']).out.map((l) => JSON.parse(l) as MessageLogEntry);
    expect(up.map((e) => e.seq)).toEqual([all.at(-1)!.seq]);
    const conv = run(['log', db, '--json', '--conversation', 'conv-1', '--limit', '100']).out.map((l) => JSON.parse(l) as MessageLogEntry);
    expect(conv.map((e) => e.seq)).toEqual(all.filter((e) => e.conversationId === 'conv-1').map((e) => e.seq));
  });

  it('says what is wrong with a bad time or seq (exit 2)', () => {
    expect(run(['log', db, '--since', 'yesterday']).err[0]).toMatch(/--since must be a date .* got "yesterday"/);
    expect(run(['log', db, '--before-seq', '-3']).code).toBe(2);
    expect(run(['log', db, '--decision', 'maybe']).err[0]).toBe('switchboard: --decision must be one of allowed, denied, pending, got "maybe"');
  });

  it('prints its version', () => {
    const r = run(['--version']);
    expect(r.code).toBe(0);
    expect(r.out[0]).toMatch(/^\d+\.\d+\.\d+/);
  });
});

describe('switchboard verify --head', () => {
  it('passes while the log holds the head and fails once the tail is cut', () => {
    const ok = run(['verify', db]);
    // The head line's value is what --head takes, as printed.
    const head = /^head: (\S+)$/.exec(ok.out[1]!)![1]!;
    expect(head).toMatch(/^\d+:[0-9a-f]{64}$/);
    expect(run(['verify', db, '--head', head]).code).toBe(0);
    tamper(db, (r) => r.splice(-1));
    const cut = run(['verify', db, '--head', head]);
    expect(cut.code).toBe(1);
    expect(cut.out[0]).toMatch(/^bad: the log ends at row \d+ but the head given is row \d+/);
  });

  it('refuses a malformed head (exit 2)', () => {
    const r = run(['verify', db, '--head', '5:nothex']);
    expect(r.code).toBe(2);
    expect(r.err[0]).toMatch(/--head must be SEQ:HASH .*the value of the "head:" line "switchboard verify" prints/);
  });
});
