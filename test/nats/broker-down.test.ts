// A broker that goes away under two nodes: cross-node sends fail closed at once with
// TRANSPORT_UNAVAILABLE (audited), local sends go on, and the nodes resume by themselves
// when the broker is back. Uses a nats-server of its own, so stopping it harms no other suite.
import { describe, expect, it } from 'vitest';
import { Orchestrator, type BusError } from '../../src/index.js';
import { natsTransport } from '../../src/nats/index.js';
import { natsBin, skip } from './context.js';
import { startNatsServer } from './server.js';

if (skip !== '') console.warn(`[nats] broker-down.test.ts skipped: ${skip}`);

const code = (p: Promise<unknown>) => p.then(
  () => 'resolved',
  (e: BusError) => e.code,
);

/** Retries `attempt` until it resolves, for at most `ms` (the reconnect is the client's own loop). */
async function eventually<T>(attempt: () => Promise<T>, ms: number): Promise<T> {
  const until = Date.now() + ms;
  for (;;) {
    try {
      return await attempt();
    } catch (e) {
      if (Date.now() > until) throw e;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

describe.skipIf(skip !== '')('a broker that cannot be reached', () => {
  it('fails cross-node sends at once with TRANSPORT_UNAVAILABLE, audited, lets local sends go on, and resumes after reconnecting', async () => {
    const server = await startNatsServer(natsBin);
    const policies = [
      { from: 'client', to: '*', allow: ['ask' as const] },
    ];
    const make = async (node: string) =>
      new Orchestrator({ node, policies, transport: await natsTransport({ servers: server.url, bus: 'down', insecure: true, leaseMs: 5_000 }) });
    const a = await make('a');
    const b = await make('b');
    try {
      const client = a.register('client');
      a.register('near', { handlers: { add: (p) => (p as { x: number }).x + 1 } });
      b.register('far', { handlers: { add: (p) => (p as { x: number }).x + 1 } });
      await Promise.all([a.ready(), b.ready()]);
      // At most once: a message lost while a connection settles is a TIMEOUT, so each try has a short deadline.
      await eventually(() => client.ask('far', 'add', { x: 1 }, { timeoutMs: 2_000 }), 20_000);

      await server.stop();
      // The client notices a closed socket on its own, soon on loopback (later on a loaded
      // machine); a send that races it is lost like any message in flight (TIMEOUT), so
      // probe with short deadlines until the node knows.
      await eventually(async () => {
        const c = await code(client.ask('far', 'add', { x: 1 }, { timeoutMs: 1_000 }));
        if (c !== 'TRANSPORT_UNAVAILABLE') throw new Error(`got ${c}`);
      }, 15_000);
      // From then on a send fails at once, never left to its 20 s deadline.
      const started = Date.now();
      expect(await code(client.ask('far', 'add', { x: 1 }, { timeoutMs: 20_000 }))).toBe('TRANSPORT_UNAVAILABLE');
      expect(Date.now() - started).toBeLessThan(5_000);
      await expect(client.ask('near', 'add', { x: 1 })).resolves.toBe(2);
      await a.flush();
      const row = a.getMessageLog({ agentId: 'far', limit: 1 })[0]!;
      expect(row).toMatchObject({ to: 'far', code: 'TRANSPORT_UNAVAILABLE' });

      await server.restart();
      await expect(eventually(() => client.ask('far', 'add', { x: 41 }, { timeoutMs: 2_000 }), 40_000)).resolves.toBe(42);
      expect(a.verifyAuditLog()).toMatchObject({ ok: true });
    } finally {
      await a.close();
      await b.close();
      await server.dispose();
    }
  }, 90_000);
});
