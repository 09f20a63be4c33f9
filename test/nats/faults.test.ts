import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { BusError } from '../../src/errors.js';
import { NodeConnection } from '../../src/nats/connection.js';
import { Link } from '../../src/nats/link.js';
import { Subjects } from '../../src/nats/subjects.js';
import { natsUrl, skip } from './context.js';

if (skip !== '') console.warn(`[nats] faults.test.ts skipped: ${skip}`);

const child = join(import.meta.dirname, '..', 'fixtures', 'nats-node-child.ts');

function ask(link: Link, id: string, budgetMs: number): Promise<BusError> {
  return new Promise((resolve, reject) =>
    link.request(
      { id, type: 'ask', from: 'client', to: 'worker', intent: 'work', ts: Date.now(), conversationId: 'c', depth: 0, priority: 'normal', budgetMs, payloadJson: '{}' },
      { reply: () => reject(new Error('unexpected reply')), error: resolve },
    ),
  );
}

describe.skipIf(skip !== '')('a node killed with SIGKILL mid-request', () => {
  it("ends its peer's pending ask by the deadline, then fails new asks at once with UNKNOWN_AGENT", async () => {
    const subjects = new Subjects(`f${process.pid}`);
    const proc = spawn(process.execPath, ['--import', 'tsx', child, natsUrl, subjects.bus], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    const waitFor = (text: string) =>
      new Promise<void>((resolve, reject) => {
        const check = () => out.includes(text) && resolve();
        proc.stdout!.on('data', (c: Buffer) => {
          out += c.toString();
          check();
        });
        proc.once('exit', (code) => reject(new Error(`child exited (${code}) before "${text}": ${out}`)));
        check();
      });
    await waitFor('ready');

    const conn = await NodeConnection.open({ servers: natsUrl, inboxPrefix: subjects.inboxPrefix('parent') });
    const link = new Link({ connection: conn, subjects, node: 'parent', maxPayloadBytes: 1024 });
    const pending = ask(link, 'm-pending', 1500);
    await waitFor('got m-pending');
    const exited = new Promise((r) => proc.once('exit', r));
    process.kill(proc.pid!, 'SIGKILL');
    await exited;

    expect(await pending).toMatchObject({ code: 'TIMEOUT', messageId: 'm-pending' });
    // The server drops a dead client's subscriptions once it notices the closed socket.
    expect(await ask(link, 'm-after', 10_000)).toMatchObject({ code: 'UNKNOWN_AGENT', agentId: 'worker' });
    expect(link.pendingCount).toBe(0);
    link.close();
    await conn.close();
  });
});
