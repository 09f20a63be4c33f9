// Bare NATS request/reply: the floor the cross-node figure is put beside. A
// responder and a requester on two connections to the same server, JSON payloads as the bus
// sends them, no checks, no audit. Measures asks/s with 1000 in flight and the unloaded p50.
//
//   npm run bench:nats                                  starts a nats-server of its own
//   npm run bench:nats -- --server=nats://127.0.0.1:4222 against a running one
//   npm run bench:nats -- --quick                       smaller counts
import { performance } from 'node:perf_hooks';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { findNatsServer, INSTALL_HINT, startNatsServer } from '../scripts/nats-server.js';

/** About 120 bytes of JSON, like bench/run.ts's payload. */
const PAYLOAD = { task: 'summarize', url: 'https://example.com/reports/q3.pdf', words: 120, tags: ['finance', 'quarterly'] };

/** A requester/responder pair over NATS with the `Asker` shape of bench/run.ts. */
export async function natsRequestReply(url: string): Promise<{ ask(payload: unknown): Promise<unknown>; close(): Promise<void> }> {
  const server: NatsConnection = await connect({ servers: url });
  const client: NatsConnection = await connect({ servers: url });
  const subject = `bench.echo.${Math.random().toString(36).slice(2)}`;
  const enc = new TextEncoder();
  const dec = new TextDecoder();
  server.subscribe(subject, {
    callback: (_e, m) => {
      m.respond(enc.encode(JSON.stringify(JSON.parse(dec.decode(m.data)))));
    },
  });
  await server.flush();
  return {
    async ask(payload) {
      const m = await client.request(subject, enc.encode(JSON.stringify(payload)), { timeout: 30_000 });
      return JSON.parse(dec.decode(m.data));
    },
    async close() {
      await client.drain();
      await server.drain();
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
}

/**
 * Asks/s with 1000 in flight (after a warm-up of a fifth as many) and the p50/p99 of one ask
 * at a time, in ms: the one measurement every NATS bench applies to its `ask`.
 */
export async function measureAsker(ask: (payload: unknown) => Promise<unknown>, quick = false): Promise<AskFigures> {
  const total = quick ? 20_000 : 100_000;
  await closedLoop(ask, total / 5, 1000);
  const started = performance.now();
  const loaded: number[] = [];
  await closedLoop(ask, total, 1000, loaded);
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
  return { asksPerSecond, p50: times[Math.floor(count * 0.5)]!, p99: times[Math.floor(count * 0.99)]!, loadedP95: loaded[Math.floor(loaded.length * 0.95)]! };
}

/** Bare NATS request/reply, measured by {@link measureAsker}. */
export async function natsBaseline(url: string, quick = false): Promise<AskFigures> {
  const a = await natsRequestReply(url);
  try {
    return await measureAsker(a.ask, quick);
  } finally {
    await a.close();
  }
}

/** The server a bench runs against: `--server=URL`, else a nats-server of its own (exits when none is installed). */
export async function benchServer(args: readonly string[]): Promise<{ url: string; stop(): Promise<void> }> {
  const given = args.find((a) => a.startsWith('--server='))?.slice(9);
  if (given !== undefined) return { url: given, stop: async () => {} };
  const bin = findNatsServer();
  if (bin === undefined) {
    console.error(`nats-server not found: ${INSTALL_HINT}`);
    process.exit(1);
  }
  const server = await startNatsServer(bin);
  return { url: server.url, stop: server.dispose };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const args = process.argv.slice(2);
  const quick = args.includes('--quick');
  const { url, stop } = await benchServer(args);
  const r = await natsBaseline(url, quick);
  console.log(`bare NATS request/reply (${url}): ${Math.round(r.asksPerSecond)} asks/s with 1000 in flight; unloaded p50 ${r.p50.toFixed(3)} ms, p99 ${r.p99.toFixed(3)} ms`);
  await stop();
}
