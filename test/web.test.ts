// The approval web server at the HTTP level: the token, CSRF, escaping, exactly-once
// decisions, input validation and bounded bodies.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { approvalServer, type ApprovalServerHandle } from '../src/web/index.js';
import { csrfFor } from '../src/web/auth.js';
import type { Orchestrator } from '../src/index.js';
import { closeBuses, makeBus, rejectionOf } from './support/helpers.js';

const TOKEN = 'test-token-0123456789abcdef';
const servers: ApprovalServerHandle[] = [];

afterEach(async () => {
  for (const s of servers.splice(0)) await s.close();
  await closeBuses();
});

function paymentBus(): Orchestrator {
  const bus = makeBus({ policies: [{ from: 'purchase', to: 'payment', allow: ['delegate'], requireApproval: true }] });
  bus.register('payment', { handlers: { pay: (payload) => ({ paid: true, charged: payload }) } });
  return bus;
}

async function serve(bus: Orchestrator, extra: Parameters<typeof approvalServer>[1] = {}): Promise<ApprovalServerHandle> {
  const server = await approvalServer(bus, { token: TOKEN, ...extra });
  servers.push(server);
  return server;
}

const auth = { authorization: `Bearer ${TOKEN}` };
const postHeaders = { ...auth, 'content-type': 'application/json', 'x-switchboard-csrf': csrfFor(TOKEN) };

function post(server: ApprovalServerHandle, body: unknown, headers: Record<string, string> = postHeaders): Promise<Response> {
  return fetch(new URL('/api/decide', server.url), { method: 'POST', headers, body: typeof body === 'string' ? body : JSON.stringify(body) });
}

async function held(bus: Orchestrator): Promise<string> {
  await bus.flush();
  const [item] = bus.approvals.list();
  if (item === undefined) throw new Error('nothing held');
  return item.id;
}

