// fleetApprovals against a real nats-server started with the configuration `switchboard
// fleet init` generates: one console for the held messages of two nodes, decided by
// operators of the roster only, once.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { createElement as h } from 'react';
import { render } from 'ink-testing-library';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { Orchestrator, type BusEvents, type PolicyRule } from '../../src/index.js';
import { main } from '../../src/cli/main.js';
import { ApprovalConsole } from '../../src/console/index.js';
import { NodeConnection } from '../../src/nats/connection.js';
import { ephemeralKey, openFrame, sealFor, sealFrame } from '../../src/nats/desk-wire.js';
import { fleetApprovals, natsTransport, type FleetApprovals } from '../../src/nats/index.js';
import { keysFromSeed, verifierOf } from '../../src/nats/keys.js';
import { loadRoster } from '../../src/nats/roster.js';
import { Subjects } from '../../src/nats/subjects.js';
import { approvalServer } from '../../src/web/index.js';
import { csrfFor } from '../../src/web/auth.js';
import { natsBin, skip } from './context.js';
import { startNatsServer, type NatsServer } from './server.js';

if (skip !== '') console.warn(`[nats] fleet-approvals.test.ts skipped: ${skip}`);

const quiet = { out: () => {}, err: (l: string) => console.error(l) };
const dir = mkdtempSync(join(tmpdir(), 'switchboard-fleetapp-'));
const cfg = join(dir, 'fleet');
const other = join(dir, 'other');
const seed = (holder: string, from = cfg) => readFileSync(join(from, `${holder}.nk`), 'utf8');
const rosterPath = join(cfg, 'roster.json');
const BUS = 'shop';
const subjects = new Subjects(BUS);
/** Each node holds its own buyer's asks for a human. */
const RULES: PolicyRule[] = [
  { from: 'buyer', to: 'clerk', allow: ['ask'], requireApproval: true },
  { from: 'shopper', to: 'pay', allow: ['ask'], requireApproval: true },
];
const closers: Array<{ close(): Promise<void> }> = [];
let server: NatsServer;

afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c.close().catch(() => undefined);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function startNode(node: string, db?: string): Promise<Orchestrator> {
  const transport = await natsTransport({ servers: server.url, bus: BUS, roster: rosterPath, nkeySeed: seed(node) });
  const bus = new Orchestrator({ node, transport, policies: RULES, ...(db === undefined ? {} : { audit: { path: db } }) });
  closers.push(bus);
  return bus;
}

/** Two nodes, each holding one ask of its own: n1 buyer → clerk, n2 shopper → pay. */
async function twoNodes(n1Db?: string) {
  const n1 = await startNode('n1', n1Db);
  const n2 = await startNode('n2');
  n1.register('clerk', { handlers: { sell: (p) => ({ sold: p }) } });
  n2.register('pay', { handlers: { charge: (p) => ({ charged: p }) } });
  const buyer = n1.register('buyer');
  const shopper = n2.register('shopper');
  await Promise.all([n1.ready(), n2.ready()]);
  const sold = buyer.ask('clerk', 'sell', { item: 'tea' }, { timeoutMs: 60_000 });
  const charged = shopper.ask('pay', 'charge', { amount: 42 }, { timeoutMs: 60_000 });
  sold.catch(() => undefined);
  charged.catch(() => undefined);
  await Promise.all([n1.flush(), n2.flush()]);
  return { n1, n2, sold, charged, id1: n1.approvals.list()[0]!.id, id2: n2.approvals.list()[0]!.id };
}

/** The fleet's queue as `operator`, over a transport built with n3's seed (a node that runs nothing). */
async function fleetAs(operator: string, from = cfg): Promise<FleetApprovals> {
  const transport = await natsTransport({ servers: server.url, bus: BUS, roster: rosterPath, nkeySeed: seed('n3') });
  const fleet = await fleetApprovals({ transport, operatorSeed: seed(operator, from) });
  closers.push(fleet);
  return fleet;
}

/** A raw client with operator alice's broker credentials: what a thief of her broker access (not of her key) can send. */
async function rawOperator(): Promise<NodeConnection> {
  const c = await NodeConnection.open({ servers: server.url, inboxPrefix: subjects.operatorInbox('alice'), nkeySeed: seed('alice') });
  closers.push(c);
  return c;
}

