// Refusals beyond a sender's rate are counted in one summary row instead of a row each, so a
// flood costs bounded disk and the log still tells what happened.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { main } from '../src/cli/main.js';
import { Orchestrator, SqliteAuditLog, type Clock, type MessageLogEntry, type OrchestratorOptions } from '../src/index.js';
import type { AttemptRecord } from '../src/audit/types.js';
import { MIN_REFUSAL_RATE, REFUSAL_SUMMARY_MS, RefusalSummaries } from '../src/pipeline/refusal-summary.js';
import { closeBuses, settle } from './support/helpers.js';
import { recordingResponder } from './support/loopback.js';
import { inboundMessage, twoNodes } from './support/nodes.js';

const T0 = Date.UTC(2026, 0, 2, 3, 4, 5);

function manualClock(): Clock & { t: number } {
  const clock = { t: T0, now: () => clock.t };
  return clock;
}

/** A bus where mallory may send nothing and bob listens: every send of mallory's is refused. */
function floodBus(clock: Clock, options: OrchestratorOptions = {}): Orchestrator {
  const bus = new Orchestrator({ clock, policies: [], ...options });
  bus.register('bob', { handlers: { '*': () => 'ok' } });
  return bus;
}

/** Sends n refused asks and waits for every refusal. */
async function flood(send: (i: number) => Promise<unknown>, n: number, step?: (i: number) => void): Promise<string[]> {
  const codes = new Map<string, number>();
  const pending: Promise<unknown>[] = [];
  for (let i = 0; i < n; i++) {
    step?.(i);
    pending.push(
      send(i).then(
        () => codes.set('ok', (codes.get('ok') ?? 0) + 1),
        (e: { code: string }) => codes.set(e.code, (codes.get(e.code) ?? 0) + 1),
      ),
    );
  }
  await Promise.all(pending);
  return [...codes.keys()];
}

/** How many refusals the entries stand for: one each, a summary its count. */
function refusalsIn(entries: readonly MessageLogEntry[]): number {
  return entries.reduce((sum, e) => sum + (e.refusals?.count ?? 1), 0);
}

function allEntries(bus: Orchestrator, agentId: string): MessageLogEntry[] {
  return bus.getMessageLog({ agentId, limit: 10_000 });
}

