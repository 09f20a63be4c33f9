// Node "writers-1" of the nodes example, in a process of its own: serves the `writer` agent.
// Started by examples/nodes/main.ts with the NATS URL and the fleet's directory (its roster
// and this node's seed); prints "ready" once reachable bus-wide.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Orchestrator } from '../../src/index.js';
import { natsTransport } from '../../src/nats/index.js';

const [url, dir] = process.argv.slice(2);
if (url === undefined || dir === undefined) throw new Error('usage: worker-node.ts <nats-url> <fleet-dir>');

const bus = new Orchestrator({
  node: 'writers-1',
  transport: await natsTransport({
    servers: url,
    bus: 'example',
    roster: join(dir, 'roster.json'),
    nkeySeed: readFileSync(join(dir, 'writers-1.nk'), 'utf8'),
    seal: 'always',
  }),
  audit: { path: join(dir, 'writers-1.db') },
  // The receiving node's rules decide what reaches its agents.
  policies: [
    { from: 'research', to: 'writer', allow: ['ask', 'delegate', 'notify'] },
    // This node refuses headlines, whatever the sender's node allows: its decision counts.
    { from: 'research', to: 'writer', deny: ['ask'], intents: ['headline'] },
    { from: 'writer', to: 'research', allow: ['ask'], intents: ['clarify'] },
  ],
});

bus.register('writer', {
  handlers: {
    summarize: async (payload, ctx) => {
      const { text } = payload as { text: string };
      ctx.progress(0.5, 'outlined');
      // Reentrancy across nodes: ask the sender's node back before answering.
      const { audience } = (await ctx.ask('research', 'clarify', { q: 'who reads this?' })) as { audience: string };
      return { summary: `${text.split(' ').slice(0, 4).join(' ')}… (for ${audience})` };
    },
    headline: (payload) => ({ headline: String((payload as { text: string }).text).toUpperCase() }),
    news: (payload) => console.log(`  [writers-1] writer heard: ${JSON.stringify(payload)}`),
  },
});

await bus.ready();
console.log('  [writers-1] ready: serving writer');
process.stdin.on('data', async () => {
  await bus.close();
  process.exit(0);
});
