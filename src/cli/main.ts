#!/usr/bin/env node
/**
 * `switchboard`: read and check an audit database file. It never writes to the database:
 * files are opened read-only, a missing file is an error (never created), and a file that
 * would need a schema migration is refused.
 *
 * Exit codes: 0 success; 1 the chain is broken, or the file cannot be read (missing, not an
 * audit log, too new, wrong key); 2 bad usage (unknown command or option, bad value).
 */
import { existsSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { MAX_QUERY_LIMIT, SqliteAuditLog } from '../audit/sqlite.js';
import type { ChainHead, MessageLogEntry, MessageLogQuery, PeerDigestEntry, PeerDigestQuery, RefusalSummary } from '../audit/types.js';
import { readRecordedDigest, readRecordedProof } from '../nats/proofs.js';
import { proofBindingDifferences } from '../nats/proof-binding.js';
import { loadRoster, RosterIndex } from '../nats/roster.js';
import { runFleet } from './fleet.js';
import { runNatsConfig } from './nats-config.js';
import { escapeJson, escapeText } from '../escape-text.js';

/** Where {@link main} writes. Each call is one line, without its newline. */
export interface CliIO {
  out(line: string): void;
  err(line: string): void;
  /** Environment to read `SWITCHBOARD_AUDIT_KEY` from. @default process.env */
  env?: Readonly<Record<string, string | undefined>>;
}

const KEY_ENV = 'SWITCHBOARD_AUDIT_KEY';

const HELP = `Usage: switchboard <command> [options]

Read and check an agent-switchboard audit database (log, export and verify never
modify it), and set up a fleet of nodes (fleet init writes new files; fleet bucket
creates the claims bucket on the server).

Commands:
  log <db>       Show the message log, newest first
  export <db>    Write every entry, oldest first, as JSON Lines or CSV
  verify <db>    Check the hash chain end to end
  fleet init <fleet.json>
                 Write a fleet's roster, node and operator keys and nats-server
                 permissions (alias: nats-config; see docs/nodes.md)
  fleet bucket   Create the fleet's claims bucket (an operator, once)

Options:
  -h, --help     Show help (also: switchboard <command> --help)
  -v, --version  Show the version

Exit codes: 0 ok, 1 broken chain or unreadable database, 2 bad usage.`;

const LOG_HELP = `Usage: switchboard log <db> [--agent ID] [--limit N] [--json] [filters]

Show one entry per message and recipient, newest first, with its latest outcome.

Options:
  --agent ID            Only entries sent or received by ID
  --type T              Only ask, delegate, reply or notify
  --decision D          Only allowed, denied or pending
  --conversation ID     Only entries of that conversation
  --since TIME          Only entries at or after TIME (ISO date or epoch ms)
  --before TIME         Only entries before TIME
  --before-seq N        Only entries with seq below N (the next page: the last seq shown)
  --after-seq N         Only entries with seq above N, oldest first
  --limit N             At most N entries, 1..${MAX_QUERY_LIMIT} (default 50)
  --json                One JSON object per line (JSON Lines) instead of a table
  -h, --help            Show this help

A row that stands for many refusals of one sender beyond its rate shows, under RULE/CODE,
how many, since when, and their codes (its JSON has "refusals": count, first, last, codes).

Example:
  switchboard log audit.db --agent writer --limit 20`;

const VERIFY_HELP = `Usage: switchboard verify <db> [--head SEQ:HASH] [--key KEY] [--roster roster.json]

Recompute the hash chain from the oldest kept row to the last. Prints "ok: N rows verified"
and the chain head (exit 0), or names the first bad row (exit 1).

Options:
  --head SEQ:HASH  A head printed earlier (or from bus.auditHead()): fail unless the log
                   still holds that row with that hash (catches a truncated tail)
  --key KEY        HMAC key of a keyed log (prefer the ${KEY_ENV} environment variable:
                   a command-line argument is visible to other users of the machine)
  --roster FILE    The fleet's roster.json: also check every peer node's proof kept with a
                   receipt (its signature over what it sent, or its MAC and a signed
                   row or digest record of the same node whose covers list it) and that
                   it is a proof of that very row (sender, recipient, type, id, intent,
                   peer node), and the signature of every digest record, so the log
                   proves what each peer sent this node; MAC'd rows nothing signed covers
                   are counted apart
  -h, --help       Show this help

Without --head a truncated tail is not detected: keep the printed head somewhere else.`;

const EXPORT_HELP = `Usage: switchboard export <db> [--since TIME] [--format jsonl|csv]

Write every entry of the log, oldest first, at constant memory (it pages by seq).

Options:
  --since TIME     Only entries at or after TIME (ISO date or epoch ms)
  --format F       jsonl (default): one JSON object per line, message entries and, in seq
                   order among them, digest records (a peer node's signed covers, with
                   "kind":"digest"); csv: a header and one row per message entry
  -h, --help       Show this help`;

/** The package's version, from its package.json (two levels up from src/cli and dist/cli alike). */
function version(): string {
  return (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
}

/** Thrown for bad usage; reported with exit code 2. */
class UsageError extends Error {}

/**
 * Runs the CLI on `argv` (the arguments after the program name) and returns the exit code.
 * Never throws, never calls `process.exit`.
 *
 * @example
 * const code = main(['verify', 'audit.db'], { out: console.log, err: console.error })
 */
export function main(argv: readonly string[], io: CliIO): number | Promise<number> {
  try {
    const [command, ...rest] = argv;
    if (command === undefined) {
      io.err(HELP);
      return 2;
    }
    if (command === '-h' || command === '--help' || command === 'help') {
      io.out(HELP);
      return 0;
    }
    if (command === '-v' || command === '--version') {
      io.out(version());
      return 0;
    }
    switch (command) {
      case 'log':
        return runLog(rest, io);
      case 'export':
        return runExport(rest, io);
      case 'verify':
        return runVerify(rest, io);
      case 'nats-config':
        return runNatsConfig(rest, io);
      case 'fleet':
        return runFleet(rest, io);
      default:
        throw new UsageError(command.startsWith('-') ? `unknown option ${command}` : `unknown command "${command}"`);
    }
  } catch (e) {
    if (e instanceof UsageError || isParseArgsError(e)) {
      io.err(`switchboard: ${escapeText((e as Error).message)}`);
      io.err(`Run "switchboard --help" for usage.`);
      return 2;
    }
    io.err(`switchboard: ${escapeText(e instanceof Error ? e.message : String(e))}`);
    return 1;
  }
}

function runLog(args: string[], io: CliIO): number {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    strict: true,
    options: {
      agent: { type: 'string' },
      limit: { type: 'string' },
      json: { type: 'boolean' },
      type: { type: 'string' },
      decision: { type: 'string' },
      conversation: { type: 'string' },
      since: { type: 'string' },
      before: { type: 'string' },
      'before-seq': { type: 'string' },
      'after-seq': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help === true) {
    io.out(LOG_HELP);
    return 0;
  }
  const filter: MessageLogQuery = {};
  if (values.type !== undefined) filter.type = oneOf('--type', values.type, ['ask', 'delegate', 'reply', 'notify'] as const);
  if (values.decision !== undefined) filter.decision = oneOf('--decision', values.decision, ['allowed', 'denied', 'pending'] as const);
  if (values.conversation !== undefined) {
    if (values.conversation === '') throw new UsageError('--conversation needs a conversation id');
    filter.conversationId = values.conversation;
  }
  if (values.since !== undefined) filter.since = time('--since', values.since);
  if (values.before !== undefined) filter.before = time('--before', values.before);
  if (values['before-seq'] !== undefined) filter.beforeSeq = seqArg('--before-seq', values['before-seq']);
  if (values['after-seq'] !== undefined) filter.afterSeq = seqArg('--after-seq', values['after-seq']);
  const path = onePath(positionals, 'log');
  let limit = 50;
  if (values.limit !== undefined) {
    const n = /^\d+$/.test(values.limit) ? Number(values.limit) : NaN;
    if (!(n >= 1 && n <= MAX_QUERY_LIMIT)) throw new UsageError(`--limit must be an integer from 1 to ${MAX_QUERY_LIMIT}, got "${values.limit}"`);
    limit = n;
  }
  if (values.agent === '') throw new UsageError('--agent needs an agent id');

  const log = openLog(path);
  if (log === undefined) return notFound(path, io);
  try {
    const entries = log.query(values.agent === undefined ? { ...filter, limit } : { ...filter, agentId: values.agent, limit });
    if (values.json === true) for (const e of entries) io.out(escapeJson(JSON.stringify(e)));
    else for (const line of table(entries)) io.out(line);
    return 0;
  } finally {
    log.close();
  }
}

function runVerify(args: string[], io: CliIO): number {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    strict: true,
    options: {
      key: { type: 'string' },
      head: { type: 'string' },
      roster: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help === true) {
    io.out(VERIFY_HELP);
    return 0;
  }
  let roster: RosterIndex | undefined;
  if (values.roster !== undefined) {
    try {
      roster = new RosterIndex(loadRoster(values.roster));
    } catch (e) {
      io.err(`switchboard: ${(e as Error).message}`);
      return 1;
    }
  }
  const wanted = values.head === undefined ? undefined : headArg(values.head);
  const path = onePath(positionals, 'verify');
  const key = values.key ?? nonEmpty((io.env ?? process.env)[KEY_ENV]);
  if (values.key === '') throw new UsageError('--key needs a value');

  const log = openLog(path, key);
  if (log === undefined) return notFound(path, io);
  try {
    if (log.chain === 'hmac-sha256' && key === undefined) {
      io.err(`switchboard: ${path} is a keyed (HMAC) log: pass --key or set ${KEY_ENV} to verify it`);
      return 1;
    }
    const result = log.verify(wanted === undefined ? {} : { head: wanted });
    if (result.ok && roster !== undefined) {
      const peers = checkPeerProofs(log, roster);
      if (peers.bad !== undefined) {
        io.out(`bad: ${escapeText(peers.bad)}`);
        io.out(`${rows(result.checked)} verified; ${peers.checked} peer proof${peers.checked === 1 ? '' : 's'} verified before it`);
        return 1;
      }
      io.out(`ok: ${peers.checked} peer proof${peers.checked === 1 ? '' : 's'} verified against the roster of bus "${roster.roster.bus}"${peers.digests > 0 ? `, and ${peers.digests} signed digest record${peers.digests === 1 ? '' : 's'}` : ''}${peers.unverified > 0 ? ` (${peers.unverified} cross-node entr${peers.unverified === 1 ? 'y' : 'ies'} marked unverified: an insecure fleet)` : ''}${peers.covered > 0 ? ` (${peers.covered} of them MAC'd and covered by a signed digest)` : ''}${peers.macs > 0 ? ` (${peers.macs} authenticated by a MAC, provable to this fleet only: not checked)` : ''}`);
    }
    if (result.ok) {
      const head = log.head();
      io.out(`ok: ${rows(result.checked)} verified`);
      // The file's own values are escaped too: the file under check may be hostile.
      if (result.anchor !== undefined) io.out(`from: ${escapeText(`${result.anchor.seq}:${result.anchor.hash}`)} (older rows were dropped)`);
      // As --head takes it: the line's value can be passed back as it is.
      io.out(`head: ${escapeText(`${head.seq}:${head.hash}`)}`);
      if (wanted !== undefined) io.out(`holds: seq ${wanted.seq}`);
      return 0;
    }
    // A reason names what the file holds (an index's name, a row's number): escaped.
    io.out(`bad: ${escapeText(result.reason ?? `row ${result.firstBad} does not match the chain`)}`);
    io.out(`${rows(result.checked)} verified before it`);
    return 1;
  } finally {
    log.close();
  }
}

/**
 * Checks the proof kept with every receipt from another node, in seq order, and with every
 * digest record (a peer's signed covers); stops at the first bad one. A MAC'd row counts as
 * proven when a signed row or a digest record of the same node in this log lists its cover
 * (digest proofs); else it is provable to the fleet only.
 */
function checkPeerProofs(
  log: { query(q: MessageLogQuery): MessageLogEntry[]; peerDigests(q: PeerDigestQuery): PeerDigestEntry[] },
  roster: RosterIndex,
): { checked: number; unverified: number; macs: number; covered: number; digests: number; bad?: string } {
  let checked = 0;
  let unverified = 0;
  let digests = 0;
  const covers = new Set<string>();
  const macs: string[] = [];
  const bus = roster.roster.bus;
  for (let after = 0; ; ) {
    const page = log.query({ afterSeq: after, limit: MAX_QUERY_LIMIT });
    if (page.length === 0) break;
    for (const e of page) {
      if (e.unverified === true) unverified++;
      if (e.proof === undefined) continue;
      const read = readRecordedProof(e.proof, e.payloadHash, bus, roster);
      if (read.kind === 'bad') return { checked, unverified, macs: macs.length, covered: 0, digests, bad: `seq ${e.seq} (message ${e.messageId} from "${e.from}" of node "${e.peerNode ?? '?'}"): ${read.why}` };
      // A genuine proof on a row that records something else proves nothing about that row.
      const moved = proofBindingDifferences(e.proof, e, bus);
      if (moved.length > 0) return { checked, unverified, macs: macs.length, covered: 0, digests, bad: `seq ${e.seq} (message ${e.messageId} from "${e.from}" of node "${e.peerNode ?? '?'}"): the recorded proof is not of this entry: ${moved.join('; ')}` };
      if (read.kind === 'mac') macs.push(`${read.node}\0${read.cover}`);
      else {
        checked++;
        for (const c of read.covers) covers.add(`${read.node}\0${c}`);
      }
    }
    after = page[page.length - 1]!.seq;
  }
  for (let after = 0; ; ) {
    const page = log.peerDigests({ afterSeq: after, limit: MAX_QUERY_LIMIT });
    if (page.length === 0) break;
    for (const d of page) {
      const read = readRecordedDigest(d.proof, d.payloadHash, d.digestId, d.peerNode, bus, roster);
      if (read.kind !== 'signed') return { checked, unverified, macs: macs.length, covered: 0, digests, bad: `seq ${d.seq} (digest ${d.digestId} of node "${d.peerNode}"): ${read.kind === 'bad' ? read.why : 'not signed'}` };
      digests++;
      for (const c of read.covers) covers.add(`${read.node}\0${c}`);
    }
    after = page[page.length - 1]!.seq;
  }
  const covered = macs.filter((m) => covers.has(m)).length;
  return { checked: checked + covered, unverified, macs: macs.length - covered, covered, digests };
}

function runExport(args: string[], io: CliIO): number {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    strict: true,
    options: {
      since: { type: 'string' },
      format: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help === true) {
    io.out(EXPORT_HELP);
    return 0;
  }
  const path = onePath(positionals, 'export');
  const format = values.format === undefined ? 'jsonl' : oneOf('--format', values.format, ['jsonl', 'csv'] as const);
  const since = values.since === undefined ? undefined : time('--since', values.since);
  const log = openLog(path);
  if (log === undefined) return notFound(path, io);
  try {
    const filter = since !== undefined ? { since } : {};
    if (format === 'csv') {
      // A CSV has the columns of a message entry: digest records (no agents, no message) are left out.
      io.out(CSV_FIELDS.join(','));
      for (const e of paged((after) => log.query({ ...filter, afterSeq: after, limit: MAX_QUERY_LIMIT }))) io.out(csvLine(e));
      return 0;
    }
    // JSON Lines: entries and digest records (`"kind":"digest"`) merged in seq order, so an export keeps every proof.
    const entries = paged((after) => log.query({ ...filter, afterSeq: after, limit: MAX_QUERY_LIMIT }));
    const digests = paged((after) => log.peerDigests({ ...filter, afterSeq: after, limit: MAX_QUERY_LIMIT }));
    let e = entries.next();
    let d = digests.next();
    while (!e.done || !d.done) {
      if (d.done || (!e.done && e.value.seq < d.value.seq)) {
        io.out(escapeJson(JSON.stringify(e.value)));
        e = entries.next();
      } else {
        io.out(escapeJson(JSON.stringify({ kind: 'digest', ...d.value })));
        d = digests.next();
      }
    }
    return 0;
  } finally {
    log.close();
  }
}

/** Every item of a query paged by seq (oldest first), one page in memory at a time. */
function* paged<T extends { seq: number }>(page: (afterSeq: number) => T[]): Generator<T, void, undefined> {
  for (let after = 0; ; ) {
    const items = page(after);
    if (items.length === 0) return;
    yield* items;
    after = (items[items.length - 1] as T).seq;
  }
}

const CSV_FIELDS = ['seq', 'messageId', 'ts', 'from', 'to', 'type', 'intent', 'payloadHash', 'payloadBytes', 'decision', 'reason', 'rule', 'policyVersion', 'code', 'approval', 'decidedBy', 'outcome', 'conversationId', 'causationId', 'inReplyTo', 'truncated', 'refusals'] as const;

/** RFC 4180: every field quoted when it holds a comma or quote; a leading formula character is neutralised. */
function csvLine(e: MessageLogEntry): string {
  return CSV_FIELDS.map((k) => {
    const v = (e as unknown as Record<string, unknown>)[k];
    if (v === undefined) return '';
    // Control, escape and bidirectional characters are shown escaped: a CSV is read on screens and in spreadsheets.
    let s = escapeText(typeof v === 'object' ? JSON.stringify(v) : String(v));
    if (/^[=+\-@\t\r]/.test(s) && typeof v === 'string') s = `'${s}`;
    return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
  }).join(',');
}

function oneOf<T extends string>(option: string, value: string, allowed: readonly T[]): T {
  if ((allowed as readonly string[]).includes(value)) return value as T;
  throw new UsageError(`${option} must be one of ${allowed.join(', ')}, got "${value}"`);
}

/** A time: epoch milliseconds, or a date the Date parser reads (ISO 8601). */
function time(option: string, value: string): number {
  const ms = /^\d+$/.test(value) ? Number(value) : Date.parse(value);
  if (!Number.isFinite(ms)) throw new UsageError(`${option} must be a date (e.g. 2025-01-31T12:00:00Z) or epoch milliseconds, got "${value}"`);
  return ms;
}

function seqArg(option: string, value: string): number {
  const n = /^\d{1,15}$/.test(value) ? Number(value) : NaN;
  if (!Number.isSafeInteger(n)) throw new UsageError(`${option} must be a row number (a non-negative integer), got "${value}"`);
  return n;
}

function headArg(value: string): ChainHead {
  const m = /^(\d{1,15}):([0-9a-fA-F]{64})$/.exec(value);
  if (m === null) throw new UsageError(`--head must be SEQ:HASH (a row number, a colon and 64 hex characters: the value of the "head:" line "switchboard verify" prints), got "${value.slice(0, 100)}"`);
  return { seq: Number(m[1]), hash: (m[2] as string).toLowerCase() };
}


function onePath(positionals: string[], command: string): string {
  if (positionals.length === 0) throw new UsageError(`${command}: missing <db>`);
  if (positionals.length > 1) throw new UsageError(`${command}: unexpected argument "${positionals[1]}"`);
  return positionals[0] as string;
}

/** Opens read-only; undefined when there is no such file (it is never created). */
function openLog(path: string, key?: string): SqliteAuditLog | undefined {
  if (!existsSync(path)) return undefined;
  if (statSync(path).isDirectory()) throw new Error(`${path} is a directory, not an audit database`);
  return new SqliteAuditLog(key === undefined ? { path, readonly: true } : { path, readonly: true, key });
}

function notFound(path: string, io: CliIO): number {
  io.err(`switchboard: no such file: ${path}`);
  return 1;
}

const COLUMNS = [
  { title: 'TIME', max: 24 },
  { title: 'FROM', max: 24 },
  { title: 'TO', max: 24 },
  { title: 'TYPE', max: 8 },
  { title: 'INTENT', max: 24 },
  { title: 'DECISION', max: 8 },
  { title: 'OUTCOME', max: 11 },
  { title: 'APPROVAL', max: 28 },
  { title: 'RULE/CODE', max: 40 },
] as const;

/** An aligned table, one line per entry, newest first. */
function table(entries: readonly MessageLogEntry[]): string[] {
  if (entries.length === 0) return ['(no entries)'];
  const rows = entries.map((e) =>
    [
      isoTime(e.ts),
      e.from,
      e.to,
      e.type,
      e.intent,
      e.decision,
      e.outcome ?? '',
      e.approval === undefined ? '' : e.decidedBy === undefined ? e.approval : `${e.approval}/${e.decidedBy}`,
      e.refusals === undefined ? [e.code, e.rule].filter((v) => v !== undefined && v !== '').join('/') : tallyCell(e.refusals),
    ].map((cell, i) => cut(escapeText(cell === '' ? '-' : cell), e.refusals !== undefined && i === COLUMNS.length - 1 ? 120 : (COLUMNS[i]?.max ?? 24))),
  );
  const widths = COLUMNS.map((c, i) => Math.max(c.title.length, ...rows.map((r) => (r[i] as string).length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  return [line(COLUMNS.map((c) => c.title)), ...rows.map(line)];
}

/** A refusal-summary row's RULE/CODE cell: how many, by code, and since when (the TIME column is the last). */
function tallyCell(t: RefusalSummary): string {
  const codes = Object.entries(t.codes)
    .map(([code, n]) => `${code}×${n}`)
    .join(' ');
  return `${t.count} refused since ${isoTime(t.first)}: ${codes}`;
}

function isoTime(ts: number): string {
  const d = new Date(ts);
  return Number.isNaN(d.getTime()) ? String(ts) : d.toISOString();
}

function cut(s: string, max: number): string {
  return s.length <= max ? s : `${s.slice(0, max - 1)}…`;
}

function rows(count: number): string {
  return `${count} row${count === 1 ? '' : 's'}`;
}

function nonEmpty(s: string | undefined): string | undefined {
  return s === undefined || s === '' ? undefined : s;
}

function isParseArgsError(e: unknown): boolean {
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS_');
}

function isEntryPoint(): boolean {
  const entry = process.argv[1];
  if (entry === undefined) return false;
  try {
    return import.meta.url === pathToFileURL(realpathSync(entry)).href;
  } catch {
    return false;
  }
}

if (isEntryPoint()) {
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(0); // `switchboard log db | head`
    throw e;
  });
  void Promise.resolve(
    main(process.argv.slice(2), {
      out: (line) => process.stdout.write(`${line}\n`),
      err: (line) => process.stderr.write(`${line}\n`),
    }),
  ).then((code) => (process.exitCode = code));
}