describe('refusal summaries (Orchestrator)', () => {
  it('writes a flood of 100,000 refused sends from one sender as at most burst + 1 rows whose counts add up to exactly 100,000', async () => {
    const clock = manualClock();
    const bus = floodBus(clock);
    const mallory = bus.register('mallory');
    await flood(() => mallory.ask('bob', 'steal', { i: 1 }), 100_000);
    const entries = allEntries(bus, 'mallory');
    expect(entries.length).toBeLessThanOrEqual(MIN_REFUSAL_RATE.burst + 1);
    expect(bus.auditHead().seq).toBeLessThanOrEqual(MIN_REFUSAL_RATE.burst + 1);
    expect(refusalsIn(entries)).toBe(100_000);
    const summary = entries.find((e) => e.refusals !== undefined)!;
    // The burst spent the send bucket on POLICY_DENIED; everything after was RATE_LIMITED.
    expect(summary.refusals).toEqual({ count: 100_000 - 10, first: T0, last: T0, codes: { RATE_LIMITED: 99_990 } });
    expect(summary).toMatchObject({ from: 'mallory', to: 'bob', intent: 'steal', type: 'ask', decision: 'denied', code: 'RATE_LIMITED' });
    expect(bus.verifyAuditLog()).toMatchObject({ ok: true });
    await bus.close();
  }, 120_000); // 100,000 refusals take seconds on a loaded machine

  it('says in the summary row how many, between which times, and the count of each code', async () => {
    const clock = manualClock();
    const bus = floodBus(clock, { limits: { rate: { perSecond: 10, burst: 10 } } });
    const mallory = bus.register('mallory');
    // Sends that never reach the rate check (unknown recipient) beside ones that do (policy).
    await flood((i) => (i % 2 === 0 ? mallory.ask('nobody', 'x', {}) : mallory.ask('bob', 'x', {})), 40, () => (clock.t += 1));
    const summary = allEntries(bus, 'mallory').find((e) => e.refusals !== undefined)!;
    expect(summary.refusals).toEqual({ count: 30, first: T0 + 11, last: T0 + 40, codes: { UNKNOWN_AGENT: 15, RATE_LIMITED: 10, POLICY_DENIED: 5 } });
    expect(summary.ts).toBe(T0 + 40);
    expect(summary.code).toBe('UNKNOWN_AGENT'); // the most frequent
    expect(summary.reason).toContain('30 refusals of mallory beyond its rate between 2026-01-02T03:04:05.011Z and 2026-01-02T03:04:05.040Z');
    expect(summary.reason).toContain('UNKNOWN_AGENT ×15, RATE_LIMITED ×10, POLICY_DENIED ×5');
    expect(summary.reason).toContain('the first: no agent "nobody" is registered');
    await bus.close();
  });

  it("still writes a well-behaved sender's refusals one by one, and a flood by another sender leaves them alone", async () => {
    const clock = manualClock();
    const bus = floodBus(clock);
    const careful = bus.register('careful');
    const mallory = bus.register('mallory');
    for (let second = 0; second < 5; second++) {
      await flood(() => careful.ask('bob', 'x', {}), 5);
      await flood(() => mallory.ask('bob', 'x', {}), 1_000);
      clock.t += 1_000;
    }
    const entries = allEntries(bus, 'careful');
    expect(entries).toHaveLength(25);
    expect(entries.every((e) => e.refusals === undefined && e.code === 'POLICY_DENIED')).toBe(true);
    expect(refusalsIn(allEntries(bus, 'mallory'))).toBe(5_000);
    await bus.close();
  });

  it('writes one summary per interval of a long flood, with every refusal counted', async () => {
    const clock = manualClock();
    const bus = floodBus(clock);
    const mallory = bus.register('mallory');
    // 50,000 refusals over 10 s of the bus's clock.
    await flood(() => mallory.ask('bob', 'x', {}), 50_000, () => (clock.t += 0.2));
    const entries = allEntries(bus, 'mallory');
    const summaries = entries.filter((e) => e.refusals !== undefined);
    expect(refusalsIn(entries)).toBe(50_000);
    expect(summaries.length).toBeGreaterThanOrEqual(9);
    expect(summaries.length).toBeLessThanOrEqual(11);
    // Beyond the summaries, at most the burst plus what the rate refilled: 10 + 10/s · 10 s.
    expect(entries.length - summaries.length).toBeLessThanOrEqual(10 + 10 * 10 + 1);
    for (const s of summaries) expect(s.refusals!.last - s.refusals!.first).toBeLessThan(REFUSAL_SUMMARY_MS);
    await bus.close();
  }, 60_000);

  it('counts a flood of refused replies in one summary too', async () => {
    const clock = manualClock();
    const bus = floodBus(clock);
    const mallory = bus.register('mallory');
    await flood((i) => mallory.reply(`m-unknown-${i}`, { junk: 'x'.repeat(100) }), 10_000);
    const entries = allEntries(bus, 'mallory');
    expect(entries).toHaveLength(11);
    expect(refusalsIn(entries)).toBe(10_000);
    const summary = entries.find((e) => e.refusals !== undefined)!;
    expect(summary).toMatchObject({ type: 'reply', inReplyTo: 'm-unknown-10', refusals: { count: 9_990, codes: { RATE_LIMITED: 9_990 } } });
    await bus.close();
  });

  it('emits message:denied for every refusal, counted in a summary or not', async () => {
    const bus = floodBus(manualClock());
    const mallory = bus.register('mallory');
    let denied = 0;
    bus.events.on('message:denied', () => denied++);
    await flood(() => mallory.ask('bob', 'x', {}), 5_000);
    expect(denied).toBe(5_000);
    await bus.close();
  });

  it('writes an open summary by timer once the flood stops, without a read or a flush', async () => {
    vi.useFakeTimers({ now: T0 });
    try {
      const heads: number[] = [];
      const bus = floodBus({ now: () => Date.now() }, { audit: { onCommit: (head) => heads.push(head.seq) } });
      const mallory = bus.register('mallory');
      await flood(() => mallory.ask('bob', 'x', {}), 1_000);
      await vi.advanceTimersByTimeAsync(0);
      expect(heads.at(-1)).toBe(10); // the burst's rows; the rest is counted, not yet written
      await vi.advanceTimersByTimeAsync(REFUSAL_SUMMARY_MS);
      expect(heads.at(-1)).toBe(11);
      expect(vi.getTimerCount()).toBe(0); // no timer runs while no summary is open
      expect(refusalsIn(allEntries(bus, 'mallory'))).toBe(1_000);
      await bus.close();
    } finally {
      vi.useRealTimers();
    }
  });

  it('writes a lone refusal beyond the rate as its own row, not as a summary of one', async () => {
    const clock = manualClock();
    const bus = floodBus(clock);
    const mallory = bus.register('mallory');
    await flood(() => mallory.ask('bob', 'x', {}), 11);
    const entries = allEntries(bus, 'mallory');
    expect(entries).toHaveLength(11);
    expect(entries.every((e) => e.refusals === undefined)).toBe(true);
    expect(entries[0]).toMatchObject({ code: 'RATE_LIMITED', ts: T0 });
    await bus.close();
  });

  describe('with a file log', () => {
    let dir: string;
    beforeEach(() => {
      dir = mkdtempSync(join(tmpdir(), 'switchboard-refusals-'));
    });
    afterEach(() => rmSync(dir, { recursive: true, force: true }));

    it('close() writes a pending summary: it verifies, and the audit_records view shows its tally', async () => {
      const path = join(dir, 'audit.db');
      for (const worker of [false, true]) {
        rmSync(path, { force: true });
        const bus = floodBus(manualClock(), { audit: { path, worker } });
        const mallory = bus.register('mallory');
        await flood(() => mallory.notify('spam', {}), 20_000);
        await bus.close();

        const log = new SqliteAuditLog({ path, readonly: true });
        const entries = log.query({ agentId: 'mallory', limit: 100 });
        expect(refusalsIn(entries)).toBe(20_000);
        // 10 notifies within the rate (each denied to bob by policy), 10 RATE_LIMITED rows, one summary.
        expect(entries.length).toBeLessThanOrEqual(21);
        expect(log.verify()).toMatchObject({ ok: true, checked: entries.length });
        log.close();

        const db = new Database(path, { readonly: true });
        const row = db.prepare("SELECT kind, decision, code, json_extract(note, '$.count') AS count FROM audit_records WHERE note IS NOT NULL").get();
        db.close();
        expect(row).toEqual({ kind: 'attempt', decision: 'denied', code: 'RATE_LIMITED', count: 19_980 });
      }
    });

    it('fails verification when a summary\'s count is changed', async () => {
      const path = join(dir, 'tamper.db');
      const bus = floodBus(manualClock(), { audit: { path } });
      const mallory = bus.register('mallory');
      await flood(() => mallory.ask('bob', 'x', {}), 1_000);
      await bus.close();
      const db = new Database(path);
      const changed = db.prepare(`UPDATE audit_batch SET records = replace(records, '"count":990', '"count":9') WHERE instr(records, '"count":990') > 0`).run().changes;
      db.close();
      expect(changed).toBe(1);
      const log = new SqliteAuditLog({ path });
      expect(log.verify()).toMatchObject({ ok: false, firstBad: 11 });
      log.close();
    });

    it('shows the summary in `switchboard log` and exports its tally', async () => {
      const path = join(dir, 'cli.db');
      const bus = floodBus(manualClock(), { audit: { path } });
      const mallory = bus.register('mallory');
      await flood(() => mallory.ask('bob', 'x', {}), 500);
      await bus.close();

      const out: string[] = [];
      const io = { out: (l: string) => out.push(l), err: (l: string) => out.push(l), env: {} };
      expect(main(['log', path, '--agent', 'mallory', '--limit', '1'], io)).toBe(0);
      expect(out[1]).toMatch(/mallory\s+bob\s+ask\s+x\s+denied\s+-\s+-\s+490 refused since 2026-01-02T03:04:05\.000Z: RATE_LIMITED×490$/);
      out.length = 0;
      expect(main(['export', path], io)).toBe(0);
      const exported = out.map((l) => JSON.parse(l) as MessageLogEntry);
      expect(refusalsIn(exported)).toBe(500);
      out.length = 0;
      expect(main(['export', path, '--format', 'csv'], io)).toBe(0);
      expect(out[0]).toMatch(/,refusals$/);
      expect(out.at(-1)).toContain('"{""count"":490,""first"":');
    });
  });
});

