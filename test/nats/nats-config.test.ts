import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../../src/cli/main.js';
import { Claims } from '../../src/nats/claims.js';
import { NodeConnection, type Refusal } from '../../src/nats/connection.js';
import { Link, type LinkInbound } from '../../src/nats/link.js';
import { Subjects } from '../../src/nats/subjects.js';
import { encodeMessage } from '../../src/nats/wire.js';
import { natsBin, skip } from './context.js';
import { startNatsServer, type NatsServer } from './server.js';

if (skip !== '') console.warn(`[nats] nats-config.test.ts skipped: ${skip}`);

function run(argv: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const code = main(argv, { out: (l) => out.push(l), err: (l) => err.push(l) });
  return { code, out, err };
}

const dir = mkdtempSync(join(tmpdir(), 'switchboard-natscfg-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('switchboard nats-config (files)', () => {
  it('refuses a topology that lists an agent on two nodes, with exit code 2', () => {
    const file = join(dir, 'dup.json');
    writeFileSync(file, JSON.stringify({ bus: 'shop', nodes: { n1: ['a'], n2: ['a'] } }));
    const r = run(['nats-config', file, '--out', join(dir, 'dup')]);
    expect(r.code).toBe(2);
    expect(r.err[0]).toMatch(/agent "a" is listed on two nodes: "n1" and "n2"/);
  });

  it('refuses a bad agent id and an unknown key', () => {
    const file = join(dir, 'bad.json');
    writeFileSync(file, JSON.stringify({ bus: 'shop', nodes: { n1: ['a b'] } }));
    expect(run(['nats-config', file]).err[0]).toMatch(/agent "a b" is neither an agent id/);
    writeFileSync(file, JSON.stringify({ bus: 'shop', nodes: { n1: ['a'] }, users: [] }));
    expect(run(['nats-config', file]).err[0]).toMatch(/unknown key "users"/);
  });

  it('writes auth.conf and a private seed per node, and will not overwrite them without --force', () => {
    const file = join(dir, 'ok.json');
    const out = join(dir, 'ok');
    writeFileSync(file, JSON.stringify({ bus: 'shop', nodes: { 'billing.1': ['payment'], web: ['front'] } }));
    const r = run(['nats-config', file, '--out', out]);
    expect(r.code).toBe(0);
    expect(readFileSync(join(out, 'billing_2E1.nk'), 'utf8')).toMatch(/^SU[A-Z2-7]{56}\n$/);
    expect(statSync(join(out, 'web.nk')).mode & 0o777).toBe(0o600);
    const conf = readFileSync(join(out, 'auth.conf'), 'utf8');
    expect(conf).toContain('"shop.in.*.payment.*"');
    expect(conf).toContain('allow_responses: { max: 1 }');
    expect(run(['nats-config', file, '--out', out]).code).toBe(1);
    expect(run(['nats-config', file, '--out', out, '--force']).code).toBe(0);
  });
});

