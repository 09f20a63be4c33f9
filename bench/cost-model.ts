// The per-message cost model: each step an ask goes through, timed alone in a tight loop.
// `npm run bench -- --only=cost` prints it; docs/performance.md explains it.
import { hash } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { nanoid } from 'nanoid';
import { encodePayload, hashPayload } from '../src/codec.js';
import { DeadlineQueue, type Expirable } from '../src/deadlines.js';
import { encodeRow, createDigest, GENESIS } from '../src/audit/hash-chain.js';
import { PolicySet, parseRules } from '../src/policy.js';
import { TokenBucket } from '../src/limits.js';
import { SqliteAuditLog } from '../src/audit/sqlite.js';
import type { AttemptRecord } from '../src/audit/types.js';

export interface Step {
  step: string;
  microseconds: number;
  note: string;
}

/** Nanoseconds per call of `fn`, after a warm-up, best of three runs. */
function time(iterations: number, fn: (i: number) => unknown): number {
  let sink: unknown;
  for (let i = 0; i < Math.min(iterations, 20_000); i++) sink = fn(i);
  let best = Infinity;
  for (let run = 0; run < 3; run++) {
    const t0 = performance.now();
    for (let i = 0; i < iterations; i++) sink = fn(i);
    best = Math.min(best, ((performance.now() - t0) * 1e6) / iterations);
  }
  if (sink === Symbol.for('never')) console.log(sink);
  return best / 1000;
}

export async function costModel(payload: unknown): Promise<Step[]> {
  const steps: Step[] = [];
  const add = (step: string, microseconds: number, note: string) => steps.push({ step, microseconds, note });

  let n = 0;
  const prefix = `m${nanoid(8)}-`;
  add('message id', time(1_000_000, () => prefix + (n++).toString(36)), 'random prefix per bus + counter');
  add('codec: check + frozen copy + size', time(300_000, () => encodePayload(payload, 102_400)), 'one pass (per payload: an ask has two, the ask and its reply)');
  add('payload JSON + SHA-256', time(300_000, () => hashPayload(encodePayload(payload, 102_400))) - time(300_000, () => encodePayload(payload, 102_400)), 'JSON built for the hash only; both skipped when audit is off');
  const encoded = encodePayload(payload, 102_400);
  const policy = new PolicySet(parseRules([{ from: '*', to: '*', allow: ['ask'] }, { from: 'a', to: 'vault', deny: ['notify'] }]), 1);
  add('policy decision', time(1_000_000, () => policy.evaluate({ from: 'client', to: 'worker', type: 'ask', intent: 'echo', trust: 0 })), 'a few Map lookups per level');
  const bucket = new TokenBucket({ perSecond: 1e12, burst: 1e12 }, 0);
  add('token bucket', time(1_000_000, (i) => bucket.take(i)), 'when the rate limit is on');
  const queue = new DeadlineQueue<Expirable>({ now: () => 0 }, () => undefined);
  // Steady state: other requests are pending, so the timer is already armed for an earlier one.
  for (let i = 0; i < 1000; i++) queue.add({ deadline: 1000 + i, heapIndex: -1 });
  add('deadline add + remove', time(500_000, (i) => {
    const item = { deadline: 30_000 + (i % 1000), heapIndex: -1 };
    queue.add(item);
    queue.remove(item);
  }), 'one heap swept by one timer, instead of a setTimeout each');
  queue.clear();
  add('promise + resolve', time(1_000_000, () => {
    let resolve!: (v: unknown) => void;
    const p = new Promise((r) => (resolve = r));
    resolve(1);
    return p;
  }), 'the sender\'s promise');
  const stack = time(100_000, () => {
    const o: { stack?: string } = {};
    Error.captureStackTrace(o);
    return o;
  });
  add('call-site capture (opt-in)', stack, 'only with diagnostics.callSites');

  const record: AttemptRecord = {
    kind: 'attempt', ts: Date.now(), messageId: 'mAbCdEfGh-1a2b', from: 'client', to: 'worker', type: 'ask', intent: 'echo',
    payloadHash: hashPayload(encoded), payloadBytes: encoded.bytes, decision: 'allowed', rule: '* -> * allow:ask', policyVersion: 1,
    outcome: 'delivered', conversationId: 'mAbCdEfGh-1a2b',
  };
  const row = [1, 'attempt', record.ts, record.messageId, record.to, record.from, record.type, record.intent, record.payloadHash, 106, 'allowed', null, record.rule, 1, null, 'delivered', null, null, null, record.conversationId, null, null];
  const digest = createDigest();
  add('audit row: canonical encoding + chain hash', time(300_000, () => digest(GENESIS, encodeRow(row))), 'per row; an ask writes two rows (ask, reply)');
  for (const path of [':memory:', 'file']) {
    const file = path === 'file' ? `${process.env.TMPDIR ?? '/tmp'}/switchboard-cost-${process.pid}.db` : ':memory:';
    const log = new SqliteAuditLog({ path: file });
    const batch = Array.from({ length: 250 }, (_, i) => ({ ...record, messageId: `m-${i}`, conversationId: `m-${i}` }));
    const us = time(200, () => log.append(batch)) / batch.length;
    add(`audit row: append, ${path} (batch of 250)`, us, 'SQLite insert with the query indexes, encoding and hash included');
    log.close();
    if (path === 'file') for (const suffix of ['', '-wal', '-shm']) await import('node:fs').then((fs) => fs.rmSync(file + suffix, { force: true }));
  }
  // Keep the hash import used for readers comparing one-shot with createHash.
  add('SHA-256 of 226 B (one-shot)', time(500_000, () => hash('sha256', 'x'.repeat(226), 'hex')), 'for scale');
  return steps;
}