describe.skipIf(skip !== '')('fleetApprovals() on a nats-server with the auth.conf of `switchboard fleet init`', () => {
  beforeAll(async () => {
    const file = join(dir, 'fleet.json');
    writeFileSync(file, JSON.stringify({ bus: BUS, nodes: { n1: ['buyer', 'clerk'], n2: ['shopper', 'pay'], n3: ['idle'] }, operators: ['alice', 'bob'] }));
    expect(main(['fleet', 'init', file, '--out', cfg], quiet)).toBe(0);
    expect(main(['fleet', 'init', file, '--out', other], quiet)).toBe(0);
    server = await startNatsServer(natsBin, { extraConfig: readFileSync(join(cfg, 'auth.conf'), 'utf8') });
    expect(await main(['fleet', 'bucket', '--servers', server.url, '--creds', join(cfg, 'alice.nk'), '--roster', rosterPath], quiet)).toBe(0);
  });
  afterAll(async () => {
    await server?.dispose();
  });

  it('lists the held messages of both nodes, each with its node, and follows new holds and decisions', async () => {
    const { n1, id1, id2, sold } = await twoNodes();
    const fleet = await fleetAs('alice');
    expect(fleet.operator).toBe('alice');
    // Its events are a face to listen on: no holder of the desk can emit a forged decision.
    expect(Object.isFrozen(fleet.events)).toBe(true);
    expect(Object.keys(fleet.events).sort()).toEqual(['off', 'on']);
    const listed = fleet.approvals.list();
    expect(listed.map((a) => [a.node, a.id, a.envelope.from, a.envelope.to])).toEqual(
      expect.arrayContaining([
        ['n1', id1, 'buyer', 'clerk'],
        ['n2', id2, 'shopper', 'pay'],
      ]),
    );
    expect(listed).toHaveLength(2);
    expect(listed.find((a) => a.node === 'n2')!.envelope.payload).toEqual({ amount: 42 });
    // A decision taken at the node itself reaches the fleet's views as an event.
    const decided = new Promise((resolve) => fleet.events.on('approval:decided', resolve));
    n1.approvals.approve(id1, { by: 'local' });
    await expect(decided).resolves.toMatchObject({ approval: { id: id1, node: 'n1' }, decision: 'approved', by: 'local' });
    await expect(sold).resolves.toEqual({ sold: { item: 'tea' } });
    expect(fleet.approvals.list().map((a) => a.id)).toEqual([id2]);
  });

  it("shows a stopped node's held messages no more after the next refresh, and again once it restarts (durable approvals)", async () => {
    const db = join(dir, `n1-${Date.now()}.db`);
    const { n1, id1, id2 } = await twoNodes(db);
    const fleet = await fleetAs('alice');
    expect(fleet.approvals.list().map((a) => a.node).sort()).toEqual(['n1', 'n2']);
    await n1.close(); // a file log keeps the hold
    await fleet.refresh();
    expect(fleet.approvals.list().map((a) => [a.node, a.id])).toEqual([['n2', id2]]);
    const again = await startNode('n1', db);
    await again.ready();
    await fleet.refresh();
    expect(fleet.approvals.list().map((a) => [a.node, a.id, a.restored === true]).sort()).toEqual([['n1', id1, true], ['n2', id2, false]]);
  });

  it("lists the oldest of a node's held messages that fit one NATS message when all of them do not", async () => {
    const n2 = await startNode('n2');
    n2.register('pay', { handlers: { charge: (p) => ({ charged: p }) } });
    const shopper = n2.register('shopper');
    await n2.ready();
    const big = 'x'.repeat(90_000);
    for (let i = 0; i < 10; i++) shopper.ask('pay', 'charge', { i, big }, { timeoutMs: 60_000 }).catch(() => undefined);
    await n2.flush();
    expect(n2.approvals.list()).toHaveLength(10); // 900 kB of payloads: past the server's 1 MB max_payload once encrypted and encoded
    const fleet = await fleetAs('alice');
    const shown = fleet.approvals.list();
    expect(shown.length).toBeGreaterThan(2);
    expect(shown.length).toBeLessThan(10);
    expect(shown.map((a) => (a.envelope.payload as { i: number }).i)).toEqual([...Array(shown.length).keys()]);
  });

  it('approves a message held on node n2 from the fleet console: it is delivered and n2 records decidedBy = the operator id', async () => {
    const { n2, id2, charged } = await twoNodes();
    const fleet = await fleetAs('alice');
    const ui = render(h(ApprovalConsole, { bus: fleet, operator: fleet.operator, columns: 100, rows: 30 }));
    closers.push({ close: async () => ui.unmount() });
    ui.stdin.write('\t'); // the queue
    await until(() => (ui.lastFrame() ?? '').includes('n2'), 'the queue shows node n2');
    // Select n2's message, then a (asks first), then y.
    const rows = (ui.lastFrame() ?? '').split('\n');
    const n2First = rows.findIndex((l) => /\bn2\b/.test(l)) < rows.findIndex((l) => /\bn1\b/.test(l));
    if (!n2First) ui.stdin.write('j');
    await until(() => (ui.lastFrame() ?? '').split('\n').some((l) => l.includes('›') && /\bn2\b/.test(l)), 'n2 selected');
    ui.stdin.write('a');
    await until(() => (ui.lastFrame() ?? '').includes('node n2 · shopper → pay'), 'the confirm step names node n2');
    ui.stdin.write('y');
    await expect(charged).resolves.toEqual({ charged: { amount: 42 } });
    const [entry] = n2.getMessageLog({ agentId: 'shopper', type: 'ask' });
    expect(entry).toMatchObject({ messageId: id2, approval: 'approved', decidedBy: 'alice' });
  });

  it('refuses a seed that is no operator of the roster, naming its key and the operators', async () => {
    const transport = await natsTransport({ servers: server.url, bus: BUS, roster: rosterPath, nkeySeed: seed('n3') });
    const stranger = keysFromSeed(seed('alice', other)).publicKey;
    await expect(fleetApprovals({ transport, operatorSeed: seed('alice', other) })).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      message: expect.stringMatching(new RegExp(`seed is that of key ${stranger}, which no operator of the roster of bus "shop" has \\(operators: alice U\\w+, bob U\\w+\\)`)),
    });
    await expect(fleetApprovals({ transport, operatorSeed: seed('n1') })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(fleetApprovals({ transport, operatorSeed: seed('alice'), timeout: 5 } as never)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('"timeout"') });
    const insecure = { attach() {}, send() {} };
    await expect(fleetApprovals({ transport: insecure as never, operatorSeed: seed('alice') })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('built with the fleet\'s roster') });
  });

  it("refuses a decision whose signature is not the named operator's roster key (a forgery over the operator's broker access): nothing is decided", async () => {
    const { n2, id2 } = await twoNodes();
    const conn = await rawOperator();
    const forger = keysFromSeed(seed('alice', other)); // another fleet's alice: not this roster's key
    const frame = sealFrame(forger, { kind: 'decide', bus: BUS, node: 'n2', op: 'alice', ts: Date.now(), nonce: 'forged-nonce-0123456789', id: id2, decision: 'approve' });
    const answer = await ask(conn, 'n2', 'decide', frame);
    expect(answer).toMatchObject({ ok: false, code: 'POLICY_DENIED', message: expect.stringContaining('signature does not verify') });
    // A name that is not in the roster at all.
    const unknown = sealFrame(forger, { kind: 'decide', bus: BUS, node: 'n2', op: 'mallory', ts: Date.now(), nonce: 'forged-nonce-abcdefghij', id: id2, decision: 'approve' });
    expect(await ask(conn, 'n2', 'decide', unknown)).toMatchObject({ ok: false, code: 'POLICY_DENIED', message: expect.stringContaining('operator "mallory" is not in the roster of node "n2"') });
    expect(n2.approvals.list().map((a) => a.id)).toEqual([id2]);
    expect(n2.getMessageLog({ agentId: 'shopper', type: 'ask' })[0]).toMatchObject({ decision: 'pending' });
    expect(n2.getMessageLog({ agentId: 'shopper', type: 'ask' })[0]!.approval).toBeUndefined();
  });

  it("lists held payloads encrypted for the operator's one-time key; refuses a replayed, a stale and a re-targeted request signed by a roster operator: nothing is decided", async () => {
    const { n1, n2, id2 } = await twoNodes();
    const conn = await rawOperator();
    const alice = keysFromSeed(seed('alice'));
    const eph = ephemeralKey();
    const list = sealFrame(alice, { kind: 'list', bus: BUS, node: 'n2', op: 'alice', ts: Date.now(), nonce: 'replay-nonce-0123456789', eph: eph.publicKey });
    const first = await ask(conn, 'n2', 'list', list);
    // The held payload crosses encrypted for the request's one-time key, never in clear.
    expect(JSON.stringify(first)).not.toContain('amount');
    expect(eph.open(first.sealed, 'replay-nonce-0123456789')).toEqual([expect.objectContaining({ id: id2, envelope: expect.objectContaining({ payload: { amount: 42 } }) })]);
    expect(await ask(conn, 'n2', 'list', list)).toMatchObject({ ok: false, code: 'POLICY_DENIED', message: expect.stringContaining('repeated request of operator "alice"') });
    const stale = sealFrame(alice, { kind: 'decide', bus: BUS, node: 'n2', op: 'alice', ts: Date.now() - 10 * 60_000, nonce: 'stale-nonce-0123456789', id: id2, decision: 'reject' });
    expect(await ask(conn, 'n2', 'decide', stale)).toMatchObject({ ok: false, code: 'POLICY_DENIED', message: expect.stringContaining('from this node\'s clock') });
    // Signed for node n1, sent to n2.
    const retargeted = sealFrame(alice, { kind: 'decide', bus: BUS, node: 'n1', op: 'alice', ts: Date.now(), nonce: 'retarget-nonce-012345678', id: id2, decision: 'reject' });
    expect(await ask(conn, 'n2', 'decide', retargeted)).toMatchObject({ ok: false, code: 'POLICY_DENIED' });
    expect(n2.approvals.list().map((a) => a.id)).toEqual([id2]);
    expect(n1.approvals.list()).toHaveLength(1);
  });

  it('tells the node of every request it refused (operator:refused: the operator and message id named, the code, why), and warns when nobody listens', async () => {
    const { n1, n2, id1, id2 } = await twoNodes();
    const conn = await rawOperator();
    const alice = keysFromSeed(seed('alice'));
    const forger = keysFromSeed(seed('alice', other));
    const refused: BusEvents['operator:refused'][] = [];
    n2.events.on('operator:refused', (e) => void refused.push(e));
    const frames: Array<['list' | 'decide', Uint8Array]> = [
      ['decide', sealFrame(forger, { kind: 'decide', bus: BUS, node: 'n2', op: 'alice', ts: Date.now(), nonce: 'told-nonce-forged-0123', id: id2, decision: 'approve' })],
      ['decide', sealFrame(forger, { kind: 'decide', bus: BUS, node: 'n2', op: 'mallory', ts: Date.now(), nonce: 'told-nonce-unknown-012', id: id2, decision: 'approve' })],
      ['decide', sealFrame(alice, { kind: 'decide', bus: BUS, node: 'n2', op: 'alice', ts: Date.now() - 10 * 60_000, nonce: 'told-nonce-stale-01234', id: id2, decision: 'reject' })],
      ['decide', sealFrame(alice, { kind: 'decide', bus: BUS, node: 'n1', op: 'alice', ts: Date.now(), nonce: 'told-nonce-retarget-01', id: id2, decision: 'reject' })],
      ['decide', sealFrame(alice, { kind: 'decide', bus: BUS, node: 'n2', op: 'alice', ts: Date.now(), nonce: 'told-nonce-shape-01234', id: id2, decision: 'maybe' })],
      ['decide', new TextEncoder().encode('not json')],
    ];
    const list = sealFrame(alice, { kind: 'list', bus: BUS, node: 'n2', op: 'alice', ts: Date.now(), nonce: 'told-nonce-replay-0123', eph: ephemeralKey().publicKey });
    expect(await ask(conn, 'n2', 'list', list)).toMatchObject({ ok: true });
    frames.push(['list', list]); // the same request again: a replay
    frames.push(['list', sealFrame(alice, { kind: 'list', bus: BUS, node: 'n2', op: 'alice', ts: Date.now(), nonce: 'told-nonce-badeph-0123', eph: 'not-a-key' })]);
    for (const [kind, frame] of frames) expect(await ask(conn, 'n2', kind, frame)).toMatchObject({ ok: false });
    expect(refused.map((e) => [e.request, e.operator, e.messageId, e.code])).toEqual([
      ['decide', 'alice', id2, 'POLICY_DENIED'],
      ['decide', 'mallory', id2, 'POLICY_DENIED'],
      ['decide', 'alice', id2, 'POLICY_DENIED'],
      ['decide', 'alice', id2, 'POLICY_DENIED'],
      ['decide', 'alice', id2, 'INVALID_ARGUMENT'],
      ['decide', undefined, undefined, 'POLICY_DENIED'],
      ['list', 'alice', undefined, 'POLICY_DENIED'],
      ['list', 'alice', undefined, 'INVALID_ARGUMENT'],
    ]);
    expect(refused.map((e) => e.reason)).toEqual([
      expect.stringContaining('signature does not verify'),
      expect.stringContaining('operator "mallory" is not in the roster of node "n2"'),
      expect.stringContaining("from this node's clock"),
      expect.stringContaining('not decide on shop/n2'),
      expect.stringContaining('decision must be "approve" or "reject"'),
      expect.stringContaining('frame is not JSON'),
      expect.stringContaining('repeated request of operator "alice"'),
      expect.stringContaining('a list request needs its one-time key "eph"'),
    ]);
    expect(n2.approvals.list().map((a) => a.id)).toEqual([id2]);

    // Nobody listens on n1: a process warning with its code, naming the operator and the message.
    const warnings: Array<[string, string | undefined]> = [];
    const spy = vi.spyOn(process, 'emitWarning').mockImplementation(((w: string, o?: { code?: string }) => void warnings.push([w, o?.code])) as typeof process.emitWarning);
    try {
      const forged = sealFrame(forger, { kind: 'decide', bus: BUS, node: 'n1', op: 'alice', ts: Date.now(), nonce: 'told-nonce-n1-forged-0', id: id1, decision: 'approve' });
      expect(await ask(conn, 'n1', 'decide', forged)).toMatchObject({ ok: false, code: 'POLICY_DENIED' });
    } finally {
      spy.mockRestore();
    }
    expect(warnings.filter(([, code]) => code === 'SWITCHBOARD_OPERATOR_REFUSED').map(([m]) => m)).toEqual([
      `agent-switchboard: node "n1" refused a request naming operator "alice" to decide message "${id1}" (POLICY_DENIED): fleet approvals: refused a frame: its signature does not verify against the roster key of its signer`,
    ]);
    expect(n1.approvals.list().map((a) => a.id)).toEqual([id1]);
  });

  it("refuses to decide a message two nodes both list (a compromised node copying another's id): neither is asked", async () => {
    const { n1, n2, id2 } = await twoNodes();
    // n1's seed in a thief's hands: it answers n1's list with a copy of n2's held message.
    const thief = await NodeConnection.open({ servers: server.url, inboxPrefix: subjects.inboxPrefix('n1'), nkeySeed: seed('n1') });
    closers.push(thief);
    const n1Keys = keysFromSeed(seed('n1'));
    const copy = n2.approvals.list()[0]!;
    await n1.close();
    thief.nc.subscribe(subjects.desk('n1', 'list'), {
      callback: (_e, msg) => {
        const body = JSON.parse(JSON.parse(new TextDecoder().decode(msg.data)).body as string) as { nonce: string; eph: string };
        msg.respond(sealFrame(n1Keys, { kind: 'listed', bus: BUS, node: 'n1', nonce: body.nonce, ok: true, sealed: sealFor(body.eph, body.nonce, [copy]) }));
      },
    });
    await thief.nc.flush();
    const fleet = await fleetAs('alice');
    expect(fleet.approvals.list().map((a) => [a.node, a.id]).sort()).toEqual([['n1', id2], ['n2', id2]]);
    await expect(fleet.approvals.approve(id2)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringContaining(`nodes "n1" and "n2" both list message "${id2}"`) });
    expect(n2.approvals.list().map((a) => a.id)).toEqual([id2]);
  });

  it('decides once: two operators approving the same message from two fleet consoles, one wins and the other gets INVALID_ARGUMENT', async () => {
    const { n2, id2, charged } = await twoNodes();
    const [a, b] = await Promise.all([fleetAs('alice'), fleetAs('bob')]);
    const results = await Promise.allSettled([a.approvals.approve(id2), b.approvals.approve(id2)]);
    const won = results.findIndex((r) => r.status === 'fulfilled');
    expect(won).toBeGreaterThanOrEqual(0);
    const lost = results[1 - won]!;
    expect(lost).toMatchObject({ status: 'rejected', reason: { code: 'INVALID_ARGUMENT' } });
    await expect(charged).resolves.toEqual({ charged: { amount: 42 } });
    expect(n2.getMessageLog({ agentId: 'shopper', type: 'ask' })[0]).toMatchObject({ approval: 'approved', decidedBy: won === 0 ? 'alice' : 'bob' });
    expect(n2.getMessageLog({ agentId: 'pay' }).filter((e) => e.type === 'ask')).toHaveLength(1);
  });

  it('serves the web page over the fleet queue: the state lists both nodes, an approval there is recorded as the operator', async () => {
    const { n1, id1, id2, sold } = await twoNodes();
    const fleet = await fleetAs('bob');
    const token = 'fleet-web-token-0123456789';
    const web = await approvalServer(fleet, { token });
    closers.push(web);
    const auth = { authorization: `Bearer ${token}` };
    const state = (await (await fetch(new URL('/api/state', web.url), { headers: auth })).json()) as { operator: string; pending: Array<{ id: string; node: string }> };
    expect(state.operator).toBe('bob');
    expect(state.pending.map((p) => [p.id, p.node]).sort()).toEqual([[id1, 'n1'], [id2, 'n2']].sort());
    const res = await fetch(new URL('/api/decide', web.url), {
      method: 'POST',
      headers: { ...auth, 'content-type': 'application/json', 'x-switchboard-csrf': csrfFor(token) },
      body: JSON.stringify({ id: id1, decision: 'approve', by: 'someone else', note: 'PO-7' }),
    });
    expect(res.status).toBe(200);
    await expect(sold).resolves.toEqual({ sold: { item: 'tea' } });
    expect(n1.getMessageLog({ agentId: 'buyer', type: 'ask' })[0]).toMatchObject({ approval: 'approved', decidedBy: 'bob' });
    const again = await fetch(new URL('/api/decide', web.url), {
      method: 'POST',
      headers: { ...auth, 'content-type': 'application/json', 'x-switchboard-csrf': csrfFor(token) },
      body: JSON.stringify({ id: id1, decision: 'reject', by: 'bob' }),
    });
    expect(again.status).toBe(409);
  });

  it.skipIf(!existsSync('/usr/bin/chromium') && process.env['CI'] !== 'true')('shows each held message with its node in Chromium and approves one held on n2 through the confirm step', async () => {
    const { n2, id1, id2, charged } = await twoNodes();
    const fleet = await fleetAs('alice');
    const web = await approvalServer(fleet);
    closers.push(web);
    const profile = mkdtempSync(join(tmpdir(), 'switchboard-fleet-chromium-'));
    const browser = await chromium.launchPersistentContext(profile, { executablePath: '/usr/bin/chromium', args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run'] });
    try {
      const page = await browser.newPage();
      await page.goto(web.loginUrl);
      const onN2 = page.locator(`article.card[data-id="${id2}"]`);
      await onN2.waitFor();
      await expect(onN2.locator('h3').textContent()).resolves.toBe('n2: shopper → pay · ask "charge"');
      await expect(onN2.locator('dd.node').textContent()).resolves.toBe('n2');
      await expect(page.locator(`article.card[data-id="${id1}"] dd.node`).textContent()).resolves.toBe('n1');
      await expect(page.locator('#operator').inputValue()).resolves.toBe('alice');
      await onN2.locator('button.approve').click();
      await page.locator('#confirm-yes').click();
      await expect(charged).resolves.toEqual({ charged: { amount: 42 } });
      expect(n2.getMessageLog({ agentId: 'shopper', type: 'ask' })[0]).toMatchObject({ approval: 'approved', decidedBy: 'alice' });
      await page.locator(`article.card[data-id="${id2}"]`).waitFor({ state: 'detached' });
    } finally {
      await browser.close();
      rmSync(profile, { recursive: true, force: true });
    }
  }, 60_000);

  it('runs the fleet-page example of docs/approvals.md: a node serves the fleet page; approving a message held on another node records the operator', async () => {
    const { n2, id2, charged } = await twoNodes();
    const root = fileURLToPath(new URL('../..', import.meta.url));
    const work = mkdtempSync(join(tmpdir(), 'switchboard-fleet-page-'));
    const text = readFileSync(join(root, 'docs/approvals.md'), 'utf8');
    const blocks = [...text.matchAll(/^```ts\n([\s\S]*?)^```/gm)].map((m) => m[1]!).filter((b) => b.includes('// fleet-page example'));
    expect(blocks).toHaveLength(1);
    symlinkSync(join(root, 'node_modules'), join(work, 'node_modules'), 'dir');
    writeFileSync(join(work, 'package.json'), JSON.stringify({ type: 'module', private: true }));
    writeFileSync(join(work, 'fleet-page.mts'), blocks[0]!.replace(/from 'agent-switchboard\/(\w+)'/g, (_, sub: string) => `from '${join(root, 'src', sub, 'index.ts')}'`).replace(/from 'agent-switchboard'/g, `from '${join(root, 'src/index.ts')}'`));
    const proc = spawn(process.execPath, ['--import', 'tsx', 'fleet-page.mts', server.url, cfg, 'n3', 'alice'], { cwd: work, stdio: ['ignore', 'pipe', 'pipe'] });
    const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
    try {
      let out = '';
      let err = '';
      proc.stderr.on('data', (c: Buffer) => (err += c.toString()));
      const printed = await new Promise<RegExpExecArray>((resolve, reject) => {
        proc.stdout.on('data', (c: Buffer) => {
          out += c.toString();
          const m = /(\d+) held in the fleet: approve at (\S+)\n/.exec(out);
          if (m !== null) resolve(m);
        });
        proc.on('exit', () => reject(new Error(`exited before printing its page: ${out}${err}`)));
      });
      expect(printed[1]).toBe('2');
      const token = new URL(printed[2]!).searchParams.get('token')!;
      const res = await fetch(new URL('/api/decide', printed[2]!), {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'x-switchboard-csrf': csrfFor(token) },
        body: JSON.stringify({ id: id2, decision: 'approve', by: 'alice' }),
      });
      expect(res.status).toBe(200);
      await expect(charged).resolves.toEqual({ charged: { amount: 42 } });
      expect(n2.getMessageLog({ agentId: 'shopper', type: 'ask' })[0]).toMatchObject({ approval: 'approved', decidedBy: 'alice' });
      proc.kill('SIGTERM');
      expect(await exited).toBe(0);
    } finally {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
      rmSync(work, { recursive: true, force: true });
    }
  }, 60_000);
});

/** A raw signed request of `kind` to `node`; the node's answer, checked against its roster key. */
async function ask(conn: NodeConnection, node: string, kind: 'list' | 'decide', data: Uint8Array): Promise<Record<string, unknown>> {
  const reply = await conn.nc.request(subjects.desk(node, kind), data, { timeout: 5_000 });
  const body = openFrame(reply.data, () => verifierOf(loadRoster(rosterPath).nodes[node]!.signingKey));
  if (body instanceof Error) throw body;
  return body;
}

/** Waits for `condition` (a frame of the console), failing with `what` after 5 s. */
async function until(condition: () => boolean, what: string): Promise<void> {
  const end = Date.now() + 5_000;
  while (!condition()) {
    if (Date.now() > end) throw new Error(`not within 5 s: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
