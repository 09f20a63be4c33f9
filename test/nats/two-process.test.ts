// One bus across two processes over a real nats-server: the parent test process is node
// `n1` (agent `client`), a child process is node `n2` (agent `worker`, see
// test/fixtures/bus-node-child.ts). Everything crosses NATS through the public API only.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Orchestrator, type BusError } from '../../src/index.js';
import { natsTransport } from '../../src/nats/index.js';
import { natsUrl, skip } from './context.js';

if (skip !== '') console.warn(`[nats] two-process.test.ts skipped: ${skip}`);

const CHILD = join(import.meta.dirname, '..', 'fixtures', 'bus-node-child.ts');

/** A child node and the lines it printed, with a way to wait for one. */
class ChildNode {
  readonly proc: ChildProcess;
  #out = '';
  #waiters = new Set<() => void>();

  constructor(bus: string, node: string, auditPath: string, leaseMs?: number) {
    const args = ['--import', 'tsx', CHILD, natsUrl, bus, node, auditPath, ...(leaseMs !== undefined ? [String(leaseMs)] : [])];
    this.proc = spawn(process.execPath, args, { stdio: ['pipe', 'pipe', 'inherit'] });
    this.proc.stdout!.on('data', (chunk: Buffer) => {
      this.#out += chunk.toString();
      for (const w of this.#waiters) w();
    });
    this.proc.once('exit', () => {
      for (const w of this.#waiters) w();
    });
  }

  get lines(): string[] {
    return this.#out.split('\n').filter((l) => l !== '');
  }

  /** Resolves with the first line starting with `prefix`; rejects if the child exits or after `ms`. */
  waitFor(prefix: string, ms = 15_000): Promise<string> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const line = this.lines.find((l) => l.startsWith(prefix));
        if (line !== undefined) return done(() => resolve(line));
        if (this.proc.exitCode !== null || this.proc.signalCode !== null) done(() => reject(new Error(`child exited before "${prefix}":\n${this.#out}`)));
      };
      const timer = setTimeout(() => done(() => reject(new Error(`no "${prefix}" from the child in ${ms} ms:\n${this.#out}`))), ms);
      const done = (settle: () => void) => {
        clearTimeout(timer);
        this.#waiters.delete(check);
        settle();
      };
      this.#waiters.add(check);
      check();
    });
  }

  async kill(): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    const exited = new Promise((r) => this.proc.once('exit', r));
    this.proc.kill('SIGKILL');
    await exited;
  }
}

function parentBus(bus: string, dir: string, leaseMs?: number) {
  return natsTransport({ servers: natsUrl, bus, insecure: true, ...(leaseMs !== undefined ? { leaseMs } : {}) }).then(
    (transport) =>
      new Orchestrator({
        node: 'n1',
        transport,
        audit: { path: join(dir, 'n1.db') },
        policies: [
          // The sender allows `secret`; the receiving node denies it, and its decision counts.
          { from: 'client', to: 'worker', allow: ['ask', 'delegate', 'notify'] },
          { from: 'worker', to: 'client', allow: ['ask'], intents: ['ping'] },
          { from: 'client', to: 'local-helper', allow: ['ask', 'notify'] },
        ],
      }),
  );
}

const code = (p: Promise<unknown>) => p.then(
  () => 'resolved',
  (e: BusError) => e.code,
);

