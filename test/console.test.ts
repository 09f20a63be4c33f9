// The approval console, driven as a person would: keys in, frames out, over a real bus, at
// 80×24 and at 60×16.
import { createElement as h } from 'react';
import { render } from 'ink-testing-library';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ApprovalConsole, openApprovalConsole, type ExitReason } from '../src/console/index.js';
import type { Orchestrator } from '../src/index.js';
import { closeBuses, makeBus, rejectionOf } from './support/helpers.js';

type Rendered = ReturnType<typeof render>;

const ARROW_DOWN = '\u001B[B';
const ARROW_UP = '\u001B[A';
const ENTER = '\r';
const ESC = '\u001B';
const BACKSPACE = '\u007F';

const stripAnsi = (text: string) => text.replace(/\u001B\[[0-9;]*m/g, '');
/** The last frame as text lines: no colours, border kept. */
const rawLines = (ui: Rendered) => stripAnsi(ui.lastFrame() ?? '').split('\n');
/** The last frame as text: no colours, no box border. */
const frame = (ui: Rendered) =>
  rawLines(ui)
    .map((line) => line.replace(/^│ ?/, '').replace(/ ?│$/, '').trimEnd())
    .join('\n');

/** Waits until the last frame contains `text` (or matches it), for at most `withinMs`. */
async function frameWith(ui: Rendered, text: string | RegExp, withinMs = 5_000): Promise<string> {
  const until = Date.now() + withinMs;
  for (;;) {
    const now = frame(ui);
    if (typeof text === 'string' ? now.includes(text) : text.test(now)) return now;
    if (Date.now() > until) throw new Error(`no frame with ${String(text)} within ${withinMs} ms; last frame:\n${now}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Waits until the last frame no longer contains `text`. */
async function frameWithout(ui: Rendered, text: string, withinMs = 5_000): Promise<string> {
  const until = Date.now() + withinMs;
  for (;;) {
    const now = frame(ui);
    if (!now.includes(text)) return now;
    if (Date.now() > until) throw new Error(`${text} still shown after ${withinMs} ms; last frame:\n${now}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Types `text` one key at a time, as a person would. */
async function type(ui: Rendered, text: string): Promise<void> {
  for (const ch of text) {
    ui.stdin.write(ch);
    await new Promise((resolve) => setImmediate(resolve));
  }
}

/** purchase → payment delegates wait for a human; research → writer is plain. */
function paymentBus(): Orchestrator {
  const bus = makeBus({
    policies: [
      { from: 'purchase', to: 'payment', allow: ['delegate'], requireApproval: true },
      { from: 'research', to: 'writer', allow: ['ask'] },
      { from: 'ops', to: 'vault', allow: ['ask'], requireApproval: true },
    ],
  });
  bus.register('payment', { handlers: { pay: (payload) => ({ paid: true, charged: payload }) } });
  bus.register('writer', { handlers: { clarify: () => 'for engineers' } });
  bus.register('vault', { handlers: { rotate: () => 'rotated' } });
  return bus;
}

const SIZES = [
  { columns: 80, rows: 24 },
  { columns: 60, rows: 16 },
] as const;

const mounted: Rendered[] = [];
function open(
  bus: Orchestrator,
  onExit: (reason: ExitReason) => void = () => {},
  extra: { finished?: boolean; columns?: number; rows?: number } = {},
): Rendered {
  const ui = render(h(ApprovalConsole, { bus, operator: 'alice', onExit, columns: 80, rows: 24, ...extra }));
  mounted.push(ui);
  return ui;
}

afterEach(async () => {
  for (const ui of mounted.splice(0)) ui.unmount();
  await closeBuses();
});

describe.each(SIZES)('ApprovalConsole at $columns×$rows', ({ columns, rows }) => {
  it('fits the terminal in every view: no line wider, no more lines, header and key hints always shown', async () => {
    const bus = paymentBus();
    const purchase = bus.register('purchase');
    const research = bus.register('research');
    const ui = open(bus, () => {}, { columns, rows });
    const long = { item: 'x'.repeat(300), lines: Array.from({ length: 40 }, (_, i) => `line ${i}`) };
    const jobs = [purchase.delegate('payment', 'pay', long), ...Array.from({ length: 6 }, (_, n) => purchase.delegate('payment', 'pay', { n }))];
    for (let i = 0; i < 8; i++) await research.ask('writer', 'clarify', { i });
    await frameWith(ui, '7 pending');

    const check = (view: string) => {
      const lines = rawLines(ui);
      expect(lines.length, `${view}: rows`).toBeLessThanOrEqual(rows);
      for (const line of lines) expect(line.length, `${view}: "${line}"`).toBeLessThanOrEqual(columns);
      const text = frame(ui);
      expect(text, `${view}: header`).toMatch(/approvals · alice · +⏸ 7 pending/);
      expect(text, `${view}: hints`).toMatch(/\? help · m queue · a approve · d deny/);
    };
    check('feed');
    ui.stdin.write('m');
    await frameWith(ui, 'message queue · 7 pending approvals');
    check('queue');
    ui.stdin.write(ENTER);
    await frameWith(ui, 'more lines: ↓/j scrolls');
    check('detail');
    ui.stdin.write('a');
    await frameWith(ui, 'Approve this delegate as alice?');
    check('confirm');
    ui.stdin.write(ESC);
    ui.stdin.write('?');
    await frameWith(ui, 'keys (? or esc closes this)');
    check('help');
    ui.stdin.write('?');
    await frameWithout(ui, 'keys (? or esc closes this)');

    for (const a of bus.approvals.list()) bus.approvals.reject(a.id, { by: 'test' });
    await Promise.allSettled(jobs);
  });

  it('a shows the whole message with its rule and deadline and asks first; y approves it as the operator', async () => {
    const bus = paymentBus();
    const purchase = bus.register('purchase');
    const ui = open(bus, () => {}, { columns, rows });
    await frameWith(ui, 'nothing pending');
    const job = purchase.delegate('payment', 'pay', { item: 'conference tickets', amount: 900, currency: 'EUR' }, { timeoutMs: 60_000 });
    await frameWith(ui, '⏸ 1 pending');

    ui.stdin.write('a'); // from the feed: the selected (only) message
    const asked = await frameWith(ui, 'Approve this delegate as alice?');
    expect(asked).toContain('purchase → payment · delegate "pay"');
    expect(asked).toContain("rule     purchase -> payment allow:delegate approval");
    expect(asked).toMatch(/deadline \d\d:\d\d:\d\d\.\d{3} expires in (5\d s|1 min 00 s)/);
    expect(asked).toContain('"item": "conference tickets"');
    expect(asked).toContain('"amount": 900');
    await new Promise((resolve) => setTimeout(resolve, 30));
    expect(bus.approvals.list()).toHaveLength(1); // asking decided nothing

    ui.stdin.write('y');
    await expect(job).resolves.toEqual({ paid: true, charged: { item: 'conference tickets', amount: 900, currency: 'EUR' } });
    await frameWith(ui, '✓ approved by alice: staged for delivery · purchase → p');
    const [entry] = bus.getMessageLog({ agentId: 'purchase', type: 'delegate' });
    expect(entry).toMatchObject({ approval: 'approved', decidedBy: 'alice', outcome: 'replied' });
  });

  it('d asks for a reason, which is typed (backspace edits it) and reaches the sender', async () => {
    const bus = paymentBus();
    const purchase = bus.register('purchase');
    const ui = open(bus, () => {}, { columns, rows });
    const job = purchase.delegate('payment', 'pay', { amount: 9_000 });
    await frameWith(ui, '⏸ 1 pending');

    ui.stdin.write('d');
    await frameWith(ui, 'Deny as alice: type a reason');
    await type(ui, 'over budgez');
    ui.stdin.write(BACKSPACE);
    await type(ui, 't, ask Bob'); // q, a, d typed here are text, not keys
    await frameWith(ui, '> over budget, ask Bob▌');
    ui.stdin.write(ENTER);

    const error = await rejectionOf(job);
    expect(error.code).toBe('APPROVAL_REJECTED');
    expect(error.message).toContain('over budget, ask Bob');
    await frameWith(ui, columns >= 80 ? '✗ denied by alice (over budget, ask Bob) · purchase → payment delegate "pay"' : '✗ denied by alice (over budget, ask Bob)');
  });
});

describe('ApprovalConsole keys', () => {
  it('A approves and always allows: the next identical message is not held', async () => {
    const bus = paymentBus();
    const purchase = bus.register('purchase');
    const ui = open(bus);
    const job = purchase.delegate('payment', 'pay', { n: 1 });
    await frameWith(ui, '⏸ 1 pending');
    ui.stdin.write('A');
    await frameWith(ui, 'Approve as alice, and always allow purchase → payment delegate "pay"?');
    ui.stdin.write('y');
    await expect(job).resolves.toMatchObject({ paid: true });
    await frameWith(ui, '✓ approved by alice, always allowed from now on: staged for delivery');
    await expect(purchase.delegate('payment', 'pay', { n: 2 })).resolves.toMatchObject({ paid: true });
    expect(bus.approvals.list()).toHaveLength(0);
  });

  it('a second a confirms too; n or esc cancels and nothing is decided', async () => {
    const bus = paymentBus();
    const purchase = bus.register('purchase');
    const ui = open(bus);
    const job = purchase.delegate('payment', 'pay', { n: 1 });
    await frameWith(ui, '⏸ 1 pending');
    ui.stdin.write('a');
    await frameWith(ui, 'Approve this delegate');
    ui.stdin.write('n');
    await frameWith(ui, 'approval cancelled: nothing was decided');
    ui.stdin.write('a');
    await frameWith(ui, 'Approve this delegate');
    ui.stdin.write(ESC);
    await frameWith(ui, 'approval cancelled: nothing was decided');
    expect(bus.approvals.list()).toHaveLength(1);
    ui.stdin.write('a');
    await frameWith(ui, 'Approve this delegate');
    ui.stdin.write('a');
    await expect(job).resolves.toMatchObject({ paid: true });
  });

  it('every key answers in every view: a and d with nothing held, unknown keys, ? shows the keys', async () => {
    const bus = paymentBus();
    const ui = open(bus);
    await frameWith(ui, 'nothing pending');
    ui.stdin.write('a');
    await frameWith(ui, 'nothing to approve: no message is held');
    ui.stdin.write('d');
    await frameWith(ui, 'nothing to deny: no message is held');
    ui.stdin.write('x');
    await frameWith(ui, "'x' does nothing here: ? shows the keys");
    ui.stdin.write('?');
    const help = await frameWith(ui, 'keys (? or esc closes this)');
    for (const key of ['m / tab', 'enter / v', 'approve, and always allow', 'deny the selected message, with a reason', 'filter the feed']) expect(help).toContain(key);
    ui.stdin.write('a'); // keys still work from the help view
    await frameWith(ui, 'nothing to approve: no message is held');
    ui.stdin.write(ESC);
    await frameWithout(ui, 'keys (? or esc closes this)');
    ui.stdin.write('m');
    await frameWith(ui, 'nothing is waiting for you');
    ui.stdin.write('j');
    await frameWith(ui, 'the queue is empty');
  });

  it('arrows and j/k move the selection in the queue; the decision applies to the selected message only', async () => {
    const bus = paymentBus();
    const purchase = bus.register('purchase');
    const ui = open(bus);
    const first = purchase.delegate('payment', 'pay', { n: 1 });
    const second = purchase.delegate('payment', 'pay', { n: 2 });
    await frameWith(ui, '2 pending');
    const SELECTED_1 = /› purchase → payment.*\n\s+\{"n":1\}/;
    const SELECTED_2 = /› purchase → payment.*\n\s+\{"n":2\}/;
    ui.stdin.write('m');
    await frameWith(ui, SELECTED_1);
    ui.stdin.write(ARROW_DOWN);
    await frameWith(ui, SELECTED_2);
    ui.stdin.write(ARROW_UP);
    await frameWith(ui, SELECTED_1);
    ui.stdin.write('j');
    await frameWith(ui, SELECTED_2);
    ui.stdin.write('d');
    await frameWith(ui, 'Deny as alice');
    ui.stdin.write(ENTER); // an empty reason: the default one
    expect((await rejectionOf(second)).message).toContain('denied in console');
    await frameWith(ui, SELECTED_1); // back in the queue, on what is left
    expect(bus.approvals.list().map((a) => a.envelope.payload)).toEqual([{ n: 1 }]);
    ui.stdin.write('a');
    await frameWith(ui, '"n": 1');
    ui.stdin.write('y');
    await expect(first).resolves.toEqual({ paid: true, charged: { n: 1 } });
    await frameWith(ui, 'nothing is waiting for you');
  });

  it('f filters the feed and the queue by agent; an empty filter shows everyone again', async () => {
    const bus = paymentBus();
    const purchase = bus.register('purchase');
    const research = bus.register('research');
    const ops = bus.register('ops');
    const ui = open(bus);
    await research.ask('writer', 'clarify', { q: 1 });
    const pay = purchase.delegate('payment', 'pay', { n: 1 });
    const rotate = ops.ask('vault', 'rotate', { key: 'k1' });
    await frameWith(ui, '2 pending');
    ui.stdin.write('f');
    await frameWith(ui, 'filter by agent');
    await type(ui, 'vault');
    ui.stdin.write(ENTER);
    const filtered = await frameWith(ui, 'showing only messages to or from vault');
    expect(filtered).toContain('agent vault');
    expect(filtered).toMatch(/ops → vault\s+ask rotate\s+⏸ held/);
    expect(filtered).not.toContain('research → writer');
    ui.stdin.write('m');
    const queue = await frameWith(ui, 'message queue · 1 pending approval about vault');
    expect(queue).not.toContain('purchase → payment');
    ui.stdin.write('a');
    await frameWith(ui, 'Approve this ask');
    ui.stdin.write('y');
    await expect(rotate).resolves.toBe('rotated');

    ui.stdin.write('f');
    await frameWith(ui, 'filter by agent');
    for (let i = 0; i < 5; i++) ui.stdin.write(BACKSPACE);
    await frameWith(ui, 'esc cancels): ▌');
    ui.stdin.write(ENTER);
    await frameWith(ui, 'filter cleared: every agent');
    await frameWith(ui, /› purchase → payment/);
    bus.approvals.reject(bus.approvals.list()[0]!.id, { by: 'test' });
    await rejectionOf(pay);
  });

  it('the feed scrolls back with k/↑ and pgup, and G follows it again', async () => {
    const bus = paymentBus();
    const research = bus.register('research');
    const ui = open(bus, () => {}, { columns: 60, rows: 16 });
    for (let i = 0; i < 9; i++) await research.ask('writer', 'clarify', { i });
    await frameWith(ui, /research → writer/);
    const newestFirst = frame(ui);
    ui.stdin.write('k');
    const back = await frameWith(ui, '↓ 1 newer line below');
    expect(back).not.toBe(newestFirst);
    ui.stdin.write('\u001B[5~'); // page up
    await frameWith(ui, /↓ \d+ newer lines below/);
    ui.stdin.write('G');
    await frameWith(ui, 'following the feed');
    expect(frame(ui)).not.toContain('newer line');
  });

  it('a message decided elsewhere while it is shown says so, and deciding it again reports the first decision', async () => {
    const bus = paymentBus();
    const purchase = bus.register('purchase');
    const ui = open(bus);
    const job = purchase.delegate('payment', 'pay', { n: 1 });
    await frameWith(ui, '⏸ 1 pending');
    ui.stdin.write('a');
    await frameWith(ui, 'Approve this delegate');
    bus.approvals.reject(bus.approvals.list()[0]!.id, { by: 'bob', reason: 'no' });
    await rejectionOf(job);
    await frameWith(ui, 'this message is no longer held (rejected by bob)');
    ui.stdin.write('y');
    await frameWith(ui, 'could not decide: already decided: rejected by bob · purchase → payment');
  });

  it('q with messages held asks again; q quits, and a finished host closes it once nothing is pending', async () => {
    const bus = paymentBus();
    const purchase = bus.register('purchase');
    const onQuit = vi.fn<(reason: ExitReason) => void>();
    const job = purchase.delegate('payment', 'pay', { n: 1 });
    const quitter = open(bus, onQuit);
    await frameWith(quitter, '⏸ 1 pending');
    quitter.stdin.write('q');
    await frameWith(quitter, '1 pending approval still held: q again quits');
    quitter.stdin.write('x');
    await frameWith(quitter, 'still here: nothing was closed');
    expect(onQuit).not.toHaveBeenCalled();
    quitter.stdin.write('q');
    quitter.stdin.write('q');
    await vi.waitFor(() => expect(onQuit).toHaveBeenCalledWith('quit'));

    const onFinish = vi.fn<(reason: ExitReason) => void>();
    const ui = open(bus, onFinish, { finished: true });
    await frameWith(ui, '⏸ 1 pending'); // pending: it stays
    expect(onFinish).not.toHaveBeenCalled();
    ui.stdin.write('a');
    await frameWith(ui, 'Approve this delegate');
    ui.stdin.write('y');
    await job;
    await vi.waitFor(() => expect(onFinish).toHaveBeenCalledWith('finished'));
    expect(onFinish).toHaveBeenCalledTimes(1);
    expect(onQuit).toHaveBeenCalledTimes(1);
  });

  it('a held message that expires leaves the queue, and the feed says so', async () => {
    const bus = paymentBus();
    const purchase = bus.register('purchase');
    const ui = open(bus);
    const job = purchase.delegate('payment', 'pay', { n: 1 }, { timeoutMs: 300 });
    await frameWith(ui, '⏸ 1 pending');
    expect((await rejectionOf(job)).code).toBe('APPROVAL_EXPIRED');
    const after = await frameWith(ui, 'nothing pending');
    expect(after).toMatch(/purchase → payment\s+delegate pay\s+⌛ expired APPROVAL_EXPIRED/);
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

describe('ApprovalConsole and agent text', () => {
  const OSC8 = '\u001B]8;;https://evil.example\u0007';
  const SGR = '\u001B[32m';
  it('an OSC 8 hyperlink or SGR colours in an intent or an error message never reach the rendered output', async () => {
    const bus = makeBus({ policies: [{ from: 'research', to: 'writer', allow: ['ask'] }] });
    bus.register('writer', { handlers: { clarify: () => { throw new Error(`${SGR}OK${OSC8}x`); } } });
    const research = bus.register('research');
    const ui = open(bus, () => {}, { columns: 200 });
    expect((await rejectionOf(research.ask('writer', 'clarify', {}))).code).toBe('HANDLER_FAILED');
    expect((await rejectionOf(research.ask('writer', `${OSC8}pay`, {}))).code).toBe('INVALID_ARGUMENT');
    await frameWith(ui, 'INVALID_ARGUMENT');
    await frameWith(ui, 'HANDLER_FAILED');
    const raw = ui.lastFrame() ?? '';
    // What the console draws itself is plain SGR; nothing of the agent's sequences is left.
    const inert = raw.replace(/\u001B\[[0-9;]*m/g, '');
    expect(inert).not.toMatch(/[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/);
    expect(raw).not.toContain(`${SGR}OK`);
    expect(raw).not.toContain('\u001B]8');
    // They are shown as text instead.
    expect(frame(ui)).toContain('\\x1b]8;;https://evil');
  });

  it('bidirectional controls in an error message are shown escaped', async () => {
    const bus = makeBus({ policies: [{ from: 'research', to: 'writer', allow: ['ask'] }] });
    bus.register('writer', { handlers: { clarify: () => { throw new Error('ok\u202Edeyorppa'); } } });
    const ui = open(bus, () => {}, { columns: 200 });
    await rejectionOf(bus.register('research').ask('writer', 'clarify', {}));
    const text = await frameWith(ui, 'HANDLER_FAILED');
    expect(text).not.toContain('\u202E');
    expect(text).toContain('ok\\u202edeyorppa');
  });
});

describe('openApprovalConsole()', () => {
  it('refuses a blank operator with INVALID_ARGUMENT naming it', () => {
    const bus = paymentBus();
    expect(() => openApprovalConsole(bus, { operator: '' })).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('operator') }));
    expect(() => openApprovalConsole(bus, { operator: '   ' })).toThrow(/Invalid openApprovalConsole options: operator: must not be blank/);
  });

  it('refuses a misspelled option, and a bus that is not an Orchestrator, with INVALID_ARGUMENT naming them', () => {
    const bus = paymentBus();
    expect(() => openApprovalConsole(bus, { operater: 'alice' } as never)).toThrow(/Invalid openApprovalConsole options: unknown key "operater"/);
    expect(() => openApprovalConsole({} as never, { operator: 'alice' })).toThrow(/openApprovalConsole\(\): bus must be an Orchestrator/);
  });
});

describe('ApprovalConsole with a restored message', () => {
  it('says in the detail view that a held message was restored from the file after a restart', async () => {
    const { mkdtempSync, rmSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const dir = mkdtempSync(join(tmpdir(), 'switchboard-console-restored-'));
    const path = join(dir, 'audit.db');
    const policies = [{ from: 'purchase', to: 'payment', allow: ['delegate' as const], requireApproval: true }];
    try {
      const first = makeBus({ policies, audit: { path } });
      first.register('payment', { handlers: { pay: () => 'paid' } });
      const job = rejectionOf(first.register('purchase').delegate('payment', 'pay', { item: 'GPU hours' }));
      await first.flush();
      await first.close();
      await job;
      const bus = makeBus({ policies, audit: { path } });
      const ui = render(h(ApprovalConsole, { bus, operator: 'alice', columns: 80, rows: 24 }));
      try {
        await frameWith(ui, '1 pending');
        ui.stdin.write('m');
        await frameWith(ui, 'message queue');
        ui.stdin.write(ENTER);
        expect(await frameWith(ui, '(restored)')).toContain('"item": "GPU hours"');
      } finally {
        ui.unmount();
      }
    } finally {
      await closeBuses();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
