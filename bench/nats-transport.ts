// The NATS transport alone, for `npm run bench:nodes`: two natsTransport nodes, one
// serving an echo agent through a port that answers at once. No orchestrator, no checks, no
// audit: what the transport adds over NATS itself.
import type { Envelope } from '../src/envelope.js';
import { natsTransport } from '../src/nats/index.js';
import type { OutboundMessage, Transport } from '../src/pipeline/transport.js';

/** Two nodes on `url`: `ask(payload)` goes from node `a`'s `client` to node `b`'s `echo`. */
export async function natsTransportPair(url: string): Promise<{ ask(payload: unknown): Promise<unknown>; close(): Promise<void> }> {
  const bus = `bench${Math.random().toString(36).slice(2, 10)}`;
  const a: Transport = await natsTransport({ servers: url, bus, insecure: true });
  const b: Transport = await natsTransport({ servers: url, bus, insecure: true });
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
