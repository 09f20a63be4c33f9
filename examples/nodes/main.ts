// One bus, two processes, over NATS. Run it with `npm run example:nodes`.
//
// Starts a nats-server of its own (or uses NATS_URL), starts node "writers-1" in a child
// process (examples/nodes/worker-node.ts), and runs node "research-1" here: an ask, a delegate
// with progress and a call back across nodes, a broadcast notify, and a send the receiving
// node refuses. Each node keeps its own audit log.
// Inside this repository the imports are '../../src/…'; in your app they are
// 'agent-switchboard' and 'agent-switchboard/nats'.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { Orchestrator, isBusError } from '../../src/index.js';
import { natsTransport } from '../../src/nats/index.js';
import { findNatsServer, INSTALL_HINT, startNatsServer } from '../../scripts/nats-server.js';

let url = process.env.NATS_URL;
let stopServer = async () => {};
if (url === undefined) {
  const bin = findNatsServer();
  if (bin === undefined) {
    console.error(`This example needs a nats-server: ${INSTALL_HINT}, or set NATS_URL.`);
    process.exit(1);
  }
  const server = await startNatsServer(bin);
  url = server.url;
  stopServer = server.dispose;
  console.log(`started nats-server at ${url}`);
}

// Node 2, in a process of its own.
const worker = spawn(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'worker-node.ts'), url], { stdio: ['pipe', 'pipe', 'inherit'] });
worker.stdout!.pipe(process.stdout);
await new Promise<void>((resolve, reject) => {
  worker.stdout!.on('data', (chunk: Buffer) => chunk.toString().includes('ready') && resolve());
  worker.once('exit', (code) => reject(new Error(`the writers-1 node exited with ${code}`)));
});

// Node 1, here.
const bus = new Orchestrator({
  node: 'research-1',
  transport: await natsTransport({ servers: url, bus: 'example', insecure: true }),
  policies: [
    { from: 'research', to: 'writer', allow: ['ask', 'delegate', 'notify'] },
    { from: 'writer', to: 'research', allow: ['ask'], intents: ['clarify'] },
  ],
});
const research = bus.register('research', {
  handlers: { clarify: () => ({ audience: 'platform engineers' }) },
});
await bus.ready();

console.log('agents on the bus:', bus.agents().map((a) => `${a.id}@${(a as { node?: string }).node ?? bus.node}`).join(', '));

const job = research.delegate('writer', 'summarize', { text: 'NATS carries one bus across processes and machines' });
job.onProgress(({ fraction, note }) => console.log(`  progress ${fraction} ${note ?? ''}`));
console.log('delegate →', await job);

const receipt = await research.notify('news', { release: '0.2' });
console.log('notify receipt: delivered to', receipt.delivered);

try {
  await research.ask('writer', 'headline', { text: 'hello' });
} catch (error) {
  if (!isBusError(error)) throw error;
  console.log(`refused by the receiving node: ${error.code} (${error.message})`);
}

await bus.flush();
console.log(`research-1's log: ${bus.getMessageLog({ limit: 100 }).length} entries, verify →`, bus.verifyAuditLog().ok ? 'ok' : 'BROKEN');

await bus.close();
worker.stdin!.write('close\n');
await new Promise((resolve) => worker.once('exit', resolve));
await stopServer();
