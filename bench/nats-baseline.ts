// Bare NATS request/reply: the floor the cross-node figure is put beside. A
// responder and a requester on two connections to the same server, JSON payloads as the bus
// sends them, no checks, no audit. Measures asks/s with 1000 in flight and the unloaded p50.
//
//   npm run bench:nats                                  starts a nats-server of its own
//   npm run bench:nats -- --server=nats://127.0.0.1:4222 against a running one
//   npm run bench:nats -- --quick                       smaller counts
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { findNatsServer, INSTALL_HINT, startNatsServer } from '../scripts/nats-server.js';

/** About 120 bytes of JSON, like bench/run.ts's payload. */
const PAYLOAD = { task: 'summarize', url: 'https://example.com/reports/q3.pdf', words: 120, tags: ['finance', 'quarterly'] };

/** Answers every request on `subject` with its payload (JSON decoded and encoded again, as the bus does); resolves to its close. */
export async function natsResponder(url: string, subject: string): Promise<() => Promise<void>> {
  const server: NatsConnection = await connect({ servers: url });
  const enc = new TextEncoder();
  const dec = new TextDecoder();
  server.subscribe(subject, {
    callback: (_e, m) => {
      m.respond(enc.encode(JSON.stringify(JSON.parse(dec.decode(m.data)))));
    },
  });
  await server.flush();
  return () => server.drain();
}

/** Asks on `subject` (JSON payloads), for a responder elsewhere. */
export async function natsRequester(url: string, subject: string): Promise<{ ask(payload: unknown): Promise<unknown>; close(): Promise<void> }> {
  const client: NatsConnection = await connect({ servers: url });
  const enc = new TextEncoder();
  const dec = new TextDecoder();
  return {
    async ask(payload) {
      const m = await client.request(subject, enc.encode(JSON.stringify(payload)), { timeout: 30_000 });
      return JSON.parse(dec.decode(m.data));
    },
    close: () => client.drain(),
  };
}

/** A requester/responder pair over NATS on two connections of this process, with the `Asker` shape of bench/run.ts. */
export async function natsRequestReply(url: string): Promise<{ ask(payload: unknown): Promise<unknown>; close(): Promise<void> }> {
  const subject = `bench.echo.${Math.random().toString(36).slice(2)}`;
  const closeResponder = await natsResponder(url, subject);
  const requester = await natsRequester(url, subject);
  return {
    ask: requester.ask,
    async close() {
      await requester.close();
      await closeResponder();
    },
  };
}

async function closedLoop(ask: (p: unknown) => Promise<unknown>, total: number, inFlight: number, times?: number[]): Promise<void> {
  let sent = 0;
  const lane = async () => {
    while (sent < total) {
      sent++;
      const t = times === undefined ? 0 : performance.now();
      await ask(PAYLOAD);
      if (times !== undefined) times.push(performance.now() - t);
    }
  };
  await Promise.all(Array.from({ length: inFlight }, lane));
}

/** What the NATS benches report for one way of asking. */
export interface AskFigures {
  asksPerSecond: number;
  p50: number;
  p99: number;
  /** p95 of the asks measured for throughput (1000 in flight), in ms. */
  loadedP95: number;
  /** CPU time per ask of this process (every thread), and of the responder's when it runs apart, while 1000 were in flight, in µs. */
  cpuPerAsk: number;
  /** CPU time per ask of the nats-server process in the same window, in µs (NaN when not known). */
  serverCpuPerAsk: number;
}

/** User + system CPU time of process `pid` so far, in µs (NaN when it cannot be read). */
export function processCpu(pid: number | undefined): number {
  if (pid === undefined || pid <= 0) return Number.NaN;
  try {
    // Fields 14 and 15 of /proc/<pid>/stat (after the parenthesised name): utime and stime in clock ticks.
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1e6) / 100;
  } catch {
    return Number.NaN;
  }
}

/**
 * Asks/s with 1000 in flight (after a warm-up of a fifth as many) and the p50/p99 of one ask
 * at a time, in ms: the one measurement every NATS bench applies to its `ask`.
 */
