// Cross-node asks (issue 12), measured beside bare NATS request/reply in the same run against
// the same server, 1000 in flight, plus the unloaded p50:
// - natsTransport alone: two nodes, one serving an echo agent through a port that answers at
//   once (no orchestrator, no checks, no audit): what the transport adds over NATS itself;
// - two Orchestrators over natsTransport, each with a file audit log (both nodes run in this
//   one process, so they share one CPU thread).
//
//   npm run bench:nats-transport                                  starts a nats-server of its own
//   npm run bench:nats-transport -- --server=nats://127.0.0.1:4222 against a running one
//   npm run bench:nats-transport -- --quick                       smaller counts
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Orchestrator } from '../src/index.js';
import type { Envelope } from '../src/envelope.js';
import { natsTransport } from '../src/nats/index.js';
import type { OutboundMessage, Transport } from '../src/pipeline/transport.js';
import { findNatsServer, INSTALL_HINT, startNatsServer } from '../test/nats/server.js';
import { natsBaseline } from './nats-baseline.js';

const PAYLOAD = { task: 'summarize', url: 'https://example.com/reports/q3.pdf', words: 120, tags: ['finance', 'quarterly'] };

/** Two nodes on `url`: `ask(payload)` goes from node `a`'s `client` to node `b`'s `echo`. */
export async function natsTransportPair(url: string): Promise<{ ask(payload: unknown): Promise<unknown>; close(): Promise<void> }> {
  const bus = `bench${Math.random().toString(36).slice(2, 10)}`;
  const a: Transport = await natsTransport({ servers: url, bus });
  const b: Transport = await natsTransport({ servers: url, bus });
  a.attach('a', { receive: () => ({ cancel() {} }) });
  b.attach('b', {
    receive(inbound, responder) {
      responder.reply(inbound.payloadJson);
      return { cancel() {} };
    },
  });
  await a.claim({ id: 'client', node: 'a', capabilities: [], trust: 0 });
  await b.claim({ id: 'echo', node: 'b', capabilities: [], trust: 0 });
  await Promise.all([a.ready(), b.ready()]);
  let n = 0;
  return {
    ask(payload) {
      return new Promise((resolve, reject) => {
        const envelope = { id: `m${n++}`, type: 'ask', from: 'client', to: 'echo', intent: 'echo', payload, ts: Date.now(), conversationId: 'c', priority: 'normal', depth: 0 } as unknown as Envelope;
        const outbound: OutboundMessage = { envelope, payloadJson: JSON.stringify(payload), budgetMs: 30_000, node: 'b' };
        a.send(outbound, {
          reply: (json) => resolve(JSON.parse(json)),
          error: (code, message) => reject(new Error(`${code}: ${message}`)),
          progress: () => {},
          dead: () => {},
        });
      });
    },
    async close() {
      await a.close();
      await b.close();
    },
  };
}

/** Two Orchestrators on `url`, each with a file audit log in `dir`: `a` on n1 asks `b` on n2. */
export async function crossNodePair(url: string, dir: string): Promise<{ ask(payload: unknown): Promise<unknown>; close(): Promise<void> }> {
  const bus = `bench${Math.random().toString(36).slice(2, 10)}`;
  const make = async (node: string) =>
    new Orchestrator({
      node,
      transport: await natsTransport({ servers: url, bus }),
      policies: [{ from: '*', to: '*', allow: ['ask', 'delegate', 'notify'] }],
      audit: { path: join(dir, `${node}.db`) },
      limits: { rate: false, maxQueue: 1_000_000 },
    });
  const n1 = await make('n1');
  const n2 = await make('n2');
  n2.register('b', { handlers: { echo: (p) => p } });
  const a = n1.register('a');
  await Promise.all([n1.ready(), n2.ready()]);
  return {
    ask: (payload) => a.ask('b', 'echo', payload, { timeoutMs: 60_000 }),
    async close() {
      await n1.close();
      await n2.close();
    },
  };
}

async function measure(ask: (p: unknown) => Promise<unknown>, quick: boolean): Promise<{ asksPerSecond: number; p50: number }> {
  const total = quick ? 20_000 : 100_000;
  const loop = async (count: number) => {
    let sent = 0;
    const lane = async () => {
      while (sent < count) {
        sent++;
        await ask(PAYLOAD);
      }
    };
    await Promise.all(Array.from({ length: 1000 }, lane));
  };
  await loop(total / 5);
  const started = performance.now();
  await loop(total);
  const asksPerSecond = total / ((performance.now() - started) / 1000);
  const count = quick ? 1_000 : 5_000;
  const times = new Float64Array(count);
  for (let i = 0; i < count; i++) {
    const t = performance.now();
    await ask(PAYLOAD);
    times[i] = performance.now() - t;
  }
  times.sort();
  return { asksPerSecond, p50: times[Math.floor(count * 0.5)]! };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const args = process.argv.slice(2);
  const quick = args.includes('--quick');
  let url = args.find((a) => a.startsWith('--server='))?.slice(9);
  let stop = async () => {};
  if (url === undefined) {
    const bin = findNatsServer();
    if (bin === undefined) {
      console.error(`nats-server not found: ${INSTALL_HINT}`);
      process.exit(1);
    }
    const server = await startNatsServer(bin);
    url = server.url;
    stop = server.dispose;
  }
  const bare = await natsBaseline(url, quick);
  const pair = await natsTransportPair(url);
  const t = await measure(pair.ask, quick);
  await pair.close();
  const dir = mkdtempSync(join(tmpdir(), 'switchboard-xbench-'));
  const buses = await crossNodePair(url, dir);
  const x = await measure(buses.ask, quick);
  await buses.close();
  rmSync(dir, { recursive: true, force: true });
  const vs = (r: { asksPerSecond: number; p50: number }) =>
    `${Math.round(r.asksPerSecond)} asks/s (${(r.asksPerSecond / bare.asksPerSecond).toFixed(2)}x); unloaded p50 ${r.p50.toFixed(3)} ms (${(r.p50 / bare.p50).toFixed(2)}x)`;
  console.log(`bare NATS request/reply: ${Math.round(bare.asksPerSecond)} asks/s with 1000 in flight; unloaded p50 ${bare.p50.toFixed(3)} ms`);
  console.log(`natsTransport alone: ${vs(t)}`);
  console.log(`two Orchestrators, file audit on both: ${vs(x)}`);
  await stop();
}