describe.skipIf(skip !== '')('one bus across two processes', () => {
  const busName = `tp${process.pid}`;
  let dir: string;
  let child: ChildNode;
  let bus: Orchestrator;
  let client: ReturnType<Orchestrator['register']>;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'switchboard-2p-'));
    child = new ChildNode(busName, 'n2', join(dir, 'n2.db'));
    await child.waitFor('ready', 30_000);
    bus = await parentBus(busName, dir);
    client = bus.register('client', { handlers: { ping: (payload) => ({ pong: payload }) } });
    bus.register('local-helper', { handlers: { add: (p) => (p as { a: number }).a + (p as { b: number }).b, news: () => undefined } });
    await bus.ready();
  }, 60_000);

  afterAll(async () => {
    await bus?.close();
    await child?.kill();
    rmSync(dir, { recursive: true, force: true });
  });

  it("lists the other node's agents after ready(), with their node", () => {
    const worker = bus.agents().find((a) => a.id === 'worker');
    expect(worker).toMatchObject({ id: 'worker', capabilities: ['echo'], node: 'n2' });
    expect(client.discover('echo')).toEqual(['worker']);
  });

  it('carries an ask to the other process and brings back its reply, with one message id on both sides', async () => {
    await expect(client.ask('worker', 'echo', { n: 1 })).resolves.toEqual({ n: 1 });
    const got = await child.waitFor('got ');
    const [, id, meta] = got.split(' ');
    expect(bus.getMessageLog({ agentId: 'worker', type: 'ask', limit: 1 })[0]!.messageId).toBe(id);
    expect(JSON.parse(meta!)).toMatchObject({ from: 'client', depth: 0 });
  });

  it('carries delegate progress back to the sender', async () => {
    const job = client.delegate('worker', 'steps', {});
    const seen: number[] = [];
    job.onProgress(({ fraction }) => seen.push(fraction));
    await expect(job).resolves.toEqual({ done: true });
    expect(seen).toEqual([0.5]);
  });

  it('runs A → B → A across nodes (reentrancy), keeping the conversation', async () => {
    await expect(client.ask('worker', 'callback', { q: 'hi' })).resolves.toEqual({ via: { pong: { q: 'hi' } } });
    const asks = bus.getMessageLog({ agentId: 'client', type: 'ask', limit: 10 });
    const pings = asks.filter((e) => e.intent === 'ping');
    const callback = asks.find((e) => e.intent === 'callback');
    expect(pings[0]).toMatchObject({ from: 'worker', to: 'client', conversationId: callback!.conversationId, causationId: callback!.messageId });
  });

  it("refuses with POLICY_DENIED when the receiving node's policy denies, though the sender's allows", async () => {
    expect(bus.explain({ from: 'client', to: 'worker', type: 'ask', intent: 'secret' }).decision).toBe('allow');
    await expect(code(client.ask('worker', 'secret', {}))).resolves.toBe('POLICY_DENIED');
  });

  it("rejects with HANDLER_FAILED and the handler's message when the remote handler throws", async () => {
    await expect(client.ask('worker', 'boom', {})).rejects.toMatchObject({ code: 'HANDLER_FAILED', message: expect.stringContaining('boom on the worker') });
  });

  it('rejects an id no node serves with UNKNOWN_AGENT', async () => {
    await expect(code(client.ask('nobody', 'echo', {}))).resolves.toBe('UNKNOWN_AGENT');
  });

  it("refuses to register an id another node holds with DUPLICATE_AGENT", () => {
    expect(() => bus.register('worker')).toThrow(expect.objectContaining({ code: 'DUPLICATE_AGENT' }));
  });

  it('decides TIMEOUT at the sender and aborts the remote handler at its deadline', async () => {
    await expect(code(client.ask('worker', 'slow', {}, { timeoutMs: 500 }))).resolves.toBe('TIMEOUT');
    await child.waitFor('aborted ');
  });

  it("reaches the other process's agents with a broadcast notify and lists them in the receipt", async () => {
    const receipt = await client.notify('news', { headline: 'hello' });
    expect(receipt.delivered).toContain('worker');
    expect(receipt.delivered).toContain('local-helper');
    expect(JSON.parse((await child.waitFor('news ')).slice(5))).toEqual({ from: 'client', payload: { headline: 'hello' } });
  });

  it('keeps sends between agents of one node in-process', async () => {
    await expect(client.ask('local-helper', 'add', { a: 2, b: 3 })).resolves.toBe(5);
  });

  it("records each message in both nodes' logs, and both logs verify", async () => {
    await bus.flush();
    expect(bus.verifyAuditLog()).toMatchObject({ ok: true });
    child.proc.stdin!.write('close\n');
    const verified = JSON.parse((await child.waitFor('verified ')).slice(9));
    expect(verified.ok).toBe(true);
    expect(verified.received).toBeGreaterThan(5);
  });
});

describe.skipIf(skip !== '')('a node killed with SIGKILL mid-traffic', () => {
  it("ends its peers' pending asks by their deadlines, frees its ids after the lease, and the peers keep serving", async () => {
    const busName = `tk${process.pid}`;
    const dir = mkdtempSync(join(tmpdir(), 'switchboard-kill-'));
    const child = new ChildNode(busName, 'n2', join(dir, 'n2.db'), 1500);
    try {
      await child.waitFor('ready', 30_000);
      const bus = await parentBus(busName, dir, 1500);
      const client = bus.register('client', { handlers: { ping: () => 'pong' } });
      bus.register('local-helper', { handlers: { add: (p) => (p as { a: number }).a + (p as { b: number }).b } });
      await bus.ready();

      const pending = Array.from({ length: 5 }, () => code(client.ask('worker', 'slow', {}, { timeoutMs: 3_000 })));
      for (let i = 0; i < 5; i++) await child.waitFor('got ');
      await child.kill();

      const codes = await Promise.all(pending);
      for (const c of codes) expect(['TIMEOUT', 'UNKNOWN_AGENT']).toContain(c);
      await expect(client.ask('local-helper', 'add', { a: 1, b: 1 })).resolves.toBe(2);

      // After the lease the dead node's id is free: another node may register it.
      const deadline = Date.now() + 10_000;
      while (bus.agents().some((a) => a.id === 'worker') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      expect(bus.agents().some((a) => a.id === 'worker')).toBe(false);
      await expect(code(client.ask('worker', 'echo', {}))).resolves.toBe('UNKNOWN_AGENT');
      await bus.flush();
      expect(bus.verifyAuditLog()).toMatchObject({ ok: true });
      await bus.close();
    } finally {
      await child.kill();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