export async function measureAsker(ask: (payload: unknown) => Promise<unknown>, quick = false, serverPid?: number, responderPid?: number): Promise<AskFigures> {
  const total = quick ? 20_000 : 100_000;
  await closedLoop(ask, total / 5, 1000);
  const started = performance.now();
  const cpu = process.cpuUsage();
  const serverCpu = processCpu(serverPid);
  const responderCpu = responderPid === undefined ? 0 : processCpu(responderPid);
  const loaded: number[] = [];
  await closedLoop(ask, total, 1000, loaded);
  const used = process.cpuUsage(cpu);
  const responderUsed = responderPid === undefined ? 0 : processCpu(responderPid) - responderCpu;
  const cpuPerAsk = (used.user + used.system + responderUsed) / total;
  const serverCpuPerAsk = (processCpu(serverPid) - serverCpu) / total;
  loaded.sort((a, b) => a - b);
  const asksPerSecond = total / ((performance.now() - started) / 1000);
  const count = quick ? 1_000 : 5_000;
  const times = new Float64Array(count);
  for (let i = 0; i < count; i++) {
    const t = performance.now();
    await ask(PAYLOAD);
    times[i] = performance.now() - t;
  }
  times.sort();
  return {
    asksPerSecond,
    p50: times[Math.floor(count * 0.5)]!,
    p99: times[Math.floor(count * 0.99)]!,
    loadedP95: loaded[Math.floor(loaded.length * 0.95)]!,
    cpuPerAsk,
    serverCpuPerAsk,
  };
}

/** Latency at a fixed offered rate: what seed 000's "p95 under 100 ms at 10,000 messages/s" asks. */
export interface RateFigures {
  /** Asks per second offered (each ask and its reply are two messages). */
  offered: number;
  /** Asks per second answered over the window. */
  achieved: number;
  /** Latency from each ask's scheduled time to its answer, in ms (queueing included). */
  p50: number;
  p95: number;
  p99: number;
}

/**
 * Offers `rate` asks/s for `seconds` (after a second of warm-up at that rate), in batches on
 * each millisecond tick, without waiting for answers (an open loop). Each latency runs from
 * the ask's scheduled time, so a bus that falls behind shows it instead of slowing the load.
 */
export async function measureRate(ask: (payload: unknown) => Promise<unknown>, rate: number, seconds: number): Promise<RateFigures> {
  const run = async (window: number, times: number[] | undefined) => {
    const total = Math.round(rate * window);
    const started = performance.now();
    const pending: Promise<unknown>[] = [];
    let sent = 0;
    while (sent < total) {
      const due = Math.min(total, Math.floor(((performance.now() - started) / 1000) * rate) + 1);
      for (; sent < due; sent++) {
        const scheduled = started + (sent * 1000) / rate;
        pending.push(ask(PAYLOAD).then(() => times?.push(performance.now() - scheduled)));
      }
      await new Promise((r) => setTimeout(r, 1));
    }
    await Promise.all(pending);
    return total / ((performance.now() - started) / 1000);
  };
  await run(1, undefined);
  const times: number[] = [];
  const achieved = await run(seconds, times);
  times.sort((a, b) => a - b);
  const at = (q: number) => times[Math.min(times.length - 1, Math.floor(times.length * q))]!;
  return { offered: rate, achieved, p50: at(0.5), p95: at(0.95), p99: at(0.99) };
}

/** Bare NATS request/reply, measured by {@link measureAsker}. */
export async function natsBaseline(url: string, quick = false, serverPid?: number): Promise<AskFigures> {
  const a = await natsRequestReply(url);
  try {
    return await measureAsker(a.ask, quick, serverPid);
  } finally {
    await a.close();
  }
}

/** The server a bench runs against: `--server=URL`, else a nats-server of its own (exits when none is installed). */
export async function benchServer(args: readonly string[]): Promise<{ url: string; pid?: number; stop(): Promise<void> }> {
  const given = args.find((a) => a.startsWith('--server='))?.slice(9);
  if (given !== undefined) return { url: given, stop: async () => {} };
  const bin = findNatsServer();
  if (bin === undefined) {
    console.error(`nats-server not found: ${INSTALL_HINT}`);
    process.exit(1);
  }
  const server = await startNatsServer(bin);
  return { url: server.url, pid: server.pid, stop: server.dispose };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const args = process.argv.slice(2);
  const quick = args.includes('--quick');
  const { url, stop } = await benchServer(args);
  const r = await natsBaseline(url, quick);
  console.log(`bare NATS request/reply (${url}): ${Math.round(r.asksPerSecond)} asks/s with 1000 in flight; unloaded p50 ${r.p50.toFixed(3)} ms, p99 ${r.p99.toFixed(3)} ms`);
  await stop();
}
