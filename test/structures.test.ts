// Unit tests of the pipeline's building blocks, without a bus: Mailbox and ApprovalQueue.
import { describe, expect, it } from 'vitest';
import { ApprovalQueue, type Hold } from '../src/pipeline/approval-queue.js';
import type { Priority } from '../src/envelope.js';
import { Mailbox, type MailboxJob } from '../src/mailbox.js';

function job(name: string, log: string[], priority: Priority = 'normal'): MailboxJob & { finish: () => void } {
  let finish!: () => void;
  const done = new Promise<void>((resolve) => (finish = resolve));
  return {
    priority,
    withdrawn: false,
    started: false,
    run: () => (log.push(name), done),
    finish: () => finish(),
  };
}

describe('Mailbox', () => {
  it('runs at most `concurrency` jobs at once, then the waiting ones in priority order', async () => {
    const log: string[] = [];
    const box = new Mailbox(1, 10);
    const [a, b, c] = [job('a', log), job('low', log, 'low'), job('critical', log, 'critical')];
    for (const j of [a, b, c]) {
      expect(box.reserve()).toBe(true);
      box.push(j, false);
    }
    expect(log).toEqual(['a']);
    expect(box.running).toBe(1);
    a.finish();
    await Promise.resolve();
    await Promise.resolve();
    c.finish();
    b.finish();
    await box.onIdle();
    expect(log).toEqual(['a', 'critical', 'low']);
  });

  it('refuses a reservation past maxQueue unless forced (reentrancy)', () => {
    const box = new Mailbox(1, 1);
    expect(box.reserve()).toBe(true);
    box.push(job('a', []), false); // running
    expect(box.reserve()).toBe(true); // one waiting
    expect(box.reserve()).toBe(false);
    expect(box.reserve(true)).toBe(true);
  });

  it('skips a withdrawn job and frees its place', async () => {
    const log: string[] = [];
    const box = new Mailbox(1, 5);
    const a = job('a', log);
    const b = job('b', log);
    box.reserve();
    box.push(a, false);
    box.reserve();
    box.push(b, false);
    box.withdraw(b);
    expect(box.queued).toBe(0);
    a.finish();
    await box.onIdle();
    expect(log).toEqual(['a']);
  });
});

interface TestHold extends Hold {}

function hold(id: string, from: string, deadline: number): TestHold {
  const approval = { id, envelope: {} as never, payloadHash: '', payloadBytes: 0, requestedAt: 0, expiresAt: deadline };
  return { approval, encoded: {} as never, from, deadline, heapIndex: -1 };
}

describe('ApprovalQueue', () => {
  const clock = { now: () => 0 };

  it('refuses past the per-sender cap and past the global cap with APPROVAL_QUEUE_FULL', () => {
    const q = new ApprovalQueue<TestHold>(clock, 3, 2, () => undefined);
    q.add(hold('1', 'a', 1e9));
    q.add(hold('2', 'a', 1e9));
    expect(q.checkCapacity('a')?.code).toBe('APPROVAL_QUEUE_FULL');
    expect(q.checkCapacity('b')).toBeUndefined();
    q.add(hold('3', 'b', 1e9));
    expect(q.checkCapacity('c')?.code).toBe('APPROVAL_QUEUE_FULL');
    q.takeWhere(() => true);
  });

  it('lists in insertion order, takes once, and frees the sender\'s share', () => {
    const q = new ApprovalQueue<TestHold>(clock, 10, 1, () => undefined);
    q.add(hold('x', 'a', 1e9));
    expect(q.list().map((a) => a.id)).toEqual(['x']);
    expect(q.take('x')?.approval.id).toBe('x');
    expect(q.take('x')).toBeUndefined();
    expect(q.checkCapacity('a')).toBeUndefined();
    expect(q.size).toBe(0);
  });
});