describe.skipIf(skip !== '')('generated permissions on a real nats-server', () => {
  const subjects = new Subjects('shop');
  let server: NatsServer;
  let n1: NodeConnection;
  let n2: NodeConnection;
  const refused: Refusal[] = [];

  beforeAll(async () => {
    const file = join(dir, 'topo.json');
    const out = join(dir, 'topo');
    writeFileSync(file, JSON.stringify({ bus: 'shop', nodes: { n1: ['alice'], n2: ['bob.x'] }, operators: ['op'] }));
    expect(run(['nats-config', file, '--out', out]).code).toBe(0);
    server = await startNatsServer(natsBin, { extraConfig: readFileSync(join(out, 'auth.conf'), 'utf8') });
    // The operator creates the claims bucket: nodes may not.
    expect(await main(['fleet', 'bucket', '--servers', server.url, '--creds', join(out, 'op.nk'), '--roster', join(out, 'roster.json')], { out: () => {}, err: (l) => console.error(l) })).toBe(0);
    const open = (node: string) => NodeConnection.open({ servers: server.url, inboxPrefix: subjects.inboxPrefix(node), nkeySeed: readFileSync(join(out, `${node}.nk`), 'utf8') });
    n1 = await open('n1');
    n2 = await open('n2');
    n1.onRefused((r) => refused.push(r));
  });
  afterAll(async () => {
    await n1?.close();
    await n2?.close();
    await server?.dispose();
  });

  it("fleet approvals: a node may not send operators' requests, listen to another node's, or speak for another node; an operator may request of every node and hear every node's notices", async () => {
    const until = (subject: string, operation: Refusal['operation']) => new Promise<Refusal>((resolve) => n1.onRefused((r) => r.subject === subject && r.operation === operation && resolve(r)));
    // n1 asks n2's queue to decide (an operator's request): the broker refuses the publish.
    const decide = subjects.desk('n2', 'decide');
    const published = until(decide, 'publish');
    n1.nc.publish(decide, new Uint8Array(1));
    expect(await published).toMatchObject({ operation: 'publish', subject: decide });
    // n1 listens to n2's requests: refused.
    const list = subjects.desk('n2', 'list');
    const subscribed = until(list, 'subscription');
    n1.nc.subscribe(list);
    expect(await subscribed).toMatchObject({ operation: 'subscription', subject: list });
    // n1 publishes n2's notice: refused.
    const changed = subjects.desk('n2', 'changed');
    const spoke = until(changed, 'publish');
    n1.nc.publish(changed, new Uint8Array(1));
    expect(await spoke).toMatchObject({ subject: changed });
    // The operator may: n2 answers its request on n2's own subject, the operator hears n2's notice.
    const op = await NodeConnection.open({ servers: server.url, inboxPrefix: subjects.operatorInbox('op'), nkeySeed: readFileSync(join(dir, 'topo', 'op.nk'), 'utf8') });
    const opRefused: Refusal[] = [];
    op.onRefused((r) => opRefused.push(r));
    try {
      const answering = n2.nc.subscribe(subjects.desk('n2', 'list'), { callback: (_e, msg) => void msg.respond(new TextEncoder().encode('here')) });
      const notices = op.nc.subscribe(subjects.deskChanges());
      await Promise.all([n2.nc.flush(), op.nc.flush()]);
      const reply = await op.nc.request(subjects.desk('n2', 'list'), new Uint8Array(1), { timeout: 5_000 });
      expect(new TextDecoder().decode(reply.data)).toBe('here');
      n2.nc.publish(subjects.desk('n2', 'changed'), new TextEncoder().encode('notice'));
      for await (const m of notices) {
        expect(new TextDecoder().decode(m.data)).toBe('notice');
        break;
      }
      answering.unsubscribe();
      // An operator cannot read another operator's inbox.
      const other = `${subjects.operatorInbox('someone')}.>`;
      const refusedOther = new Promise<Refusal>((resolve) => op.onRefused((r) => r.subject === other && resolve(r)));
      op.nc.subscribe(other);
      expect(await refusedOther).toMatchObject({ operation: 'subscription' });
      expect(opRefused.map((r) => r.subject)).toEqual([other]);
    } finally {
      await op.close();
    }
  });

  it('refuses a connection without credentials', async () => {
    await expect(NodeConnection.open({ servers: server.url, inboxPrefix: 'shop._r.x', connectTimeoutMs: 2000 })).rejects.toMatchObject({ code: 'TRANSPORT_UNAVAILABLE' });
  });

  it('lets each node claim its own agents and carry an ask between them', async () => {
    const c1 = await Claims.open({ connection: n1, subjects, node: 'n1' });
    const c2 = await Claims.open({ connection: n2, subjects, node: 'n2' });
    await c1.claim('alice');
    await c2.claim('bob.x');
    expect((await c1.list()).map((c) => [c.agent, c.node])).toEqual([['alice', 'n1'], ['bob.x', 'n2']]);
    await c2.watch();
    expect(c2.snapshot().map((c) => c.agent)).toEqual(['alice', 'bob.x']);
    const l1 = new Link({ connection: n1, subjects, node: 'n1', maxPayloadBytes: 1024 });
    const l2 = new Link({ connection: n2, subjects, node: 'n2', maxPayloadBytes: 1024 });
    await l2.serve('bob.x', (inbound, responder) => responder.reply(JSON.stringify({ echo: JSON.parse(inbound.payloadJson) as unknown })));
    await l1.serve('alice', () => {});
    const reply = await new Promise((resolve, reject) =>
      l1.request(
        { id: 'm1', type: 'ask', from: 'alice', to: 'bob.x', intent: 'echo', ts: Date.now(), conversationId: 'c', depth: 0, priority: 'normal', budgetMs: 5000, payloadJson: '"hi"' },
        { reply: (json) => resolve(JSON.parse(json)), error: reject },
      ),
    );
    expect(reply).toEqual({ echo: 'hi' });
    l1.close();
    l2.close();
    await c1.close();
    await c2.close();
  });

  it("refuses a node publishing as another node's agent: the message never arrives", async () => {
    const got: LinkInbound[] = [];
    let legitSeen!: () => void;
    const seen = new Promise<void>((r) => (legitSeen = r));
    const l2 = new Link({ connection: n2, subjects, node: 'n2', maxPayloadBytes: 1024 });
    await l2.serve('bob.x', (inbound) => {
      got.push(inbound);
      if (inbound.id === 'legit') legitSeen();
    });
    const refusal = new Promise<Refusal>((r) => n1.onRefused(r));
    // n1 forges a notify from bob.x (n2's agent) to bob.x.
    const forged = encodeMessage({ id: 'forged', intent: 'x', ts: Date.now(), conversationId: 'c', depth: 0, priority: 'normal' }, '1');
    n1.nc.publish(subjects.inbound('bob.x', 'bob.x', 'notify'), forged);
    expect(await refusal).toMatchObject({ operation: 'publish', subject: subjects.inbound('bob.x', 'bob.x', 'notify') });
    // A legitimate notify published after the forged one arrives; the forged one did not.
    const legit = encodeMessage({ id: 'legit', intent: 'x', ts: Date.now(), conversationId: 'c', depth: 0, priority: 'normal' }, '1');
    n1.nc.publish(subjects.inbound('bob.x', 'alice', 'notify'), Buffer.concat([Buffer.from('p n1 - -\n'), legit]));
    await seen;
    expect(got.map((g) => g.id)).toEqual(['legit']);
    l2.close();
  });

  it("refuses a node claiming another node's agent id", async () => {
    const c1 = await Claims.open({ connection: n1, subjects, node: 'n1' });
    await expect(c1.claim('mallory')).rejects.toMatchObject({ code: 'TRANSPORT_UNAVAILABLE', message: expect.stringMatching(/Permissions Violation/) });
    await c1.close();
  });

  it("refuses a node subscribing to another node's inbox or another node's agent", async () => {
    for (const subject of [`${subjects.inboxPrefix('n2')}.>`, subjects.inboundFor('bob.x'), '_INBOX.>']) {
      const sub = n1.nc.subscribe(subject);
      const closed = await sub.closed;
      expect(closed).toMatchObject({ operation: 'subscription', subject });
    }
  });
});