describe('refusal summaries across nodes', () => {
  afterEach(closeBuses);

  /** Node n2 (no rules) serving `b`, and 2,000 asks injected into it from node n1, the i-th sent as `fromOf(i)`. */
  async function flood(n2Options: OrchestratorOptions, fromOf: (i: number) => string) {
    const { n1, n2, t1 } = twoNodes({}, { policies: [], clock: manualClock(), ...n2Options });
    n2.register('b', { handlers: { echo: () => 'ok' } });
    n1.register('a');
    const responders = Array.from({ length: 2_000 }, (_, i) => {
      const r = recordingResponder();
      t1.inject('n2', inboundMessage({ from: fromOf(i), payloadJson: '{}', conversationId: `c-${i}` }), r);
      return r;
    });
    await settle(40);
    return { n2, responders };
  }

  it("counts a remote sender's flood of refused messages at the receiving node in one summary", async () => {
    const { n2, responders } = await flood({ limits: { rate: { perSecond: 10, burst: 10 } } }, () => 'a');
    expect(responders.every((r) => r.errors.length === 1)).toBe(true);
    const entries = allEntries(n2, 'a');
    expect(entries.length).toBeLessThanOrEqual(MIN_REFUSAL_RATE.burst + 1);
    expect(refusalsIn(entries)).toBe(2_000);
    expect(entries[0]!.refusals).toMatchObject({ count: 1_990, codes: { RATE_LIMITED: 1_990 } });
  });

  it('counts a peer rotating made-up sender ids in one summary: a fresh id buys no fresh rows', async () => {
    const { n2, responders } = await flood({}, (i) => `fake-${i}`);
    expect(responders.every((r) => r.errors.length === 1)).toBe(true);
    const entries = allEntries(n2, 'b');
    expect(entries.length).toBeLessThanOrEqual(MIN_REFUSAL_RATE.burst + 1);
    expect(refusalsIn(entries)).toBe(2_000);
  });
});