describe('approvalServer()', () => {
  it('binds to 127.0.0.1 by default and refuses every request without the token (401)', async () => {
    const server = await serve(paymentBus());
    expect(server.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/);
    for (const path of ['/', '/app.js', '/app.css', '/api/state', '/api/events']) {
      const res = await fetch(new URL(path, server.url));
      expect(res.status, path).toBe(401);
      await res.body?.cancel();
    }
    expect((await fetch(new URL('/api/state', server.url), { headers: { authorization: 'Bearer wrong-token-0123456789' } })).status).toBe(401);
    expect((await post(server, { id: 'x', decision: 'approve', by: 'a' }, { 'content-type': 'application/json', 'x-switchboard-csrf': csrfFor(TOKEN) })).status).toBe(401);
  });

  it('trades ?token= for an HttpOnly SameSite=Strict cookie and a redirect that drops it from the address', async () => {
    const server = await serve(paymentBus());
    const res = await fetch(server.loginUrl, { redirect: 'manual' });
    expect(res.status).toBe(303);
    expect(res.headers.get('location')).toBe('/');
    const cookie = res.headers.get('set-cookie') ?? '';
    expect(cookie).toMatch(/HttpOnly/);
    expect(cookie).toMatch(/SameSite=Strict/);
    const page = await fetch(server.url, { headers: { cookie: cookie.split(';')[0]! } });
    expect(page.status).toBe(200);
    const html = await page.text();
    expect(html).not.toContain(TOKEN);
    expect(html).not.toMatch(/<script>|<script[^>]*>[^<]/); // no inline script
    expect(page.headers.get('content-security-policy')).toMatch(/script-src 'self'/);
    expect(page.headers.get('content-security-policy')).not.toMatch(/unsafe-inline/);
  });

  it('approves by POST with the CSRF header: the sender gets its reply and the log names the operator', async () => {
    const bus = paymentBus();
    const purchase = bus.register('purchase');
    const server = await serve(bus);
    const job = purchase.delegate('payment', 'pay', { amount: 120 });
    const id = await held(bus);
    const res = await post(server, { id, decision: 'approve', by: 'alice', note: 'PO-1' });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ status: 'decided', decision: 'approved', staged: true });
    await expect(job).resolves.toEqual({ paid: true, charged: { amount: 120 } });
    expect(bus.getMessageLog({ type: 'delegate' })[0]).toMatchObject({ approval: 'approved', decidedBy: 'alice' });
  });

  it('decides exactly once: a second decision answers 409 with the first one', async () => {
    const bus = paymentBus();
    const purchase = bus.register('purchase');
    const server = await serve(bus);
    const job = rejectionOf(purchase.delegate('payment', 'pay', { amount: 1 }));
    const id = await held(bus);
    const [first, second] = await Promise.all([post(server, { id, decision: 'reject', by: 'bob', reason: 'no' }), post(server, { id, decision: 'approve', by: 'alice' })]);
    expect([first.status, second.status].sort()).toEqual([200, 409]);
    const again = await post(server, { id, decision: 'approve', by: 'alice' });
    expect(again.status).toBe(409);
    expect(await again.json()).toMatchObject({ status: 'already', text: 'already decided: rejected by bob' });
    expect((await job).code).toBe('APPROVAL_REJECTED');
    expect((await post(server, { id: 'never-held', decision: 'approve', by: 'alice' })).status).toBe(404);
  });

  it('a reject carries the typed reason to the sender', async () => {
    const bus = paymentBus();
    const purchase = bus.register('purchase');
    const server = await serve(bus);
    const job = rejectionOf(purchase.delegate('payment', 'pay', { amount: 9_000 }));
    const res = await post(server, { id: await held(bus), decision: 'reject', by: 'bob', reason: 'over budget' });
    expect(res.status).toBe(200);
    const error = await job;
    expect(error.code).toBe('APPROVAL_REJECTED');
    expect(error.message).toContain('over budget');
  });

  it('refuses a POST without the CSRF header, from another origin, or from another site (403), and decides nothing', async () => {
    const bus = paymentBus();
    const purchase = bus.register('purchase');
    const server = await serve(bus);
    const job = purchase.delegate('payment', 'pay', { amount: 1 });
    const id = await held(bus);
    const body = { id, decision: 'approve', by: 'mallory' };
    const noHeader = { ...auth, 'content-type': 'application/json' };
    expect((await post(server, body, noHeader)).status).toBe(403);
    expect((await post(server, body, { ...postHeaders, 'x-switchboard-csrf': 'f'.repeat(64) })).status).toBe(403);
    expect((await post(server, body, { ...postHeaders, origin: 'http://evil.example' })).status).toBe(403);
    expect((await post(server, body, { ...postHeaders, 'sec-fetch-site': 'cross-site' })).status).toBe(403);
    // A form post (the only cross-site POST without preflight) cannot set the header either.
    const form = await fetch(new URL('/api/decide', server.url), { method: 'POST', headers: { ...auth, 'content-type': 'application/x-www-form-urlencoded' }, body: `id=${id}&decision=approve&by=x` });
    expect(form.status).toBe(403);
    expect(bus.approvals.list()).toHaveLength(1);
    bus.approvals.reject(id, { by: 'test' });
    await rejectionOf(job);
  });

  it('refuses GET on the decision route and a Host that is not loopback (DNS rebinding)', async () => {
    const server = await serve(paymentBus());
    expect((await fetch(new URL('/api/decide', server.url), { headers: auth })).status).toBe(405);
    const { request } = await import('node:http');
    const status = await new Promise<number>((resolve, reject) => {
      const req = request(new URL('/api/state', server.url), { headers: { ...auth, host: 'evil.example:80' } }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', reject);
      req.end();
    });
    expect(status).toBe(421);
  });

  it('validates the body: bad JSON, unknown keys, wrong types, over-long text and over-size bodies are refused', async () => {
    const bus = paymentBus();
    const purchase = bus.register('purchase');
    const server = await serve(bus, { maxBodyBytes: 1024 });
    const job = purchase.delegate('payment', 'pay', { amount: 1 });
    const id = await held(bus);
    expect((await post(server, '{not json')).status).toBe(400);
    expect((await post(server, { id, decision: 'approve', by: 'a', extra: 1 })).status).toBe(400);
    expect((await post(server, { id, decision: 'maybe', by: 'a' })).status).toBe(400);
    expect((await post(server, { id, decision: 'approve', by: '' })).status).toBe(400);
    expect((await post(server, { id, decision: 'approve', by: 'a', always: 'yes' })).status).toBe(400);
    expect((await post(server, { id, decision: 'reject', by: 'a', reason: 'x'.repeat(1001) })).status).toBe(413); // over 1024 bytes
    expect((await post(server, { id, decision: 'approve', by: 'a'.repeat(257) })).status).toBe(400);
    expect((await post(server, { id, decision: 'approve', by: 'a' }, { ...postHeaders, 'content-type': 'text/plain' })).status).toBe(415);
    expect(bus.approvals.list()).toHaveLength(1);
    bus.approvals.reject(id, { by: 'test' });
    await rejectionOf(job);
  });

  it('sends agent text as JSON data only: a payload with <script> never appears in markup', async () => {
    const bus = paymentBus();
    const purchase = bus.register('purchase');
    const server = await serve(bus);
    const job = purchase.delegate('payment', 'pay', { note: '<script>alert(1)</script><img src=x onerror=alert(2)>' });
    await held(bus);
    const page = await (await fetch(server.url, { headers: auth })).text();
    expect(page).not.toContain('alert(');
    const state = (await (await fetch(new URL('/api/state', server.url), { headers: auth })).json()) as { pending: { envelope: { payload: unknown } }[] };
    expect(state.pending[0]!.envelope.payload).toEqual({ note: '<script>alert(1)</script><img src=x onerror=alert(2)>' });
    const script = await (await fetch(new URL('/app.js', server.url), { headers: auth })).text();
    expect(script).not.toMatch(/innerHTML|outerHTML|insertAdjacentHTML|document\.write/);
    bus.approvals.reject(bus.approvals.list()[0]!.id, { by: 'test' });
    await rejectionOf(job);
  });

  it('streams the state as server-sent events: a held message arrives without asking', async () => {
    const bus = paymentBus();
    const purchase = bus.register('purchase');
    const server = await serve(bus);
    const res = await fetch(new URL('/api/events', server.url), { headers: auth });
    expect(res.headers.get('content-type')).toMatch(/text\/event-stream/);
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    let text = '';
    const next = async (pattern: RegExp) => {
      while (!pattern.test(text)) {
        const { value, done } = await reader.read();
        if (done) throw new Error(`stream ended before ${pattern}: ${text}`);
        text += decoder.decode(value);
      }
    };
    await next(/event: state\ndata: .*"pending":\[\]/);
    const job = purchase.delegate('payment', 'pay', { amount: 7 });
    await next(/"intent":"pay"/);
    await reader.cancel();
    bus.approvals.reject(bus.approvals.list()[0]!.id, { by: 'test' });
    await rejectionOf(job);
  });

  it('refuses bad options with INVALID_ARGUMENT naming the option', async () => {
    const bus = paymentBus();
    await expect(approvalServer(bus, { token: 'short' })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('token') });
    await expect(approvalServer(bus, { prot: 80 } as never)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: 'Invalid approvalServer options: unknown key "prot"' });
  });

  it('works with an approve() that answers with a promise, and reports a rejected BusError as the answer', async () => {
    const bus = paymentBus();
    const purchase = bus.register('purchase');
    const job = purchase.delegate('payment', 'pay', { amount: 1 });
    const id = await held(bus);
    const asyncBus = {
      events: bus.events,
      approvals: {
        list: () => bus.approvals.list(),
        approve: async (i: string, o?: { by?: string }) => ({ staged: true, ...(bus.approvals.approve(i, o) && {}) }),
        reject: async () => {
          const { BusError } = await import('../src/index.js');
          throw new BusError('AUDIT_UNAVAILABLE', 'the audit log refused the decision');
        },
      },
    };
    const server = await approvalServer(asyncBus, { token: TOKEN });
    servers.push(server);
    const refused = await post(server, { id, decision: 'reject', by: 'bob' });
    expect(refused.status).toBe(422);
    expect(await refused.json()).toMatchObject({ status: 'refused', code: 'AUDIT_UNAVAILABLE' });
    const approved = await post(server, { id, decision: 'approve', by: 'alice' });
    expect(await approved.json()).toMatchObject({ status: 'decided', staged: true, text: 'approved: staged for delivery' });
    await expect(job).resolves.toMatchObject({ paid: true });
  });
});

