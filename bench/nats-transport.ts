// The NATS transport alone (issue 12): two natsTransport nodes, one serving an echo agent
// through a port that answers at once, measured beside bare NATS request/reply in the same
// run against the same server. No orchestrator, no checks, no audit: this is what the
// transport adds over NATS itself (headers, strict decode, the sender-node check).
//
//   npm run bench:nats-transport                                  starts a nats-server of its own
//   npm run bench:nats-transport -- --server=nats://127.0.0.1:4222 against a running one
//   npm run bench:nats-transport -- --quick                       smaller counts
import { performance } from 'node:perf_hooks';
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
  console.log(`bare NATS request/reply: ${Math.round(bare.asksPerSecond)} asks/s with 1000 in flight; unloaded p50 ${bare.p50.toFixed(3)} ms`);
  console.log(`natsTransport (no orchestrator): ${Math.round(t.asksPerSecond)} asks/s (${(t.asksPerSecond / bare.asksPerSecond).toFixed(2)}x); unloaded p50 ${t.p50.toFixed(3)} ms (${(t.p50 / bare.p50).toFixed(2)}x)`);
  await stop();
}
