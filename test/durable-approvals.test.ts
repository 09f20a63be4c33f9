/**
 * Durable approvals: with a file log, held messages outlive close(), a crash and a restart;
 * decisions are taken once through the file; bus.result() reads a message's outcome after
 * a restart. Each test uses its own temporary file.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Orchestrator, isBusError, type OrchestratorOptions, type PolicyRule } from '../src/index.js';

const RULES: PolicyRule[] = [{ from: 'purchase', to: 'payment', allow: ['ask', 'delegate', 'notify'], requireApproval: true }];

let dir: string;
let path: string;
const open: Orchestrator[] = [];

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'switchboard-durable-'));
  path = join(dir, 'audit.db');
});

afterEach(async () => {
  for (const b of open.splice(0)) await b.close();
  rmSync(dir, { recursive: true, force: true });
});

function bus(options: OrchestratorOptions = {}): Orchestrator {
  const b = new Orchestrator({ policies: RULES, audit: { path }, ...options });
  open.push(b);
  return b;
}

async function closeAll(): Promise<void> {
  for (const b of open.splice(0)) await b.close();
}

function errorOf(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => {
      throw new Error('expected a rejection');
    },
    (e: unknown) => e,
  );
}

/** Holds one ask from purchase to payment in a bus on the file, then closes that bus. */
async function holdAndClose(payload: unknown = { amount: 42 }, timeoutMs = 60_000): Promise<string> {
  const first = bus();
  first.register('payment', { handlers: { pay: (p: unknown) => ({ paid: (p as { amount: number }).amount }) } });
  const purchase = first.register('purchase');
  const asked = purchase.ask('payment', 'pay', payload, { timeoutMs });
  const failed = errorOf(asked);
  await first.flush();
  const [held] = first.approvals.list();
  await closeAll();
  expect((await failed as { code?: string }).code).toBe('CLOSED');
  return held!.id;
}

describe('durable approvals: close()', () => {
  it('leaves a held message held, and a bus opened on the file lists it with its payload and restored: true', async () => {
    const id = await holdAndClose({ amount: 42, to: 'ACME' });
    const second = bus();
    const [item, ...rest] = second.approvals.list();
    expect(rest).toEqual([]);
    expect(item).toMatchObject({ id, restored: true, envelope: { id, from: 'purchase', to: 'payment', intent: 'pay', payload: { amount: 42, to: 'ACME' } } });
    expect(second.getMessageLog().filter((e) => e.messageId === id)).toMatchObject([{ decision: 'pending' }]);
    expect(second.getMessageLog()[0]).not.toHaveProperty('approval');
  });

  it('approving a restored message delivers it once and result() gives the reply, also after another restart', async () => {
    const id = await holdAndClose({ amount: 7 });
    const second = bus();
    let calls = 0;
    second.register('payment', { handlers: { pay: (p: unknown) => ({ paid: (p as { amount: number }).amount, call: ++calls }) } });
    expect(second.approvals.approve(id, { by: 'ops' })).toEqual({ staged: true });
    await second.onIdle();
    await second.flush();
    expect(calls).toBe(1);
    await closeAll();
    const third = bus();
    expect(third.approvals.list()).toEqual([]);
    expect(await third.result(id)).toEqual({ paid: 7, call: 1 });
    // Kept until read: once read, the log says it was answered and no longer keeps it.
    expect(await errorOf(third.result(id))).toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect(calls).toBe(1);
  });
});