describe('approvalServer() warnings', () => {
  it('escapes control and bidirectional characters of an internal error it warns about', async () => {
    const bus = paymentBus();
    const failing = {
      events: bus.events,
      approvals: {
        list: () => {
          throw new Error('queue broke \u001b]8;;https://evil.example\u0007click\u001b]8;;\u0007 \u202eevil');
        },
        approve: () => undefined,
        reject: () => undefined,
      },
    };
    const warnings: string[] = [];
    const warn = vi.spyOn(process, 'emitWarning').mockImplementation(((w: string) => void warnings.push(w)) as typeof process.emitWarning);
    try {
      const server = await approvalServer(failing as never, { token: TOKEN });
      servers.push(server);
      const res = await fetch(new URL('/api/state', server.url), { headers: auth });
      expect(res.status).toBe(500);
      await vi.waitFor(() => expect(warnings).toHaveLength(1));
    } finally {
      warn.mockRestore();
    }
    expect(warnings[0]).toContain('queue broke \\x1b]8;;https://evil.example\\x07click');
    expect(warnings[0]).toContain('\\u202eevil');
    expect(warnings[0]).not.toMatch(/[\u0000-\u001f\u202e]/);
  });
});

describe('approvalServer() with durable approvals', () => {
  it('answers 409 when another bus on the same audit file decided the message first', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'switchboard-web-durable-'));
    try {
      const path = join(dir, 'audit.db');
      const rules = { policies: [{ from: 'purchase', to: 'payment', allow: ['delegate' as const], requireApproval: true }] };
      const a = makeBus({ ...rules, audit: { path } });
      a.register('payment', { handlers: { pay: () => 'paid' } });
      const job = a.register('purchase').delegate('payment', 'pay', { amount: 1 });
      const id = await held(a);
      const b = makeBus({ ...rules, audit: { path } });
      b.register('payment', { handlers: { pay: () => 'paid by b' } });
      const server = await serve(a);
      b.approvals.approve(id, { by: 'bob' });
      const res = await post(server, { id, decision: 'approve', by: 'alice' });
      expect(res.status).toBe(409);
      expect(((await res.json()) as { text: string }).text).toContain('already decided');
      expect(await job).toBe('paid by b');
    } finally {
      await closeBuses();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('tells the page when the bus has closed: state closed, nothing listed, the stream ends with a closed event', async () => {
    const bus = paymentBus();
    const job = rejectionOf(bus.register('purchase').delegate('payment', 'pay', { amount: 1 }));
    await held(bus);
    const server = await serve(bus);
    await bus.close();
    await job;
    const state = (await (await fetch(new URL('/api/state', server.url), { headers: auth })).json()) as { closed: boolean; pending: unknown[] };
    expect(state).toMatchObject({ closed: true, pending: [] });
    const stream = await (await fetch(new URL('/api/events', server.url), { headers: auth })).text();
    expect(stream).toContain('event: closed');
    expect(stream).toContain('the bus has closed');
  });
});
