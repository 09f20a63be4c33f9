// Where the time of one cross-node ask goes: two nodes in this process (bench/node-pair.ts),
// one ask at a time, timestamps taken at the boundaries nobody has to edit src for: the ask
// call, each socket write and read (the bytes leaving and reaching each node), the echo
// handler, each audit commit (SqliteAuditLog#append, WorkerAuditLog#appendAsync and its
// answer), and the ask's resolution. Prints the median of each gap per audit mode, beside
// bare NATS request/reply in the same run. For points inside src, add
// `(globalThis as any).__mark?.('label')` calls there while tracing (this script sets
// `__mark`), and take them out again.
//
//   npx tsx scripts/ask-trace.ts                      off, memory, file (worker), file (inline)
//   npx tsx scripts/ask-trace.ts --only=off,null,encode,memory   rows built but kept nowhere (null) or only encoded
//   npx tsx scripts/ask-trace.ts --asks=3000 --only=file,file-inline --rounds=3
import { Socket } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { SqliteAuditLog } from '../src/audit/sqlite.js';
import { WorkerAuditLog } from '../src/audit/worker-log.js';
import type { AuditRecord } from '../src/audit/types.js';
import type { BusError } from '../src/errors.js';
import { natsRequestReply, benchServer } from '../bench/nats-baseline.js';
import { makeNode, untilEchoAnswers, type PairSetup } from '../bench/node-pair.js';
import { Orchestrator } from '../src/index.js';
import { natsTransport } from '../src/nats/index.js';
import { encodeBatches } from '../src/audit/encode.js';

const args = process.argv.slice(2);
const flag = (name: string) => args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
const asks = Number(flag('asks') ?? 2000);
const rounds = Number(flag('rounds') ?? 1);
const modes = (flag('only') ?? 'off,memory,file,file-inline').split(',');

const PAYLOAD = { task: 'summarize', url: 'https://example.com/reports/q3.pdf', words: 120, tags: ['finance', 'quarterly'] };

/** The events of the ask being traced, in order: [label, ms]. */
let events: [string, number][] | undefined;
let bus = '';
const mark = (label: string) => events?.push([label, performance.now()]);
(globalThis as { __mark?: unknown }).__mark = mark;

/** Which node a record belongs to (its own node id), for the commit labels. */
const nodeOf = (records: readonly AuditRecord[]) => String((records[0] as { node?: unknown } | undefined)?.node ?? '?').replace('bench-', '');
const kinds = (records: readonly AuditRecord[]) => records.map((r) => `${(r as { type?: string }).type ?? r.kind}`).join('+');

const syncAppend = SqliteAuditLog.prototype.append;
SqliteAuditLog.prototype.append = function (this: SqliteAuditLog, records: readonly AuditRecord[]) {
  const who = `${nodeOf(records)} ${kinds(records)}`;
  mark(`${who} commit start`);
  try {
    return syncAppend.call(this, records);
  } finally {
    mark(`${who} commit end`);
  }
};
const asyncAppend = WorkerAuditLog.prototype.appendAsync;
WorkerAuditLog.prototype.appendAsync = function (this: WorkerAuditLog, records: readonly AuditRecord[], done: (error?: BusError) => void) {
  const who = `${nodeOf(records)} ${kinds(records)}`;
  mark(`${who} to worker`);
  return asyncAppend.call(this, records, (error?: BusError) => {
    mark(`${who} worker answered`);
    done(error);
  });
};

// Bytes leaving and arriving, told apart by what they carry.
const write = Socket.prototype.write;
Socket.prototype.write = function (this: Socket, chunk: unknown, ...rest: unknown[]) {
  if (events !== undefined && chunk instanceof Uint8Array) {
    const head = Buffer.from(chunk.buffer, chunk.byteOffset, Math.min(chunk.length, 120)).toString('latin1');
    if (head.includes(`PUB ${bus}.in.echo.`)) mark('A write ask');
    else if (head.includes(`PUB ${bus}._r.`)) mark('B write reply');
  }
  return (write as (...a: unknown[]) => boolean).call(this, chunk, ...rest);
} as typeof write;
const emit = Socket.prototype.emit;
Socket.prototype.emit = function (this: Socket, name: string | symbol, ...rest: unknown[]) {
  if (events !== undefined && name === 'data' && rest[0] instanceof Uint8Array) {
    const chunk = rest[0];
    const head = Buffer.from(chunk.buffer, chunk.byteOffset, Math.min(chunk.length, 120)).toString('latin1');
    if (head.includes(`MSG ${bus}.in.echo.`)) mark('B read ask');
    else if (head.includes(`MSG ${bus}._r.`)) mark('A read reply');
  }
  return (emit as (this: Socket, name: string | symbol, ...a: unknown[]) => boolean).call(this, name, ...rest);
} as typeof emit;