describe('RefusalSummaries', () => {
  function refusal(from: string, ts: number, code: AttemptRecord['code'] = 'POLICY_DENIED', id = `m-${ts}`): AttemptRecord {
    return { kind: 'attempt', ts, messageId: id, from, to: 'bob', type: 'ask', intent: 'x', payloadHash: '', payloadBytes: 0, decision: 'denied', policyVersion: 1, code, reason: 'no', conversationId: id };
  }

  it("follows the sender's own rate when it is above the minimum", () => {
    const rows: AttemptRecord[] = [];
    const summaries = new RefusalSummaries((r) => rows.push(r), () => ({ perSecond: 100, burst: 50 }));
    for (let i = 0; i < 60; i++) summaries.record(refusal('a', T0));
    expect(rows).toHaveLength(50);
    summaries.close();
    expect(rows).toHaveLength(51);
    expect(rows[50]!.refusals).toEqual({ count: 10, first: T0, last: T0, codes: { POLICY_DENIED: 10 } });
  });

  it('keeps the summary of each sender apart', () => {
    const rows: AttemptRecord[] = [];
    const summaries = new RefusalSummaries((r) => rows.push(r), () => undefined);
    for (let i = 0; i < 30; i++) {
      summaries.record(refusal('a', T0 + i, 'RATE_LIMITED', `a${i}`));
      summaries.record(refusal('b', T0 + i, 'UNKNOWN_AGENT', `b${i}`));
    }
    summaries.flush();
    const a = rows.filter((r) => r.from === 'a');
    const b = rows.filter((r) => r.from === 'b');
    expect(a.at(-1)!.refusals).toEqual({ count: 20, first: T0 + 10, last: T0 + 29, codes: { RATE_LIMITED: 20 } });
    expect(b.at(-1)!.refusals).toEqual({ count: 20, first: T0 + 10, last: T0 + 29, codes: { UNKNOWN_AGENT: 20 } });
    expect(a.at(-1)!.messageId).toBe('a10'); // the first counted refusal's message
    summaries.close();
  });

  it('records NO_HANDLER and MAILBOX_FULL summaries as allowed-then-failed, never as a policy denial', () => {
    const rows: AttemptRecord[] = [];
    const summaries = new RefusalSummaries((r) => rows.push(r), () => undefined);
    for (let i = 0; i < 15; i++) summaries.record({ ...refusal('a', T0, i % 2 ? 'NO_HANDLER' : 'MAILBOX_FULL'), decision: 'allowed', outcome: 'failed' });
    summaries.close();
    expect(rows.at(-1)).toMatchObject({ decision: 'allowed', outcome: 'failed', refusals: { count: 5 } });
  });

  it('writes refusals one by one after close(), and leaves no timer', () => {
    vi.useFakeTimers();
    try {
      const rows: AttemptRecord[] = [];
      const summaries = new RefusalSummaries((r) => rows.push(r), () => undefined);
      for (let i = 0; i < 12; i++) summaries.record(refusal('a', T0));
      expect(vi.getTimerCount()).toBe(1);
      summaries.close();
      expect(vi.getTimerCount()).toBe(0);
      expect(rows).toHaveLength(11);
      for (let i = 0; i < 12; i++) summaries.record(refusal('a', T0));
      expect(rows).toHaveLength(23);
      expect(vi.getTimerCount()).toBe(0);
    } finally {
      vi.useRealTimers();
    }
  });
});
