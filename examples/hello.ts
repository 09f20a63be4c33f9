// Two agents, one rule, one ask. Run it with `npx tsx examples/hello.ts`.
// Inside this repository the import is '../src/index.js'; in your app it is 'agent-switchboard'.
import { fileURLToPath } from 'node:url';
import { Orchestrator, isBusError, type OrchestratorOptions } from '../src/index.js';

/** Builds the bus and both agents: a fresh, independent app each call (a test can import it). */
export function createApp(options: OrchestratorOptions = {}) {
  const bus = new Orchestrator({
    // Default deny: this one rule is the only thing anyone may send.
    policies: [{ from: 'research', to: 'writer', allow: ['ask'], intents: ['clarify'] }],
    ...options,
  });

  const writer = bus.register('writer', {
    handlers: {
      // A handler gets a deep-frozen copy of the payload; what it returns is the reply.
      clarify: (payload) => {
        const { q } = payload as { q: string };
        return { q, answer: 'platform engineers, under 100 words' };
      },
    },
  });
  const research = bus.register('research');

  return { bus, writer, research };
}

// Run only when executed directly, not when a test imports createApp().
if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { bus, research } = createApp();

  const answer = await research.ask('writer', 'clarify', { q: 'Who is the audience?' });
  console.log('writer answered:', answer);

  // No rule allows the intent "publish": the promise rejects with a BusError.
  try {
    await research.ask('writer', 'publish', { draft: '...' });
  } catch (error) {
    if (!isBusError(error)) throw error;
    console.log(`refused: ${error.code}: ${error.message}`);
  }

  for (const entry of bus.getMessageLog().reverse()) {
    console.log(`audit: ${entry.from} -> ${entry.to} ${entry.type} ${entry.intent}: ${entry.decision}${entry.outcome ? `, ${entry.outcome}` : ''}${entry.code ? ` (${entry.code})` : ''}`);
  }
  console.log('verify:', bus.verifyAuditLog());
  await bus.close();
}
