// `switchboard verify <db> --roster roster.json`: a log proves what each peer sent it only if
// every kept proof verifies against the roster AND is a proof of the row that keeps it. The
// logs here are written by the library's own writer, as someone who rewrites a log and
// recomputes its (unkeyed) chain would write them.
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { SqliteAuditLog, type AttemptRecord } from '../src/audit/index.js';
import { main } from '../src/cli/main.js';
import { keysFromSeed } from '../src/nats/keys.js';
import { Proofs } from '../src/nats/proofs.js';
import { RosterIndex, type Roster } from '../src/nats/roster.js';
import { escapeToken, Subjects } from '../src/nats/subjects.js';
import { answerLine, messageLine } from '../src/nats/wire.js';
import { tamper } from './support/audit-tamper.js';

const nkeys = createRequire(import.meta.url)('@nats-io/nkeys') as { createUser(): { getSeed(): Uint8Array } };
const keys = Object.fromEntries(['n1', 'n2'].map((n) => [n, keysFromSeed(new TextDecoder().decode(nkeys.createUser().getSeed()))]));
const roster: Roster = {
  v: 1,
  bus: 'shop',
  nodes: {
    n1: { signingKey: keys.n1!.publicKey, sealingKey: keys.n1!.sealingKey, agents: ['alice', 'carol'] },
    n2: { signingKey: keys.n2!.publicKey, sealingKey: keys.n2!.sealingKey, agents: ['bob'] },
  },
  operators: {},
};
const index = new RosterIndex(roster);
const proofs = (node: string) => new Proofs({ bus: 'shop', node, roster: index, keys: keys[node]! });
const subjects = new Subjects('shop');
const dir = mkdtempSync(join(tmpdir(), 'switchboard-verify-roster-'));
const rosterPath = join(dir, 'roster.json');
writeFileSync(rosterPath, JSON.stringify(roster));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const hash = (s: string) => createHash('sha256').update(s).digest('hex');
const payload = '{"amount":10}';

/** n2's receipt of alice's ask `pay` to bob, with the proof n2's link kept as it arrived. */
function receipt(): AttemptRecord {
  const subject = subjects.inbound('bob', 'alice', 'ask');
  const line = messageLine({ id: 'm-1', intent: 'pay', ts: Date.now(), conversationId: 'c-1', depth: 0, priority: 'normal', budgetMs: 5000, node: 'n1' });
  const opened = proofs('n2').open(subject, proofs('n1').wrap(subject, line, payload, 'n2', false), false);
  return {
    kind: 'attempt', ts: Date.now(), messageId: 'm-1', from: 'alice', to: 'bob', type: 'ask', intent: 'pay',
    payloadHash: hash(payload), payloadBytes: payload.length, decision: 'allowed', policyVersion: 1, outcome: 'delivered',
    conversationId: 'c-1', node: 'n2', peerNode: 'n1', proof: opened.proof!,
  };
}

/** n1's reply row for bob's answer to m-1, with the proof n1's link kept. */
function replyRow(): AttemptRecord {
  const subject = `${subjects.inboxPrefix('n1')}.${escapeToken('m-1')}__${escapeToken('bob')}`;
  const opened = proofs('n1').open(subject, proofs('n2').wrap(subject, answerLine('r', 'm-1'), '"paid"', 'n1', false), false);
  return {
    kind: 'attempt', ts: Date.now(), messageId: 'm-r', from: 'bob', to: 'alice', type: 'reply', intent: 'pay',
    payloadHash: hash('"paid"'), payloadBytes: 6, decision: 'allowed', policyVersion: 1, outcome: 'delivered',
    conversationId: 'c-1', inReplyTo: 'm-1', node: 'n1', peerNode: 'n2', proof: opened.proof!,
  };
}

let files = 0;
function verify(...records: AttemptRecord[]): { code: number; text: string } {
  return verifyFile(write(records));
}
function write(records: AttemptRecord[]): string {
  const path = join(dir, `log-${files++}.db`);
  const log = new SqliteAuditLog({ path });
  log.append(records);
  log.close();
  return path;
}
function verifyFile(path: string): { code: number; text: string } {
  const out: string[] = [];
  const code = main(['verify', path, '--roster', rosterPath], { out: (l) => out.push(l), err: (l) => out.push(l) }) as number;
  return { code, text: out.join('\n') };
}

describe('switchboard verify --roster', () => {
  it('exits 0 for a receipt and a reply row whose proofs are theirs', () => {
    expect(verify(receipt(), replyRow())).toMatchObject({ code: 0, text: expect.stringContaining('ok: 2 peer proofs verified against the roster of bus "shop"') });
  });

  it.each([
    ['from', { from: 'carol' }, 'from is "carol" but the proof says "alice"'],
    ['to', { to: 'dave' }, 'to is "dave" but the proof says "bob"'],
    ['type', { type: 'delegate' as const }, 'type is "delegate" but the proof says "ask"'],
    ['intent', { intent: 'refund' }, 'intent is "refund" but the proof says "pay"'],
    ['messageId', { messageId: 'm-9' }, 'messageId is "m-9" but the proof says "m-1"'],
    ['peerNode', { peerNode: 'n2' }, 'peerNode is "n2" but the proof says "n1"'],
  ])('exits 1 naming the row when a genuine proof sits on a receipt that records another %s', (_field, change, why) => {
    const { code, text } = verify(receipt(), { ...receipt(), ...change });
    expect(code).toBe(1);
    expect(text).toContain('the recorded proof is not of this entry');
    expect(text).toContain(why);
  });

  it('exits 1 when a reply proof sits on a reply row to another message or from another agent', () => {
    expect(verify({ ...replyRow(), inReplyTo: 'm-2' }).text).toContain('inReplyTo is "m-2" but the proof says "m-1"');
    expect(verify({ ...replyRow(), from: 'carol' })).toMatchObject({ code: 1, text: expect.stringContaining('from (the agent that was asked) is "carol" but the proof says "bob"') });
  });

  it('exits 1 naming the first bad row when a row is edited in place (the chain breaks before any proof is read)', () => {
    const path = write([receipt(), replyRow()]);
    tamper(path, (r) => (r[0]!.line = r[0]!.line.replace('"alice"', '"carol"')));
    const { code, text } = verifyFile(path);
    expect(code).toBe(1);
    expect(text).toMatch(/^bad: .*row 1/m);
  });

  it('exits 1 when the payload hash is not the one the proof signed', () => {
    expect(verify({ ...receipt(), payloadHash: hash('{"amount":1000}') })).toMatchObject({ code: 1, text: expect.stringContaining('the signature of node "n1" does not verify') });
  });
});
