// The approval console, driven as a person would: keys in, frames out, over a real bus.
import { createElement as h } from 'react';
import { render } from 'ink-testing-library';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ApprovalConsole, type ExitReason } from '../examples/console/index.js';
import type { Orchestrator } from '../src/index.js';
import { closeBuses, makeBus, rejectionOf } from './helpers.js';

type Rendered = ReturnType<typeof render>;

const ARROW_DOWN = '\u001B[B';
const ARROW_UP = '\u001B[A';
/** The queue's key hints: shown only while the message queue is open. */
const QUEUE_OPEN = 'a approve · d deny';
/** The selection marker on the item whose payload is {"n":1} (or 2): its payload is the next line. */
const SELECTED_1 = /› purchase → payment.*\n\s+\{"n":1\}/;
const SELECTED_2 = /› purchase → payment.*\n\s+\{"n":2\}/;

const stripAnsi = (text: string) => text.replace(/\u001B\[[0-9;]*m/g, '');
/** The last frame as text: no colours, no box border. */
const frame = (ui: Rendered) =>
  stripAnsi(ui.lastFrame() ?? '')
    .split('\n')
    .map((line) => line.replace(/^│ ?/, '').replace(/ ?│$/, '').trimEnd())
    .join('\n');

/** Waits until the last frame contains `text` (or matches it), for at most `withinMs`. */
async function frameWith(ui: Rendered, text: string | RegExp, withinMs = 2_000): Promise<string> {
  const until = Date.now() + withinMs;
  for (;;) {
    const now = frame(ui);
    if (typeof text === 'string' ? now.includes(text) : text.test(now)) return now;
    if (Date.now() > until) throw new Error(`no frame with ${String(text)} within ${withinMs} ms; last frame:\n${now}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Waits until the last frame no longer contains `text`. */
async function frameWithout(ui: Rendered, text: string, withinMs = 2_000): Promise<string> {
  const until = Date.now() + withinMs;
  for (;;) {
    const now = frame(ui);
    if (!now.includes(text)) return now;
    if (Date.now() > until) throw new Error(`${text} still shown after ${withinMs} ms; last frame:\n${now}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** purchase → payment delegates wait for a human; research → writer is plain. */
function paymentBus(): Orchestrator {
  const bus = makeBus({
    policies: [
      { from: 'purchase', to: 'payment', allow: ['delegate'], requireApproval: true },
      { from: 'research', to: 'writer', allow: ['ask'] },
    ],
  });
  bus.register('payment', { handlers: { pay: (payload) => ({ paid: true, charged: payload }) } });
  bus.register('writer', { handlers: { clarify: () => 'for engineers' } });
  return bus;
}

const mounted: Rendered[] = [];
function open(bus: Orchestrator, onExit: (reason: ExitReason) => void = () => {}, extra: { finished?: boolean } = {}): Rendered {
  const ui = render(h(ApprovalConsole, { bus, operator: 'alice', onExit, ...extra }));
  mounted.push(ui);
  return ui;
}

afterEach(async () => {
  for (const ui of mounted.splice(0)) ui.unmount();
  await closeBuses();
});

describe('ApprovalConsole', () => {
  it('shows a held message as a notification; m opens the queue, a approves it as the operator', async () => {
    const bus = paymentBus();
    const purchase = bus.register('purchase');
    const ui = open(bus);
    await frameWith(ui, 'nothing pending');

    const job = purchase.delegate('payment', 'pay', { item: 'GPU hours', amount: 120 }, { timeoutMs: 60_000 });
    const notified = await frameWith(ui, '1 pending approval');
    expect(notified).toContain('⏸ 1 pending');
    expect(notified).toContain('press m to open the message queue');
    expect(notified).toMatch(/purchase → payment\s+delegate pay\s+⏸ held for approval/);

    ui.stdin.write('m');
    const queue = await frameWith(ui, QUEUE_OPEN);
    expect(queue).toMatch(/› purchase → payment\s+delegate pay\s+expires in (59 s|1 min 00 s)\s+\{"item":"GPU hours","amount":120\}/);

    ui.stdin.write('a');
    await expect(job).resolves.toEqual({ paid: true, charged: { item: 'GPU hours', amount: 120 } });
    const after = await frameWith(ui, '✓ approved purchase → payment delegate "pay" by alice: on its way');
    expect(after).toContain('nothing is waiting for you');
    expect(after).toMatch(/purchase → payment\s+delegate pay\s+✓ approved by alice/);

    const [entry] = bus.getMessageLog({ agentId: 'purchase' }).filter((e) => e.intent === 'pay' && e.type === 'delegate');
    expect(entry).toMatchObject({ from: 'purchase', to: 'payment', decision: 'pending', approval: 'approved', decidedBy: 'alice', outcome: 'replied' });
  });

  it('d denies the selected message: the sender gets APPROVAL_REJECTED with the console reason', async () => {
    const bus = paymentBus();
    const purchase = bus.register('purchase');
    const ui = open(bus);
    const job = purchase.delegate('payment', 'pay', { amount: 9_000 });
    await frameWith(ui, '1 pending approval');

    ui.stdin.write('m');
    await frameWith(ui, '› purchase → payment');
    ui.stdin.write('d');

    const error = await rejectionOf(job);
    expect(error.code).toBe('APPROVAL_REJECTED');
    expect(error.message).toContain('denied in console');
    await frameWith(ui, '✗ denied purchase → payment delegate "pay" by alice (denied in console)');
    const [entry] = bus.getMessageLog({ agentId: 'purchase' }).filter((e) => e.intent === 'pay');
    expect(entry).toMatchObject({ approval: 'rejected', decidedBy: 'alice', outcome: 'failed', code: 'APPROVAL_REJECTED' });
  });

  it('arrows and j/k move the selection; the decision applies to the selected message only', async () => {
    const bus = paymentBus();
    const purchase = bus.register('purchase');
    const ui = open(bus);
    const first = purchase.delegate('payment', 'pay', { n: 1 });
    const second = purchase.delegate('payment', 'pay', { n: 2 });
    await frameWith(ui, '2 pending approvals');

    ui.stdin.write('m');
    await frameWith(ui, SELECTED_1);
    ui.stdin.write(ARROW_DOWN);
    await frameWith(ui, SELECTED_2);
    ui.stdin.write(ARROW_UP);
    await frameWith(ui, SELECTED_1);
    ui.stdin.write('j');
    await frameWith(ui, SELECTED_2);

    ui.stdin.write('d');
    expect((await rejectionOf(second)).code).toBe('APPROVAL_REJECTED');
    await frameWith(ui, '1 pending approval');
    expect(bus.approvals.list().map((a) => a.envelope.payload)).toEqual([{ n: 1 }]);

    // The selection falls back onto what is left; k at the top stays there.
    ui.stdin.write('k');
    await frameWith(ui, SELECTED_1);
    ui.stdin.write('a');
    await expect(first).resolves.toEqual({ paid: true, charged: { n: 1 } });
    await frameWith(ui, 'nothing is waiting for you');
  });

  it('shows a window of the queue that follows the selection', async () => {
    const bus = paymentBus();
    const purchase = bus.register('purchase');
    const ui = open(bus);
    const jobs = Array.from({ length: 8 }, (_, n) => purchase.delegate('payment', 'pay', { n }));
    await frameWith(ui, '8 pending approvals');
    ui.stdin.write('m');
    const top = await frameWith(ui, '… 3 more below');
    expect(top).not.toContain('more above');
    for (let i = 0; i < 7; i++) ui.stdin.write('j');
    const bottom = await frameWith(ui, /› purchase → payment.*\n\s+\{"n":7\}/);
    expect(bottom).toContain('… 3 more above');
    expect(bottom).not.toContain('more below');
    ui.stdin.write('a');
    await expect(jobs[7]).resolves.toMatchObject({ paid: true });
    await frameWith(ui, /› purchase → payment.*\n\s+\{"n":6\}/); // the selection stays at the bottom
    for (const id of bus.approvals.list().map((a) => a.id)) bus.approvals.reject(id, { by: 'test' });
    await Promise.allSettled(jobs);
    await frameWith(ui, 'nothing is waiting for you');
  });

  it('keys other than m do nothing while the queue is closed, and the feed shows what crossed the bus', async () => {
    const bus = paymentBus();
    const purchase = bus.register('purchase');
    const research = bus.register('research');
    const ui = open(bus);
    await frameWith(ui, 'waiting for messages');

    await expect(research.ask('writer', 'clarify', { q: 'audience?' })).resolves.toBe('for engineers');
    await expect(rejectionOf(research.ask('payment', 'pay', {}))).resolves.toMatchObject({ code: 'POLICY_DENIED' });
    const job = purchase.delegate('payment', 'pay', { n: 1 });
    const shown = await frameWith(ui, '1 pending approval');
    expect(shown).toMatch(/research → writer\s+ask clarify\s+✓ delivered/);
    expect(shown).toMatch(/writer → research\s+reply clarify\s+↩ replied/);
    expect(shown).toMatch(/research → payment\s+ask pay\s+✗ refused POLICY_DENIED/);

    ui.stdin.write('a'); // the queue is closed: nothing is decided
    ui.stdin.write('d');
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(bus.approvals.list()).toHaveLength(1);

    ui.stdin.write('m');
    await frameWith(ui, QUEUE_OPEN);
    ui.stdin.write('m'); // m again closes it
    await frameWithout(ui, QUEUE_OPEN);
    ui.stdin.write('m');
    await frameWith(ui, QUEUE_OPEN);
    ui.stdin.write('a');
    await expect(job).resolves.toMatchObject({ paid: true });
  });

  it('a held message that expires leaves the queue, and the feed says so', async () => {
    const bus = paymentBus();
    const purchase = bus.register('purchase');
    const ui = open(bus);
    const job = purchase.delegate('payment', 'pay', { n: 1 }, { timeoutMs: 300 });
    await frameWith(ui, '1 pending approval');
    ui.stdin.write('m');
    await frameWith(ui, /› purchase → payment\s+delegate pay\s+expires in 1 s/);
    expect((await rejectionOf(job)).code).toBe('APPROVAL_EXPIRED');
    const after = await frameWith(ui, 'nothing is waiting for you');
    expect(after).toMatch(/purchase → payment\s+delegate pay\s+✗ expired/);
    expect(after).toMatch(/purchase → payment\s+delegate pay\s+⌛ expired APPROVAL_EXPIRED/);
    ui.stdin.write('a'); // nothing left to decide: no error, no status
    await new Promise((resolve) => setTimeout(resolve, 30));
    expect(frame(ui)).not.toContain('could not decide');
  });

  it('q asks the host to close; a finished host closes it once nothing is pending', async () => {
    const bus = paymentBus();
    const purchase = bus.register('purchase');
    const onQuit = vi.fn<(reason: ExitReason) => void>();
    const quitter = open(bus, onQuit);
    await frameWith(quitter, 'nothing pending');
    quitter.stdin.write('q');
    await vi.waitFor(() => expect(onQuit).toHaveBeenCalledWith('quit'));

    const onFinish = vi.fn<(reason: ExitReason) => void>();
    const job = purchase.delegate('payment', 'pay', { n: 1 });
    const ui = open(bus, onFinish, { finished: true });
    await frameWith(ui, '1 pending approval'); // pending: it stays
    expect(onFinish).not.toHaveBeenCalled();
    ui.stdin.write('m');
    await frameWith(ui, QUEUE_OPEN);
    ui.stdin.write('a');
    await job;
    await vi.waitFor(() => expect(onFinish).toHaveBeenCalledWith('finished'));
    expect(onFinish).toHaveBeenCalledTimes(1);
    expect(onQuit).toHaveBeenCalledTimes(1);
  });

  it('unsubscribes from the bus when unmounted', async () => {
    const bus = paymentBus();
    const purchase = bus.register('purchase');
    const ui = open(bus);
    await frameWith(ui, 'nothing pending');
    ui.unmount();
    const before = ui.frames.length;
    const job = purchase.delegate('payment', 'pay', { n: 1 });
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(ui.frames.length).toBe(before);
    bus.approvals.approve(bus.approvals.list()[0]!.id, { by: 'test' });
    await job;
  });
});
