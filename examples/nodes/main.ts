// One bus, two processes, over NATS: a signed, sealed fleet from `fleet init` to a verified
// log. Run it with `npm run example:nodes`.
//
// 1. `switchboard fleet init` writes the roster, each node's seed and the server's auth.conf.
// 2. A nats-server of its own starts with that auth.conf (or NATS_URL is used as given).
// 3. The operator creates the claims bucket (`switchboard fleet bucket`).
// 4. Node "writers-1" runs in a child process (examples/nodes/worker-node.ts), node
//    "research-1" here: an ask, a delegate with progress and a call back across nodes, a
//    broadcast notify, and a send the receiving node refuses. Every message is signed by its
//    node and sealed for the other (seal: 'always'); each node keeps its own audit log.
// 5. `switchboard verify <db> --roster roster.json` checks each log's chain and every proof a
//    peer sent with its messages.
// Inside this repository the imports are '../../src/…'; in your app they are
// 'agent-switchboard' and 'agent-switchboard/nats', and the CLI is `npx switchboard`.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { main as switchboard } from '../../src/cli/main.js';
import { Orchestrator, isBusError } from '../../src/index.js';
import { natsTransport } from '../../src/nats/index.js';
import { findNatsServer, INSTALL_HINT, startNatsServer } from '../../scripts/nats-server.js';

const cli = async (...args: string[]) => {
  console.log(`$ switchboard ${args.join(' ')}`);
  const code = await switchboard(args, { out: (l) => console.log(`  ${l}`), err: (l) => console.error(`  ${l}`) });
  if (code !== 0) throw new Error(`switchboard ${args[0]} exited with ${code}`);
};

// 1. The fleet's keys and configuration.
const dir = mkdtempSync(join(tmpdir(), 'switchboard-example-fleet-'));
writeFileSync(join(dir, 'fleet.json'), JSON.stringify({ bus: 'example', nodes: { 'research-1': ['research'], 'writers-1': ['writer'] }, operators: ['ops'] }));
await cli('fleet', 'init', join(dir, 'fleet.json'), '--out', dir);

// 2. The broker, with the generated authorization block.
let url = process.env.NATS_URL;
let stopServer = async () => {};
if (url === undefined) {
  const bin = findNatsServer();
  if (bin === undefined) {
    console.error(`This example needs a nats-server: ${INSTALL_HINT}, or set NATS_URL.`);
    process.exit(1);
  }
  const server = await startNatsServer(bin, { extraConfig: readFileSync(join(dir, 'auth.conf'), 'utf8') });
  url = server.url;
  stopServer = server.dispose;
  console.log(`started nats-server at ${url} with ${join(dir, 'auth.conf')}`);
}

// 3. The claims bucket, by the operator.
await cli('fleet', 'bucket', '--servers', url, '--creds', join(dir, 'ops.nk'), '--roster', join(dir, 'roster.json'));

// 4. Node 2, in a process of its own.
const worker = spawn(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'worker-node.ts'), url, dir], { stdio: ['pipe', 'pipe', 'inherit'] });
worker.stdout!.pipe(process.stdout);
await new Promise<void>((resolve, reject) => {
  worker.stdout!.on('data', (chunk: Buffer) => chunk.toString().includes('ready') && resolve());
  worker.once('exit', (code) => reject(new Error(`the writers-1 node exited with ${code}`)));
});

// Node 1, here.
const bus = new Orchestrator({
  node: 'research-1',
  transport: await natsTransport({
    servers: url,
    bus: 'example',
    roster: join(dir, 'roster.json'),
    nkeySeed: readFileSync(join(dir, 'research-1.nk'), 'utf8'),
    seal: 'always',
  }),
  audit: { path: join(dir, 'research-1.db') },
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

// 5. Each log: its chain, and every proof its peer sent with a message.
await cli('verify', join(dir, 'research-1.db'), '--roster', join(dir, 'roster.json'));
await cli('verify', join(dir, 'writers-1.db'), '--roster', join(dir, 'roster.json'));
rmSync(dir, { recursive: true, force: true });