const median = (xs: number[]) => (xs.length === 0 ? NaN : [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!);

async function timeBare(url: string): Promise<number> {
  const a = await natsRequestReply(url);
  for (let i = 0; i < 500; i++) await a.ask(PAYLOAD);
  const t: number[] = [];
  for (let i = 0; i < asks; i++) {
    const s = performance.now();
    await a.ask(PAYLOAD);
    t.push(performance.now() - s);
  }
  await a.close();
  return median(t);
}

async function traceMode(url: string, dir: string, mode: string, run: number): Promise<{ p50: number; bySequence: Map<string, number[][]> }> {
  const audit = mode === 'off' ? 'off' : mode === 'memory' ? 'memory' : 'file';
  const setup: PairSetup = { url, bus: `trace${run}${mode.replace('-', '')}`, audit, trust: 'insecure', dir, ...(mode === 'file-inline' ? { auditWorker: false } : {}) };
  bus = setup.bus;
  // `null`: rows built, hashed and handed to a log that keeps nothing; `encode`: also encoded
  // as the worker log encodes them: what the audit costs besides SQLite and the worker.
  const fake = async (id: string) =>
    new Orchestrator({
      node: id,
      transport: await natsTransport({ servers: url, bus: setup.bus, insecure: true }),
      policies: [{ from: 'client', to: 'echo', allow: ['ask'] }],
      limits: { rate: false },
      audit: { append: mode === 'encode' ? (records) => void encodeBatches(records) : () => undefined, query: () => [], verify: () => ({ ok: true, checked: 0 }), close: () => undefined },
    });
  const fakeMode = mode === 'null' || mode === 'encode';
  const a = fakeMode ? await fake('bench-a') : await makeNode(setup, 'bench-a');
  const b = fakeMode ? await fake('bench-b') : await makeNode(setup, 'bench-b');
  b.register('echo', {
    concurrency: 10_000,
    handlers: {
      echo: (payload) => {
        mark('B handler');
        return payload;
      },
    },
  });
  await b.ready();
  const client = a.register('client');
  await a.ready();
  await untilEchoAnswers(client);
  for (let i = 0; i < 500; i++) await client.ask('echo', 'echo', PAYLOAD);
  /** The asks' gaps (µs), by the sequence of events they went through. */
  const bySequence = new Map<string, number[][]>();
  const totals: number[] = [];
  for (let i = 0; i < asks; i++) {
    events = [];
    mark('ask');
    await client.ask('echo', 'echo', PAYLOAD);
    mark('resolved');
    const ev = events;
    events = undefined;
    totals.push(ev[ev.length - 1]![1] - ev[0]![1]);
    const key = ev.map((e) => e[0]).join('\n');
    let list = bySequence.get(key);
    if (list === undefined) bySequence.set(key, (list = []));
    list.push(ev.slice(1).map((e, j) => (e[1] - ev[j]![1]) * 1000));
  }
  await a.close();
  await b.close();
  return { p50: median(totals), bySequence };
}

const server = await benchServer(args);
const dir = mkdtempSync(join(tmpdir(), 'switchboard-ask-trace-'));
console.log(`load average ${loadavg().map((l) => l.toFixed(2)).join(' ')} at the start; ${asks} asks one at a time per mode, ${rounds} round(s)`);
for (let run = 0; run < rounds; run++) {
  const bare = await timeBare(server.url);
  console.log(`\nround ${run + 1}: bare NATS request/reply p50 ${(bare * 1000).toFixed(0)} µs`);
  for (const mode of modes) {
    const { p50, bySequence } = await traceMode(server.url, dir, mode, run);
    console.log(`\n${mode}: p50 ${(p50 * 1000).toFixed(0)} µs = ${(p50 / bare).toFixed(2)}× bare`);
    // The two most common orders of events, each with the median of each gap and of its total.
    const common = [...bySequence].sort((x, y) => y[1].length - x[1].length).slice(0, 2);
    for (const [key, list] of common) {
      const labels = key.split('\n');
      const total = median(list.map((gaps) => gaps.reduce((s, g) => s + g, 0)));
      console.log(`  ${list.length} of ${asks} asks in this order, total ${total.toFixed(0)} µs:`);
      for (let j = 1; j < labels.length; j++) console.log(`    ${`${labels[j - 1]} → ${labels[j]}`.padEnd(60)} ${median(list.map((g) => g[j - 1]!)).toFixed(0).padStart(6)} µs`);
    }
  }
}
console.log(`\nload average ${loadavg().map((l) => l.toFixed(2)).join(' ')} at the end`);
await server.stop();
rmSync(dir, { recursive: true, force: true });
