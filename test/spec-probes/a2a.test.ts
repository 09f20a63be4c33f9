// SPEC "A2A: agents of other frameworks at the edge": probed as an outside A2A caller would,
// with the official @a2a-js/sdk client against a2aServer, and a2aAgent against servers built
// from the SDK's own server pieces (or plain node:http for a remote that misbehaves).
import { createServer } from 'node:http';
import { connect } from 'node:net';
import type { AddressInfo } from 'node:net';
import { Role, SendMessageRequest, TaskState, type Part, type Task } from '@a2a-js/sdk';
import { AgentEvent, DefaultRequestHandler, InMemoryTaskStore, type AgentExecutor, type ExecutionEventBus, type RequestContext } from '@a2a-js/sdk/server';
import { agentCardHandler, jsonRpcHandler, UserBuilder } from '@a2a-js/sdk/server/express';
import express from 'express';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { a2aAgent, a2aServer, RPC_PATH, SCHEMA_EXTENSION_URI, type A2aServerHandle, type A2aServerOptions } from '../../src/a2a/index.js';
import { defineContracts, type HandlerContext, type Orchestrator, type PolicyRule } from '../../src/index.js';
import { bareCard, bareSdkServer, dataPart, request, sdkClient, statusText, textPart } from '../support/a2a.js';
import { bus, closeAll, refusal } from './probe-kit.js';

const TOKEN = 'probe-partner-token-0123456789';
const OTHER = 'probe-other-token-0123456789ab';

const contracts = defineContracts({
  quote: { type: 'ask', input: z.object({ sku: z.string() }), output: z.object({ eur: z.number() }) },
  draft: { type: 'delegate', input: z.string(), output: z.string() },
  order: { type: 'delegate', input: z.object({ sku: z.string() }), output: z.object({ id: z.string() }) },
  ping: { type: 'notify', input: z.object({}) },
});

const servers: A2aServerHandle[] = [];
const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await s.close();
  for (const c of closers.splice(0)) await c();
  await closeAll();
});

const RULES: PolicyRule[] = [
  { from: 'partner-x', to: 'front', allow: ['ask'], intents: ['quote'] },
  { from: 'partner-x', to: 'front', allow: ['delegate'], intents: ['draft'] },
  { from: 'partner-x', to: 'front', allow: ['delegate'], intents: ['order'], requireApproval: true },
];

interface Front {
  b: Orchestrator;
  ran: string[];
  aborted: string[];
}

/** A bus whose agent `front` answers quote, draft and order; `draft` of "hang" waits for its signal. */
function front(policies: PolicyRule[] = RULES, extra: Parameters<typeof bus>[0] = {}): Front {
  const b = bus({ contracts, policies, ...extra });
  const ran: string[] = [];
  const aborted: string[] = [];
  b.register('front', {
    handlers: {
      quote: ({ sku }: { sku: string }) => {
        ran.push(`quote ${sku}`);
        return { eur: sku.length };
      },
      draft: async (text: string, ctx: HandlerContext) => {
        ran.push(`draft ${text}`);
        if (text === 'hang') {
          await new Promise<void>((resolve) => ctx.signal.addEventListener('abort', () => resolve(), { once: true }));
          aborted.push(`draft ${String((ctx.signal.reason as { code?: string } | undefined)?.code ?? ctx.signal.reason)}`);
          throw new Error('aborted');
        }
        if (text === 'evil') ctx.progress(0.5, 'step\u001b[31m red\u202e\u0007');
        return `draft of ${text}`;
      },
      order: ({ sku }: { sku: string }) => {
        ran.push(`order ${sku}`);
        return { id: `o-${sku}` };
      },
    } as never,
  });
  return { b, ran, aborted };
}

async function serve(b: Orchestrator, options: Partial<A2aServerOptions> = {}): Promise<A2aServerHandle> {
  const server = await a2aServer(b, { agent: 'front', host: '127.0.0.1', port: 0, callers: { [TOKEN]: 'partner-x', [OTHER]: 'partner-y' }, ...options });
  servers.push(server);
  return server;
}

async function send(server: A2aServerHandle, skill: string | undefined, parts: Parameters<typeof request>[1], token = TOKEN): Promise<Task> {
  const result = await (await sdkClient(server.url, token)).sendMessage(request(skill, parts));
  if (!('status' in result)) throw new Error('expected a task');
  return result;
}

/** A raw JSON-RPC POST; `token` null sends no authorization header of its own. */
function rpc(server: A2aServerHandle, body: string, token: string | null = TOKEN, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${server.url}${RPC_PATH}`, { method: 'POST', body, headers: { 'content-type': 'application/json', 'a2a-version': '1.0', ...(token === null ? {} : { authorization: `Bearer ${token}` }), ...headers } });
}

// getMessageLog() lists the newest row first: the probes reverse it to read in order.
function valueOf(task: Task): unknown {
  const content = task.artifacts.at(-1)?.parts[0]?.content;
  return content?.$case === 'data' || content?.$case === 'text' ? content.value : undefined;
}

describe('A2A: "The card is public and declares a bearer security scheme"', () => {
  it('serves the card without a token (GET and HEAD), naming no caller id and no token', async () => {
    const { b } = front();
    const server = await serve(b);
    const res = await fetch(`${server.url}/.well-known/agent-card.json`);
    expect(res.status).toBe(200);
    const text = await res.text();
    expect(text).not.toContain(TOKEN);
    expect(text).not.toContain('partner-x');
    const card = JSON.parse(text) as { securitySchemes: Record<string, unknown> };
    expect(Object.keys(card.securitySchemes)).toEqual(['bearer']);
    expect((await fetch(`${server.url}/.well-known/agent-card.json`, { method: 'HEAD' })).status).toBe(200);
    expect((await fetch(`${server.url}/.well-known/agent-card.json`, { method: 'POST', body: '{}' })).status).toBe(405);
  });
});

describe('A2A: "every other endpoint authenticates first (no valid token: HTTP 401, no row, no handler)"', () => {
  it('answers 401 to no token, a malformed header, a token with a suffix, a token in the query, and every path', async () => {
    const { b, ran } = front();
    const server = await serve(b);
    const body = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'SendMessage', params: SendMessageRequest.toJSON(request('quote', [dataPart({ sku: 'a' })])) });
    const tries: Response[] = [
      await rpc(server, body, null),
      await rpc(server, body, null, { authorization: 'Bearer' }),
      await rpc(server, body, null, { authorization: `Bearer ${TOKEN} ${TOKEN}` }),
      await rpc(server, body, null, { authorization: `Token ${TOKEN}` }),
      await rpc(server, body, `${TOKEN}0`),
      await fetch(`${server.url}${RPC_PATH}?token=${TOKEN}`, { method: 'POST', body }),
      await fetch(`${server.url}/anything`, { method: 'GET' }),
      await fetch(`${server.url}/.well-known/agent-card.json/../..${RPC_PATH}`, { method: 'POST', body }),
    ];
    for (const [i, res] of tries.entries()) {
      expect(res.status, String(i)).toBe(401);
      expect(res.headers.get('www-authenticate')).toBe('Bearer');
    }
    expect(ran).toEqual([]);
    expect(b.getMessageLog()).toEqual([]);
  });

  it('answers a CORS preflight 401 and grants no origin anywhere: a web page on another origin cannot call with a token', async () => {
    const { b } = front();
    const server = await serve(b);
    const preflight = await fetch(`${server.url}${RPC_PATH}`, { method: 'OPTIONS', headers: { origin: 'https://evil.example', 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization' } });
    expect(preflight.status).toBe(401);
    expect(preflight.headers.get('access-control-allow-origin')).toBeNull();
    const withOrigin = await rpc(server, JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'GetTask', params: { id: 'x' } }), TOKEN, { origin: 'https://evil.example' });
    expect(withOrigin.headers.get('access-control-allow-origin')).toBeNull();
    expect(withOrigin.headers.get('access-control-allow-credentials')).toBeNull();
  });
});

describe('A2A: "The token\'s agent id, exactly as given in `callers`, is the `from` … of the type the skill\'s contract names, whether the client streams or not"', () => {
  it('sends as the id given, as an ask for an ask skill and a delegate for a delegate skill, streaming or not', async () => {
    const { b } = front([{ from: 'Partner.X:eu-1', to: 'front', allow: ['ask', 'delegate'] }]);
    const token = 'a-token-for-the-dotted-caller-id';
    const server = await serve(b, { callers: { [token]: 'Partner.X:eu-1' } });
    expect((await send(server, 'quote', [dataPart({ sku: 'abc' })], token)).status?.state).toBe(TaskState.TASK_STATE_COMPLETED);
    const client = await sdkClient(server.url, token);
    for await (const _ of client.sendMessageStream(request('draft', [textPart('t')])));
    for await (const _ of client.sendMessageStream(request('quote', [dataPart({ sku: 'q' })])));
    expect(b.getMessageLog({ agentId: 'Partner.X:eu-1' }).filter((e) => e.type !== 'reply').reverse().map((e) => `${e.from} ${e.type} ${e.to} ${e.intent} ${e.outcome}`)).toEqual([
      'Partner.X:eu-1 ask front quote replied',
      'Partner.X:eu-1 delegate front draft replied',
      'Partner.X:eu-1 ask front quote replied',
    ]);
  });

  it('calls as the caller whose token came, not another: two tokens, two ids, each under its own rules', async () => {
    const { b, ran } = front();
    const server = await serve(b);
    expect((await send(server, 'quote', [dataPart({ sku: 'y' })], OTHER)).status?.state).toBe(TaskState.TASK_STATE_REJECTED);
    expect((await send(server, 'quote', [dataPart({ sku: 'x' })], TOKEN)).status?.state).toBe(TaskState.TASK_STATE_COMPLETED);
    expect(ran).toEqual(['quote x']);
    expect(b.getMessageLog().filter((e) => e.type !== 'reply').reverse().map((e) => `${e.from} ${e.decision}`)).toEqual(['partner-y denied', 'partner-x allowed']);
  });
});

describe('A2A: "it gets an id, the default-deny policy, rate buckets, approvals and audit rows"', () => {
  it('denies by default (no rule, no call) and a minTrust rule never matches a stand-in', async () => {
    const { b, ran } = front([{ from: '*', to: 'front', allow: ['ask'], minTrust: 1 }]);
    const server = await serve(b);
    const task = await send(server, 'quote', [dataPart({ sku: 'a' })]);
    expect(task.status?.state).toBe(TaskState.TASK_STATE_REJECTED);
    expect(statusText(task.status?.message)).toMatch(/^POLICY_DENIED: /);
    expect(task.status?.message?.metadata).toMatchObject({ code: 'POLICY_DENIED' });
    expect(ran).toEqual([]);
    expect(b.getMessageLog()).toMatchObject([{ from: 'partner-x', to: 'front', intent: 'quote', decision: 'denied', code: 'POLICY_DENIED' }]);
  });

  it('gives each caller its own rate bucket: one caller out of tokens is RATE_LIMITED (with a row), another still gets through', async () => {
    const { b, ran } = front([{ from: '*', to: 'front', allow: ['ask'] }], { limits: { rate: { perSecond: 0.001, burst: 2 } } });
    const server = await serve(b);
    const states: string[] = [];
    for (let i = 0; i < 3; i++) states.push(TaskState[(await send(server, 'quote', [dataPart({ sku: `x${i}` })])).status!.state]);
    const limited = await send(server, 'quote', [dataPart({ sku: 'x3' })]);
    expect(statusText(limited.status?.message)).toMatch(/^RATE_LIMITED: /);
    expect(states).toEqual(['TASK_STATE_COMPLETED', 'TASK_STATE_COMPLETED', 'TASK_STATE_REJECTED']);
    expect((await send(server, 'quote', [dataPart({ sku: 'y' })], OTHER)).status?.state).toBe(TaskState.TASK_STATE_COMPLETED);
    expect(ran).toEqual(['quote x0', 'quote x1', 'quote y']);
    expect(b.getMessageLog({ agentId: 'partner-x' }).filter((e) => e.type !== 'reply').reverse().map((e) => e.code ?? e.outcome)).toEqual(['replied', 'replied', 'RATE_LIMITED', 'RATE_LIMITED']);
  });

  it('refuses a payload over the bus limit as PAYLOAD_TOO_LARGE (rejected, with a row), and runs nothing', async () => {
    const { b, ran } = front(RULES, { limits: { maxPayloadBytes: 1024 } });
    const server = await serve(b);
    const task = await send(server, 'quote', [dataPart({ sku: 'x'.repeat(4000) })]);
    expect(task.status?.state).toBe(TaskState.TASK_STATE_REJECTED);
    expect(statusText(task.status?.message)).toMatch(/^PAYLOAD_TOO_LARGE: /);
    expect(ran).toEqual([]);
    expect(b.getMessageLog()).toMatchObject([{ from: 'partner-x', code: 'PAYLOAD_TOO_LARGE' }]);
  });

  it('holds a call that needs approval: the caller sees working with the approval id; a rejection ends it REJECTED with APPROVAL_REJECTED and the reason', async () => {
    const { b, ran } = front();
    const server = await serve(b);
    const client = await sdkClient(server.url, TOKEN);
    const seen: string[] = [];
    for await (const event of client.sendMessageStream(request('order', [dataPart({ sku: 'gpu' })]))) {
      const p = event.payload;
      if (p?.$case !== 'statusUpdate') continue;
      const text = statusText(p.value.status?.message);
      seen.push(`${TaskState[p.value.status!.state]}${text === '' ? '' : ` ${text}`}`);
      if (text.startsWith('held for approval')) {
        const [pending] = b.approvals.list();
        expect(text).toContain(pending!.id);
        b.approvals.reject(pending!.id, { by: 'alice', reason: 'not\u001b[2J today' });
      }
    }
    expect(seen.at(-1)).toMatch(/^TASK_STATE_REJECTED APPROVAL_REJECTED: .*not\\x1b\[2J today/);
    expect(ran).toEqual([]);
    expect(b.getMessageLog()).toMatchObject([{ from: 'partner-x', type: 'delegate', intent: 'order', decision: 'pending', approval: 'rejected', decidedBy: 'alice' }]);
  });
});

describe('A2A: "A client names the skill it calls in `message.metadata.skill`"', () => {
  it('rejects with INVALID_ARGUMENT a missing skill, an unknown one, a notify intent, and a non-string one, before the bus sees it', async () => {
    const { b, ran } = front([{ from: '*', to: '*', allow: ['ask', 'delegate', 'notify'] }]);
    const server = await serve(b);
    const client = await sdkClient(server.url, TOKEN);
    const unknowns = [undefined, 'nope', 'ping', '\u202eetouq', '__proto__', 'constructor', 'toString', ''];
    for (const skill of unknowns) {
      const result = await client.sendMessage(request(skill, [dataPart({ sku: 'a' })]));
      if (!('status' in result)) throw new Error('expected a task');
      expect(result.status?.state).toBe(TaskState.TASK_STATE_REJECTED);
      expect(statusText(result.status?.message)).toMatch(/^INVALID_ARGUMENT: /);
      expect(statusText(result.status?.message)).not.toMatch(/[\u202e]/);
    }
    const numeric = request('quote', [dataPart({ sku: 'a' })]);
    numeric.message!.metadata = { skill: 7 };
    const result = await client.sendMessage(numeric);
    expect('status' in result && result.status?.state).toBe(TaskState.TASK_STATE_REJECTED);
    expect(ran).toEqual([]);
    expect(b.getMessageLog()).toEqual([]);
  });
});

describe('A2A: "The input and output JSON Schemas of each skill are published in the card through an A2A extension declared in `capabilities.extensions`"', () => {
  it('publishes one skill per ask and delegate intent (no notify) with its schemas keyed by skill id', async () => {
    const { b } = front();
    const server = await serve(b);
    const card = await (await sdkClient(server.url)).getAgentCard();
    expect(card.skills.map((s) => s.id).sort()).toEqual(['draft', 'order', 'quote']);
    const params = card.capabilities?.extensions.find((e) => e.uri === SCHEMA_EXTENSION_URI)?.params as Record<string, { type: string; input: { type?: string }; output: { type?: string } }>;
    expect(Object.keys(params).sort()).toEqual(['draft', 'order', 'quote']);
    expect(params['quote']).toMatchObject({ type: 'ask', input: { type: 'object' }, output: { type: 'object' } });
    expect(params['draft']).toMatchObject({ type: 'delegate', input: { type: 'string' }, output: { type: 'string' } });
  });
});

describe('A2A: "The task follows the message"', () => {
  it('fails on INVALID_PAYLOAD when the payload breaks the contract, and on TIMEOUT at the deadline (handler signal aborted)', async () => {
    const { b, ran, aborted } = front();
    const server = await serve(b, { timeoutMs: 200 });
    const invalid = await send(server, 'quote', [dataPart({ sku: 1 })]);
    expect(invalid.status?.state).toBe(TaskState.TASK_STATE_FAILED);
    expect(statusText(invalid.status?.message)).toMatch(/^INVALID_PAYLOAD: /);
    const late = await send(server, 'draft', [textPart('hang')]);
    expect(late.status?.state).toBe(TaskState.TASK_STATE_FAILED);
    expect(statusText(late.status?.message)).toMatch(/^TIMEOUT: /);
    await expect.poll(() => aborted).toEqual(['draft TIMEOUT']);
    expect(ran).toEqual(['draft hang']);
  });

  it('escapes control, escape and bidirectional characters in a progress note coming back in a status message', async () => {
    const { b } = front();
    const server = await serve(b);
    const texts: string[] = [];
    for await (const event of (await sdkClient(server.url, TOKEN)).sendMessageStream(request('draft', [textPart('evil')]))) {
      if (event.payload?.$case === 'statusUpdate') texts.push(statusText(event.payload.value.status?.message));
    }
    expect(texts).toContain('step\\x1b[31m red\\u202e\\x07');
    for (const t of texts) expect(t).not.toMatch(/[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/);
  });

  it('"`tasks/get` and `tasks/cancel` work (cancel aborts the handler\'s signal)", also for a streaming task', async () => {
    const { b, aborted } = front();
    const server = await serve(b);
    const client = await sdkClient(server.url, TOKEN);
    const states: string[] = [];
    for await (const event of client.sendMessageStream(request('draft', [textPart('hang')]))) {
      const p = event.payload;
      if (p?.$case === 'task') {
        states.push(TaskState[p.value.status!.state]);
      } else if (p?.$case === 'statusUpdate') {
        states.push(TaskState[p.value.status!.state]);
        if (p.value.status!.state === TaskState.TASK_STATE_WORKING) {
          expect((await client.getTask({ tenant: '', id: p.value.taskId })).status?.state).toBe(TaskState.TASK_STATE_WORKING);
          expect((await client.cancelTask({ tenant: '', id: p.value.taskId, metadata: undefined })).status?.state).toBe(TaskState.TASK_STATE_CANCELED);
        }
      }
    }
    expect(states.at(-1)).toBe('TASK_STATE_CANCELED');
    await expect.poll(() => aborted).toEqual(['draft CANCELLED']);
    await expect.poll(() => b.getMessageLog({ agentId: 'partner-x' }).map((e) => e.outcome)).toEqual(['cancelled']);
  });

  it("never lets one caller get, cancel, list or subscribe to another caller's task", async () => {
    const { b, aborted } = front([...RULES, { from: 'partner-y', to: 'front', allow: ['delegate'] }]);
    const server = await serve(b);
    const mine = await sdkClient(server.url, TOKEN);
    const theirs = await sdkClient(server.url, OTHER);
    const started = await mine.sendMessage(request('draft', [textPart('hang')], true));
    if (!('status' in started)) throw new Error('expected a task');
    await expect(theirs.getTask({ tenant: '', id: started.id })).rejects.toThrow(/not found/i);
    await expect(theirs.cancelTask({ tenant: '', id: started.id, metadata: undefined })).rejects.toThrow(/not found/i);
    expect(aborted).toEqual([]);
    expect((await mine.getTask({ tenant: '', id: started.id })).status?.state).toBe(TaskState.TASK_STATE_WORKING);
    expect((await theirs.listTasks({ tenant: '', contextId: '', status: TaskState.TASK_STATE_UNSPECIFIED, pageSize: 50, pageToken: '', historyLength: 0, statusTimestampAfter: undefined, includeArtifacts: false } as never)).tasks).toEqual([]);
    await expect((async () => {
      for await (const _ of theirs.resubscribeTask({ tenant: '', id: started.id } as never));
    })()).rejects.toThrow(/not found/i);
    const events: string[] = [];
    const watching = (async () => {
      for await (const event of mine.resubscribeTask({ tenant: '', id: started.id } as never)) events.push(event.payload?.$case ?? '');
    })();
    await expect.poll(() => events).toContain('task');
    await mine.cancelTask({ tenant: '', id: started.id, metadata: undefined });
    await watching;
    expect(events.at(-1)).toBe('statusUpdate');
  });
});

describe('A2A: hostile JSON-RPC bodies', () => {
  it('answers malformed JSON, a wrong jsonrpc, a batch, an unknown method and bad params with JSON-RPC errors, logs none of it, and goes on serving', async () => {
    const { b, ran } = front();
    const server = await serve(b);
    const bodies = ['{not json', '', 'null', '[]', JSON.stringify([{ jsonrpc: '2.0', id: 1, method: 'GetTask', params: { id: 'x' } }]), JSON.stringify({ jsonrpc: '1.0', id: 1, method: 'GetTask', params: {} }), JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'rm -rf', params: {} }), JSON.stringify({ jsonrpc: '2.0', id: 3, method: 'SendMessage', params: null }), JSON.stringify({ jsonrpc: '2.0', id: 4, method: 'SendMessage', params: { message: { parts: 'x' } } }), JSON.stringify({ jsonrpc: '2.0', id: { evil: 1 }, method: 'GetTask', params: { id: 'x' } }), JSON.stringify({ jsonrpc: '2.0', id: 5, method: '__proto__', params: {} }), JSON.stringify({ jsonrpc: '2.0', id: 6, method: 'GetTask', params: { id: '\u001b[2J\u202e'.repeat(1000) } }), '{"jsonrpc":"2.0","id":7,"method":"SendMessage","params":{"message":{"messageId":"m","role":"ROLE_USER","parts":[{"data":{"__proto__":{"polluted":1}}}],"metadata":{"skill":"quote","__proto__":{"x":1}}}}}', JSON.stringify({ jsonrpc: '2.0', id: 8, method: 'CancelTask', params: { id: 'nope' } })];
    const spies = (['log', 'info', 'warn', 'error', 'debug'] as const).map((m) => vi.spyOn(console, m).mockImplementation(() => undefined));
    const writes = vi.spyOn(process.stderr, 'write');
    for (const body of bodies) {
      const res = await rpc(server, body);
      expect(res.status, body).toBeLessThan(500);
      const reply = (await res.json()) as { error?: { code: number; message: string }; result?: { task?: { status?: { state?: string } } } };
      if (body.includes('"id":7')) {
        // Well formed, with a payload the contract refuses: a task, never a polluted prototype.
        expect(reply.result?.task?.status?.state, body).toBe('TASK_STATE_FAILED');
        expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();
        continue;
      }
      expect(reply.error, body).toMatchObject({ code: expect.any(Number), message: expect.any(String) });
      expect(reply.error!.message, body).not.toMatch(/TypeError|at .*\.js|node_modules/);
    }
    // "nothing of a request is written to a log by the server"
    for (const spy of spies) expect(spy).not.toHaveBeenCalled();
    expect(writes).not.toHaveBeenCalled();
    vi.restoreAllMocks();
    expect(ran).toEqual([]);
    expect((await send(server, 'quote', [dataPart({ sku: 'ok' })])).status?.state).toBe(TaskState.TASK_STATE_COMPLETED);
  });

  it('refuses a chunked body over maxBodyBytes with 413 (no Content-Length to trust), and a declared one at once', async () => {
    const { b, ran } = front();
    const server = await serve(b, { maxBodyBytes: 4096 });
    const big = new ReadableStream<Uint8Array>({
      start(controller) {
        for (let i = 0; i < 64; i++) controller.enqueue(new Uint8Array(1024).fill(0x20));
        controller.close();
      },
    });
    const chunked = await fetch(`${server.url}${RPC_PATH}`, { method: 'POST', body: big, duplex: 'half', headers: { authorization: `Bearer ${TOKEN}` } } as RequestInit);
    expect(chunked.status).toBe(413);
    const declared = await rpc(server, ' '.repeat(8192));
    expect(declared.status).toBe(413);
    expect(ran).toEqual([]);
  });
});

describe('A2A: limits documented in docs/a2a.md', () => {
  it('maxTasks: tasks/get finds the last maxTasks tasks of the server, the oldest go first', async () => {
    const { b } = front();
    const server = await serve(b, { maxTasks: 2 });
    const ids: string[] = [];
    for (const sku of ['a', 'b', 'c']) ids.push((await send(server, 'quote', [dataPart({ sku })])).id);
    const client = await sdkClient(server.url, TOKEN);
    await expect(client.getTask({ tenant: '', id: ids[0]! })).rejects.toThrow(/not found/i);
    expect(valueOf(await client.getTask({ tenant: '', id: ids[2]! }))).toEqual({ eur: 1 });
  });

  it('refuses a message over the documented sizes: a tenant, referenceTaskIds, a file part, too many parts', async () => {
    const { b, ran } = front();
    const server = await serve(b);
    const client = await sdkClient(server.url, TOKEN);
    const refs = request('quote', [dataPart({ sku: 'a' })]);
    refs.message!.referenceTaskIds = ['t1'];
    await expect(client.sendMessage(refs)).rejects.toThrow();
    await expect(client.sendMessage({ ...request('quote', [dataPart({ sku: 'a' })]), tenant: 't' })).rejects.toThrow();
    const file = await client.sendMessage(request('quote', [{ content: { $case: 'url', value: 'file:///etc/passwd' }, metadata: undefined, filename: 'p', mediaType: 'text/plain' }]));
    expect('status' in file && file.status?.state).toBe(TaskState.TASK_STATE_REJECTED);
    const many = await client.sendMessage(request('quote', Array.from({ length: 100 }, () => textPart('x'))));
    expect('status' in many && statusText(many.status?.message)).toMatch(/^INVALID_ARGUMENT: .*parts/);
    expect(ran).toEqual([]);
  });
});

describe('A2A: "Options are checked strictly" (`Invalid a2aServer options: …`)', () => {
  const base = { agent: 'front', host: '127.0.0.1', port: 0, callers: { [TOKEN]: 'partner-x' } };
  const bad: [string, Record<string, unknown>, RegExp][] = [
    ['an unknown key', { ...base, maxConnection: 3 }, /unknown key "maxConnection"/],
    ['a negative port', { ...base, port: -1 }, /port/],
    ['maxTaskBytes below its floor', { ...base, maxTaskBytes: 10 }, /maxTaskBytes/],
    ['maxStreamBufferBytes of a string', { ...base, maxStreamBufferBytes: '1mb' }, /maxStreamBufferBytes/],
    ['maxConnections of 0', { ...base, maxConnections: 0 }, /maxConnections/],
    ['a publicUrl that is not a URL', { ...base, publicUrl: 'here' }, /publicUrl/],
    ['callers empty', { ...base, callers: {} }, /callers/],
    ['a caller id that is not an agent id', { ...base, callers: { [TOKEN]: 'a b' } }, /callers/],
    ['a caller that is the served agent', { ...base, callers: { [TOKEN]: 'front' } }, /callers/],
    ['a short token', { ...base, callers: { short: 'partner-x' } }, /callers.*partner-x/],
    ['a token with whitespace', { ...base, callers: { 'a token with spaces inside': 'partner-x' } }, /callers.*partner-x/],
    ['a token no HTTP header can carry (not visible ASCII)', { ...base, callers: { 'tøken-with-non-ascii-0123456789': 'partner-x' } }, /callers.*partner-x/],
    ['a token with a control character', { ...base, callers: { 'token-with-a-nul-\u0000-0123456789': 'partner-x' } }, /callers.*partner-x/],
    ['a skill with no ask or delegate contract', { ...base, skills: ['ping'] }, /skills.*"ping"/],
  ];
  it.each(bad)('refuses %s with INVALID_ARGUMENT in the one wording, naming the key and never the token', async (_name, options, names) => {
    const { b } = front();
    const e = await refusal(() => a2aServer(b, options as never));
    expect(e.code).toBe('INVALID_ARGUMENT');
    expect(e.message).toMatch(/^Invalid a2aServer options: /);
    expect(e.message).toMatch(names);
    expect(e.message).not.toContain(TOKEN);
    expect(e.message).not.toContain('a token with spaces inside');
    expect(e.message).not.toContain('tøken');
    expect(b.register('partner-x')).toBeDefined();
  });
});

describe('A2A: "`server.close()`" with calls in flight', () => {
  it('aborts a running handler, drops a held approval, records an outcome for each, unregisters the stand-ins, and resolves', async () => {
    const { b, ran, aborted } = front();
    const server = await serve(b);
    const client = await sdkClient(server.url, TOKEN);
    const running = await client.sendMessage(request('draft', [textPart('hang')], true));
    const held = await client.sendMessage(request('order', [dataPart({ sku: 'gpu' })], true));
    expect('status' in running && 'status' in held).toBe(true);
    await expect.poll(() => b.approvals.list().length).toBe(1);
    await expect.poll(() => ran).toEqual(['draft hang']);
    await server.close();
    await expect.poll(() => aborted).toEqual(['draft CANCELLED']);
    await expect.poll(() => b.approvals.list()).toEqual([]);
    await expect.poll(() => b.getMessageLog({ agentId: 'partner-x' }).map((e) => `${e.intent} ${e.outcome ?? e.approval}`).sort()).toEqual(['draft cancelled', 'order cancelled']);
    expect(ran).toEqual(['draft hang']);
    expect(b.register('partner-x')).toBeDefined();
    await server.close();
  });
});

describe('A2A: a2aAgent "reads the remote card once at registration … registers handlers for its skills"', () => {
  it('reads the card once however many calls follow, sends headers on each request, one data part → its data, one text part → the string', async () => {
    let cardReads = 0;
    const remote = await bareSdkServer(['echo', 'pair'], (skill, input) => (skill === 'pair' ? [input, input] : input));
    closers.push(remote.close);
    const counting = createServer((_req, res) => {
      cardReads++;
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(bareCard(remote.url, ['echo', 'pair'])));
    });
    await new Promise<void>((resolve) => counting.listen(0, '127.0.0.1', resolve));
    closers.push(() => new Promise<void>((resolve) => counting.close(() => resolve())));
    const cardUrl = `http://127.0.0.1:${(counting.address() as AddressInfo).port}/.well-known/agent-card.json`;
    const b = bus({ policies: [{ from: 'me', to: 'remote', allow: ['ask'] }] });
    b.register('remote', await a2aAgent({ card: cardUrl, headers: { authorization: 'Bearer r-token' }, allowOrigins: [remote.url] }));
    const me = b.register('me');
    expect(await me.ask('remote', 'echo', { a: 1 })).toEqual({ a: 1 });
    expect(await me.ask('remote', 'echo', 'text')).toBe('text');
    expect(cardReads).toBe(1);
    expect(remote.seenAuth.length).toBeGreaterThan(0);
    expect(new Set(remote.seenAuth)).toEqual(new Set(['Bearer r-token']));
  });
});

describe('A2A: a2aAgent "A remote failure is `HANDLER_FAILED` naming the remote\'s state"', () => {
  it('fails with HANDLER_FAILED naming the state when the remote rejects, and keeps the remote text as text', async () => {
    const remote = await bareSdkServer(['x'], () => {
      throw new Error('nope\u001b[2J');
    });
    closers.push(remote.close);
    const b = bus({ policies: [{ from: 'me', to: 'remote', allow: ['ask'] }] });
    b.register('remote', await a2aAgent({ card: `${remote.url}/.well-known/agent-card.json` }));
    const e = await refusal(b.register('me').ask('remote', 'x', 1));
    expect(e.code).toBe('HANDLER_FAILED');
    expect(e.message).toContain('TASK_STATE_FAILED');
  });

  const garbage: [string, boolean, string, string[]][] = [
    ['JSON', false, 'application/json', ['<html>oops</html>', JSON.stringify({ jsonrpc: '2.0', id: 1, result: { nonsense: true } }), '', JSON.stringify({ jsonrpc: '2.0', id: 1, error: { code: 'x', message: 7 } })]],
    ['SSE', true, 'text/event-stream', ['data: not json\n\n', `data: ${JSON.stringify({ jsonrpc: '2.0', id: 1, result: { weird: 1 } })}\n\n`, '', 'event: error\ndata: {}\n\n', `data: ${JSON.stringify({ jsonrpc: '2.0', id: 1, result: { statusUpdate: { taskId: 't', contextId: 'c', status: { state: 'TASK_STATE_WORKING' } } } })}\n\n`]],
  ];
  it.each(garbage)('fails with HANDLER_FAILED when a remote answers %s garbage: not JSON, a result of the wrong shape, nothing, a stream without a final state', async (_kind, streaming, type, answers) => {
    let next = 0;
    const server = createServer((req, res) => {
      if (req.url === '/.well-known/agent-card.json') {
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ ...bareCard(url, ['x']), capabilities: { streaming, pushNotifications: false, extensions: [] } }));
        return;
      }
      req.resume();
      req.on('end', () => res.writeHead(200, { 'content-type': type }).end(answers[next++ % answers.length]));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    closers.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
    const b = bus({ policies: [{ from: 'me', to: 'remote', allow: ['ask'] }] });
    b.register('remote', await a2aAgent({ card: `${url}/.well-known/agent-card.json` }));
    const me = b.register('me');
    for (let i = 0; i < answers.length; i++) {
      const e = await refusal(me.ask('remote', 'x', 1, { timeoutMs: 2000 }));
      expect(e.code, answers[i]).toBe('HANDLER_FAILED');
    }
  });

  it('refuses a card that is not a card with INVALID_ARGUMENT naming the URL', async () => {
    const server = createServer((_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end('{"skills":"none"}'));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    closers.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
    const card = `http://127.0.0.1:${(server.address() as AddressInfo).port}/.well-known/agent-card.json`;
    const e = await refusal(() => a2aAgent({ card }));
    expect(e.code).toBe('INVALID_ARGUMENT');
    expect(e.message).toContain(card);
  });
});

describe('A2A: "including one bus\'s `a2aAgent` calling another bus\'s `a2aServer` with policy applied on both"', () => {
  it('a remote that answers slowly past the ask\'s deadline: the local ask is TIMEOUT, the remote task is cancelled and its handler aborted', async () => {
    const { b: far, aborted } = front();
    const server = await serve(far);
    const near = bus({ policies: [{ from: 'me', to: 'far', allow: ['delegate'] }] });
    near.register('far', await a2aAgent({ card: `${server.url}/.well-known/agent-card.json`, headers: { authorization: `Bearer ${TOKEN}` }, skills: ['draft'] }));
    const e = await refusal(near.register('me').delegate('far', 'draft', 'hang', { timeoutMs: 300 }));
    expect(e.code).toBe('TIMEOUT');
    await expect.poll(() => aborted).toEqual(['draft CANCELLED']);
    await expect.poll(() => far.getMessageLog({ agentId: 'partner-x' }).map((r) => r.outcome)).toEqual(['cancelled']);
    expect(near.getMessageLog({ agentId: 'me' })).toMatchObject([{ from: 'me', to: 'far', intent: 'draft', outcome: 'expired', code: 'TIMEOUT' }]);
  });

  it('the far bus denies what its policy does not allow: the near caller gets HANDLER_FAILED naming TASK_STATE_REJECTED and POLICY_DENIED', async () => {
    const { b: far, ran } = front([]);
    const server = await serve(far);
    const near = bus({ policies: [{ from: 'me', to: 'far', allow: ['ask'] }] });
    near.register('far', await a2aAgent({ card: `${server.url}/.well-known/agent-card.json`, headers: { authorization: `Bearer ${TOKEN}` }, skills: ['quote'] }));
    const e = await refusal(near.register('me').ask('far', 'quote', { sku: 'a' }));
    expect(e.code).toBe('HANDLER_FAILED');
    expect(e.message).toMatch(/TASK_STATE_REJECTED: POLICY_DENIED/);
    expect(ran).toEqual([]);
    const denied = await refusal(near.register('stranger').ask('far', 'quote', { sku: 'a' }));
    expect(denied.code).toBe('POLICY_DENIED');
  });
});

interface Scripted {
  url: string;
  cancels: string[];
}

/**
 * A remote built from the SDK's own server pieces (DefaultRequestHandler, its express
 * handlers), whose executor publishes what `script` says; cancelTask records the id and
 * publishes canceled (and resolves `script`'s `cancelled` promise).
 */
async function sdkRemote(streaming: boolean, script: (ctx: RequestContext, publish: Publisher, cancelled: Promise<void>) => Promise<void>): Promise<Scripted> {
  const cancels: string[] = [];
  const waiting = new Map<string, () => void>();
  const executor: AgentExecutor = {
    async execute(ctx, bus) {
      const cancelled = new Promise<void>((resolve) => waiting.set(ctx.taskId, resolve));
      bus.publish(AgentEvent.task({ id: ctx.taskId, contextId: ctx.contextId, status: { state: TaskState.TASK_STATE_SUBMITTED, message: undefined, timestamp: new Date().toISOString() }, artifacts: [], history: [ctx.userMessage], metadata: undefined }));
      await script(ctx, publisher(ctx, bus), cancelled);
    },
    async cancelTask(taskId, bus) {
      cancels.push(taskId);
      bus.publish(AgentEvent.statusUpdate({ taskId, contextId: '', status: { state: TaskState.TASK_STATE_CANCELED, message: undefined, timestamp: new Date().toISOString() }, metadata: undefined }));
      waiting.get(taskId)?.();
    },
  };
  const app = express();
  const server = app.listen(0, '127.0.0.1');
  await new Promise<void>((resolve) => server.once('listening', () => resolve()));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  closers.push(
    () =>
      new Promise<void>((resolve) => {
        for (const release of waiting.values()) release();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  );
  const card = { ...bareCard(url, ['x']), capabilities: { streaming, pushNotifications: false, extensions: [] } };
  const handler = new DefaultRequestHandler(card, new InMemoryTaskStore(), executor);
  app.use('/.well-known/agent-card.json', agentCardHandler({ agentCardProvider: handler }));
  app.use('/a2a/jsonrpc', jsonRpcHandler({ requestHandler: handler, userBuilder: UserBuilder.noAuthentication }));
  return { url, cancels };
}

interface Publisher {
  status(state: TaskState, text?: string, metadata?: Record<string, unknown>): void;
  artifact(parts: Part[]): void;
}

function publisher(ctx: RequestContext, bus: ExecutionEventBus): Publisher {
  const { taskId, contextId } = ctx;
  return {
    status(state, text, metadata) {
      const message = text === undefined ? undefined : { messageId: `${taskId}-${Math.random()}`, contextId, taskId, role: Role.ROLE_AGENT, parts: [textPart(text)], metadata: undefined, extensions: [], referenceTaskIds: [] };
      bus.publish(AgentEvent.statusUpdate({ taskId, contextId, status: { state, message, timestamp: new Date().toISOString() }, metadata }));
    },
    artifact(parts) {
      bus.publish(AgentEvent.artifactUpdate({ taskId, contextId, artifact: { artifactId: 'a', name: 'answer', description: '', parts, metadata: undefined, extensions: [] }, append: false, lastChunk: true, metadata: undefined }));
    },
  };
}

async function remoteAgent(remote: Scripted, rules: PolicyRule[] = [{ from: 'me', to: 'remote', allow: ['ask', 'delegate'] }]): Promise<Orchestrator> {
  const b = bus({ policies: rules });
  b.register('remote', await a2aAgent({ card: `${remote.url}/.well-known/agent-card.json` }));
  return b;
}

describe('A2A: a2aAgent "The reply is the final artifact\'s value"', () => {
  it.each([true, false])('several parts → an array of their values (streaming %s)', async (streaming) => {
    const remote = await sdkRemote(streaming, async (_ctx, p) => {
      p.status(TaskState.TASK_STATE_WORKING);
      p.artifact([dataPart({ a: 1 }), textPart('two')]);
      p.status(TaskState.TASK_STATE_COMPLETED);
    });
    const b = await remoteAgent(remote);
    expect(await b.register('me').ask('remote', 'x', 1)).toEqual([{ a: 1 }, 'two']);
  });
});

describe('A2A: a2aAgent "calls it with the SDK\'s client (streaming when the remote supports it, progress from status updates)"', () => {
  it('reports the remote\'s working status updates as progress: the fraction from metadata.progress, the note from the text', async () => {
    const remote = await sdkRemote(true, async (_ctx, p) => {
      p.status(TaskState.TASK_STATE_WORKING, 'reading', { progress: 0.25 });
      p.status(TaskState.TASK_STATE_WORKING, 'writing', { progress: 0.75 });
      p.artifact([textPart('done')]);
      p.status(TaskState.TASK_STATE_COMPLETED);
    });
    const b = await remoteAgent(remote);
    const notes: string[] = [];
    const job = b.register('me').delegate('remote', 'x', 'go');
    job.onProgress(({ fraction, note }) => notes.push(`${fraction} ${note}`));
    expect(await job).toBe('done');
    expect(notes).toEqual(['0.25 reading', '0.75 writing']);
  });

  it('fails with HANDLER_FAILED naming TASK_STATE_INPUT_REQUIRED when the remote asks for input a bus message cannot give', async () => {
    const remote = await sdkRemote(true, async (_ctx, p) => p.status(TaskState.TASK_STATE_INPUT_REQUIRED, 'which size?'));
    const b = await remoteAgent(remote);
    const e = await refusal(b.register('me').ask('remote', 'x', 1));
    expect(e.code).toBe('HANDLER_FAILED');
    expect(e.message).toMatch(/TASK_STATE_INPUT_REQUIRED: which size\?/);
  });

  it('caps a remote\'s status text in the failure at 1000 characters', async () => {
    const remote = await sdkRemote(false, async (_ctx, p) => p.status(TaskState.TASK_STATE_FAILED, 'x'.repeat(100_000)));
    const b = await remoteAgent(remote);
    const e = await refusal(b.register('me').ask('remote', 'x', 1));
    expect(e.code).toBe('HANDLER_FAILED');
    expect(e.message.length).toBeLessThan(1200);
  });
});

describe('A2A: a2aAgent "cancels the remote task (tasks/cancel) when its ctx.signal aborts (a deadline, a cancel)"', () => {
  it.each([true, false])('a remote slower than the ask\'s deadline: TIMEOUT here, tasks/cancel there (streaming %s)', async (streaming) => {
    const remote = await sdkRemote(streaming, async (_ctx, p, cancelled) => {
      p.status(TaskState.TASK_STATE_WORKING, 'thinking');
      await cancelled;
    });
    const b = await remoteAgent(remote);
    const e = await refusal(b.register('me').ask('remote', 'x', 1, { timeoutMs: 300 }));
    expect(e.code).toBe('TIMEOUT');
    await expect.poll(() => remote.cancels.length).toBe(1);
  });
});

describe('A2A: docs/a2a.md "maxStreamBufferBytes … beyond, that stream is closed, the task goes on and tasks/get reads it"', () => {
  it('cuts off a streaming reader that stops reading, while the task completes and tasks/get reads it', async () => {
    const b = bus({ contracts, policies: RULES });
    const note = 'n'.repeat(900);
    b.register('front', {
      handlers: {
        draft: (_text: string, ctx: HandlerContext) => {
          for (let i = 0; i < 6000; i++) ctx.progress(i / 6000, note);
          return 'done';
        },
      } as never,
    });
    const server = await serve(b, { maxStreamBufferBytes: 64 * 1024 });
    const body = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'SendStreamingMessage', params: SendMessageRequest.toJSON(request('draft', [textPart('x')])) });
    const socket = connect(Number(new URL(server.url).port), '127.0.0.1');
    socket.pause();
    // Cut off while unread: the reset may discard what the kernel held, so only the close is certain.
    socket.on('error', () => undefined);
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    socket.write(`POST ${RPC_PATH} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\nA2A-Version: 1.0\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
    const client = await sdkClient(server.url, TOKEN);
    await expect.poll(async () => (await (await client.listTasks({ tenant: '', contextId: '', status: TaskState.TASK_STATE_COMPLETED, pageSize: 10, pageToken: '', historyLength: 0, statusTimestampAfter: undefined, includeArtifacts: true } as never)).tasks.length), { timeout: 10_000 }).toBe(1);
    let received = '';
    socket.setEncoding('utf8').on('data', (chunk: string) => (received += chunk));
    socket.resume();
    await closed;
    expect(received).not.toContain('TASK_STATE_COMPLETED');
    expect(Buffer.byteLength(received)).toBeLessThan(6000 * 900);
  });
});

describe('A2A: "`server.close()`" with a streaming caller', () => {
  it('ends the caller\'s stream (it does not hang) and cancels the running task', async () => {
    const { b, aborted } = front();
    const server = await serve(b);
    const client = await sdkClient(server.url, TOKEN);
    const states: string[] = [];
    const reading = (async () => {
      for await (const event of client.sendMessageStream(request('draft', [textPart('hang')]))) {
        if (event.payload?.$case === 'statusUpdate') states.push(TaskState[event.payload.value.status!.state]);
      }
    })();
    await expect.poll(() => states).toContain('TASK_STATE_WORKING');
    await server.close();
    await reading.catch(() => undefined);
    await expect.poll(() => aborted).toEqual(['draft CANCELLED']);
    await expect(fetch(`${server.url}/.well-known/agent-card.json`)).rejects.toThrow();
  });
});

describe('A2A: one bus\'s a2aAgent calling another bus\'s a2aServer, a call held for approval there', () => {
  it('shows the hold to the near side as a progress note naming the approval, and completes once approved', async () => {
    const { b: far, ran } = front();
    const server = await serve(far);
    const near = bus({ policies: [{ from: 'me', to: 'far', allow: ['delegate'] }] });
    near.register('far', await a2aAgent({ card: `${server.url}/.well-known/agent-card.json`, headers: { authorization: `Bearer ${TOKEN}` }, skills: ['order'] }));
    const notes: string[] = [];
    const job = near.register('me').delegate('far', 'order', { sku: 'gpu' });
    job.onProgress(({ note }) => notes.push(note ?? ''));
    await expect.poll(() => notes.some((n) => n.startsWith('held for approval'))).toBe(true);
    const [pending] = far.approvals.list();
    expect(notes.find((n) => n.startsWith('held'))).toContain(pending!.id);
    await far.approvals.approve(pending!.id, { by: 'alice' });
    expect(await job).toEqual({ id: 'o-gpu' });
    expect(ran).toEqual(['order gpu']);
  });
});

describe('A2A: a2aAgent refuses what is not a card, and its own bad options (`Invalid a2aAgent options: …`)', () => {
  const cards: [string, unknown][] = [
    ['null', null],
    ['an array', []],
    ['skills of numbers', { skills: [1, 2] }],
    ['a skill without an id', { skills: [{ name: 'x' }] }],
    ['supportedInterfaces of a string', { skills: [{ id: 'x' }], supportedInterfaces: 'http://x' }],
    ['a protocolBinding of a number', { skills: [{ id: 'x' }], supportedInterfaces: [{ url: 'http://127.0.0.1:1/rpc', protocolBinding: 7 }] }],
    ['capabilities.streaming of a string', { skills: [{ id: 'x' }], supportedInterfaces: [], capabilities: { streaming: 'yes' } }],
  ];
  it.each(cards)('refuses a card of %s with INVALID_ARGUMENT naming the URL', async (_name, body) => {
    const server = createServer((_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body)));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    closers.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
    const card = `http://127.0.0.1:${(server.address() as AddressInfo).port}/.well-known/agent-card.json`;
    const e = await refusal(() => a2aAgent({ card }));
    expect(e.code).toBe('INVALID_ARGUMENT');
    expect(e.message).toContain(card);
  });

  const options: [string, Record<string, unknown>, RegExp][] = [
    ['a card URL of another scheme', { card: 'file:///etc/passwd' }, /card/],
    ['a header value with a line break', { card: 'http://127.0.0.1:1/c', headers: { authorization: 'Bearer a\r\nX-Evil: 1' } }, /headers/],
    ['a header name that is not one', { card: 'http://127.0.0.1:1/c', headers: { 'bad name': 'x' } }, /headers/],
    ['an allowOrigins entry with a path', { card: 'http://127.0.0.1:1/c', allowOrigins: ['https://api.example/rpc'] }, /allowOrigins/],
    ['maxResponseBytes of 0', { card: 'http://127.0.0.1:1/c', maxResponseBytes: 0 }, /maxResponseBytes/],
  ];
  it.each(options)('refuses %s, naming the key', async (_name, o, names) => {
    const e = await refusal(() => a2aAgent(o as never));
    expect(e.code).toBe('INVALID_ARGUMENT');
    expect(e.message).toMatch(/^Invalid a2aAgent options: /);
    expect(e.message).toMatch(names);
    expect(e.message).not.toContain('X-Evil');
  });
});

describe('A2A: "`tasks/cancel` work (cancel aborts the handler\'s signal)" on a task held for approval', () => {
  it('cancels the held message: the approval leaves the queue, the handler never runs, the row says cancelled', async () => {
    const { b, ran } = front();
    const server = await serve(b);
    const client = await sdkClient(server.url, TOKEN);
    const started = await client.sendMessage(request('order', [dataPart({ sku: 'gpu' })], true));
    if (!('status' in started)) throw new Error('expected a task');
    await expect.poll(() => b.approvals.list().length).toBe(1);
    expect((await client.cancelTask({ tenant: '', id: started.id, metadata: undefined })).status?.state).toBe(TaskState.TASK_STATE_CANCELED);
    await expect.poll(() => b.approvals.list()).toEqual([]);
    await expect.poll(() => b.getMessageLog({ agentId: 'partner-x' }).map((e) => e.outcome)).toEqual(['cancelled']);
    expect((await client.getTask({ tenant: '', id: started.id })).status?.state).toBe(TaskState.TASK_STATE_CANCELED);
    expect(ran).toEqual([]);
  });
});

describe('A2A: docs/a2a.md options `skills` and `publicUrl`', () => {
  it('offers only the listed skills: another intent of the agent is INVALID_ARGUMENT before the bus sees it', async () => {
    const { b, ran } = front([{ from: '*', to: 'front', allow: ['ask', 'delegate'] }]);
    const server = await serve(b, { skills: ['quote'] });
    const card = await (await sdkClient(server.url)).getAgentCard();
    expect(card.skills.map((k) => k.id)).toEqual(['quote']);
    const task = await send(server, 'draft', [textPart('x')]);
    expect(task.status?.state).toBe(TaskState.TASK_STATE_REJECTED);
    expect(statusText(task.status?.message)).toMatch(/^INVALID_ARGUMENT: /);
    expect(ran).toEqual([]);
    expect(b.getMessageLog()).toEqual([]);
  });

  it('names publicUrl (without a trailing slash) as the url and the card\'s endpoint', async () => {
    const free = createServer();
    await new Promise<void>((resolve) => free.listen(0, '127.0.0.1', resolve));
    const port = (free.address() as AddressInfo).port;
    await new Promise<void>((resolve) => free.close(() => resolve()));
    const { b } = front();
    const server = await serve(b, { port, publicUrl: 'https://a2a.example.com/' });
    expect(server.url).toBe('https://a2a.example.com');
    const card = (await (await fetch(`http://127.0.0.1:${port}/.well-known/agent-card.json`)).json()) as { supportedInterfaces: { url: string }[] };
    expect(card.supportedInterfaces.map((i) => i.url)).toEqual([`https://a2a.example.com${RPC_PATH}`]);
  });
});

describe('A2A: the served side when the bus cannot take the call', () => {
  it('fails the task (never a crash) when the served agent is not registered, and goes on serving', async () => {
    const b = bus({ contracts, policies: RULES });
    const server = await serve(b);
    const task = await send(server, 'quote', [dataPart({ sku: 'a' })]);
    expect(task.status?.state).toBe(TaskState.TASK_STATE_FAILED);
    expect(task.status?.message?.metadata?.['code']).toMatch(/^[A-Z_]+$/);
    b.register('front', { handlers: { quote: () => ({ eur: 1 }) } as never });
    expect((await send(server, 'quote', [dataPart({ sku: 'a' })])).status?.state).toBe(TaskState.TASK_STATE_COMPLETED);
  });

  it('fails the task with CLOSED once the bus is closed under the server', async () => {
    const { b } = front();
    const server = await serve(b);
    await b.close();
    const task = await send(server, 'quote', [dataPart({ sku: 'a' })]);
    expect(task.status?.state).toBe(TaskState.TASK_STATE_FAILED);
    expect(statusText(task.status?.message)).toMatch(/^CLOSED: /);
  });
});

describe('A2A: docs/a2a.md "status messages carry a refusal\'s code and message only (at most 1000 characters)"', () => {
  it('clips a long error message and never carries the stack', async () => {
    const b = bus({ contracts, policies: RULES });
    b.register('front', {
      handlers: {
        quote: () => {
          throw new Error(`bad ${'y'.repeat(5000)}`);
        },
      } as never,
    });
    const server = await serve(b);
    const task = await send(server, 'quote', [dataPart({ sku: 'a' })]);
    const text = statusText(task.status?.message);
    expect(text).toMatch(/^HANDLER_FAILED: /);
    expect(text.length).toBeLessThanOrEqual(1000 + 'HANDLER_FAILED: '.length + 1);
    expect(text).not.toMatch(/\n\s+at /);
    expect(text).not.toContain('.ts:');
  });
});

describe('A2A: a2aAgent "The reply then passes the bus\'s own checks (size, contract) like any handler\'s value"', () => {
  it('refuses a remote reply that breaks the local contract as bad output of a handler (HANDLER_FAILED naming the contract)', async () => {
    const remote = await sdkRemote(true, async (_ctx, p) => {
      p.artifact([dataPart({ eur: 'free' })]);
      p.status(TaskState.TASK_STATE_COMPLETED);
    });
    const local = defineContracts({ x: { type: 'ask', input: z.number(), output: z.object({ eur: z.number() }) } });
    const b = bus({ contracts: local, policies: [{ from: 'me', to: 'remote', allow: ['ask'] }] });
    b.register('remote', await a2aAgent({ card: `${remote.url}/.well-known/agent-card.json` }));
    const e = await refusal(b.register('me').ask('remote', 'x', 1));
    expect(e.code).toBe('HANDLER_FAILED');
    expect(e.message).toMatch(/does not match its contract/);
  });

  it('refuses a card larger than maxResponseBytes with INVALID_ARGUMENT', async () => {
    const server = createServer((_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ skills: [{ id: 'x', description: 'd'.repeat(200_000) }] })));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    closers.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
    const card = `http://127.0.0.1:${(server.address() as AddressInfo).port}/.well-known/agent-card.json`;
    const e = await refusal(() => a2aAgent({ card, maxResponseBytes: 64 * 1024 }));
    expect(e.code).toBe('INVALID_ARGUMENT');
    expect(e.message).toMatch(/maxResponseBytes/);
  });
});

describe('A2A: a2aAgent when the local bus closes with a call in flight', () => {
  it('cancels the remote task', async () => {
    const remote = await sdkRemote(true, async (_ctx, p, cancelled) => {
      p.status(TaskState.TASK_STATE_WORKING, 'thinking');
      await cancelled;
    });
    const b = await remoteAgent(remote);
    const notes: string[] = [];
    const job = b.register('me').delegate('remote', 'x', 1);
    job.onProgress(({ note }) => notes.push(note ?? ''));
    const outcome = job.then(
      () => 'replied',
      (e: { code?: string }) => e.code,
    );
    await expect.poll(() => notes).toContain('thinking');
    await b.close();
    expect(await outcome).toMatch(/^[A-Z_]+$/);
    await expect.poll(() => remote.cancels.length).toBe(1);
  });
});

describe('A2A: docs/a2a.md "Push notifications are not offered"', () => {
  it('never calls a URL a caller names for push notifications, and refuses to store one', async () => {
    const hits: string[] = [];
    const sink = createServer((req, res) => {
      hits.push(String(req.url));
      res.end();
    });
    await new Promise<void>((resolve) => sink.listen(0, '127.0.0.1', resolve));
    closers.push(() => new Promise<void>((resolve) => sink.close(() => resolve())));
    const hook = `http://127.0.0.1:${(sink.address() as AddressInfo).port}/hook`;
    const { b } = front();
    const server = await serve(b);
    const card = await (await sdkClient(server.url)).getAgentCard();
    expect(card.capabilities?.pushNotifications).toBe(false);
    const message = SendMessageRequest.toJSON(request('quote', [dataPart({ sku: 'a' })])) as Record<string, unknown>;
    const withHook = { ...message, configuration: { taskPushNotificationConfig: { url: hook, id: 'h' }, returnImmediately: false } };
    const sent = (await (await rpc(server, JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'SendMessage', params: withHook }))).json()) as { result?: { task?: { id: string } } };
    expect(sent.result?.task?.id).toBeTypeOf('string');
    const create = (await (await rpc(server, JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'CreateTaskPushNotificationConfig', params: { taskId: sent.result!.task!.id, url: hook, id: 'h' } }))).json()) as { error?: { code: number } };
    expect(create.error?.code).toBeTypeOf('number');
    expect(hits).toEqual([]);
  });
});

describe('A2A: "Protocol A2A 1.0" JSON-RPC error codes for a body that is not one request', () => {
  it('answers not-JSON with a parse error (-32700, id null) and JSON that is no request object with an invalid request (-32600)', async () => {
    const { b, ran } = front();
    const server = await serve(b);
    const codeOf = async (body: string) => ((await (await rpc(server, body)).json()) as { id: unknown; error?: { code: number } });
    for (const body of ['{not json', '', '\u0000']) expect(await codeOf(body)).toMatchObject({ id: null, error: { code: -32700 } });
    for (const body of ['null', '7', '"x"', '[]', JSON.stringify([{ jsonrpc: '2.0', id: 1, method: 'GetTask', params: { id: 'x' } }])]) expect(await codeOf(body)).toMatchObject({ id: null, error: { code: -32600 } });
    expect(await codeOf(JSON.stringify({ jsonrpc: '1.0', id: 3, method: 'GetTask', params: {} }))).toMatchObject({ id: 3, error: { code: -32600 } });
    expect(await codeOf(JSON.stringify({ jsonrpc: '2.0', id: { evil: 1 }, method: 'GetTask', params: {} }))).toMatchObject({ id: null, error: { code: -32600 } });
    expect(await codeOf(JSON.stringify({ jsonrpc: '2.0', id: 4, method: 'NoSuchMethod', params: {} }))).toMatchObject({ id: 4, error: { code: -32601 } });
    expect(ran).toEqual([]);
  });
});

describe('A2A: docs/a2a.md "accepted, running | TASK_STATE_WORKING | none (metadata `messageId`)"', () => {
  it('names the bus message of the task in the working update, the same id as its audit row', async () => {
    const { b } = front();
    const server = await serve(b);
    const ids: unknown[] = [];
    for await (const event of (await sdkClient(server.url, TOKEN)).sendMessageStream(request('draft', [textPart('t')]))) {
      const p = event.payload;
      if (p?.$case === 'statusUpdate' && p.value.status?.state === TaskState.TASK_STATE_WORKING && p.value.status.message === undefined) ids.push(p.value.metadata?.['messageId']);
    }
    const [row] = b.getMessageLog({ agentId: 'partner-x' }).filter((e) => e.type === 'delegate');
    expect(ids).toEqual([row!.messageId]);
  });
});

describe('A2A: docs/a2a.md "ListTasks lists the caller\'s own tasks, newest first, a page at a time"', () => {
  it('pages through every task of the caller with nextPageToken, and none of another caller', async () => {
    const { b } = front([{ from: '*', to: 'front', allow: ['ask'] }]);
    const server = await serve(b);
    const mine: string[] = [];
    for (let i = 0; i < 5; i++) mine.push((await send(server, 'quote', [dataPart({ sku: `s${i}` })])).id);
    await send(server, 'quote', [dataPart({ sku: 'theirs' })], OTHER);
    const client = await sdkClient(server.url, TOKEN);
    const seen: string[] = [];
    let pageToken = '';
    for (let pages = 0; pages < 10; pages++) {
      const page = await client.listTasks({ tenant: '', contextId: '', status: TaskState.TASK_STATE_UNSPECIFIED, pageSize: 2, pageToken, historyLength: 0, statusTimestampAfter: undefined, includeArtifacts: false } as never);
      seen.push(...page.tasks.map((t) => t.id));
      expect(page.totalSize).toBe(5);
      pageToken = page.nextPageToken;
      if (pageToken === '') break;
    }
    expect(seen).toEqual([...mine].reverse());
  });
});

describe('A2A: hostile payloads inside a well-formed request', () => {
  it('answers a data part nested 20000 deep without crashing (an error or a refused task), and goes on serving', async () => {
    const { b, ran } = front([{ from: '*', to: 'front', allow: ['ask'] }]);
    const server = await serve(b);
    const deep = `${'{"a":'.repeat(20_000)}1${'}'.repeat(20_000)}`;
    const body = `{"jsonrpc":"2.0","id":1,"method":"SendMessage","params":{"message":{"messageId":"m","role":"ROLE_USER","parts":[{"data":${deep}}],"metadata":{"skill":"quote"}}}}`;
    const res = await rpc(server, body);
    expect(res.status).toBe(200);
    const reply = (await res.json()) as { error?: { code: number }; result?: { task?: { status?: { state?: string } } } };
    if (reply.error === undefined) expect(reply.result?.task?.status?.state).toMatch(/TASK_STATE_(REJECTED|FAILED)/);
    expect(ran).toEqual([]);
    expect((await send(server, 'quote', [dataPart({ sku: 'ok' })])).status?.state).toBe(TaskState.TASK_STATE_COMPLETED);
  });
});

describe('A2A: a2aAgent "reads the remote card once at registration" from a remote that never answers', () => {
  it('is refused with INVALID_ARGUMENT naming cardTimeoutMs, for a remote that sends nothing and one that stops mid-body', async () => {
    const server = createServer((req, res) => {
      if (req.url === '/half/.well-known/agent-card.json') res.writeHead(200, { 'content-type': 'application/json', 'content-length': '1000' }).write('{"skills":');
      // Otherwise: nothing at all, the connection held open.
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    closers.push(
      () =>
        new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeAllConnections();
        }),
    );
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    for (const card of [`${base}/.well-known/agent-card.json`, `${base}/half/.well-known/agent-card.json`]) {
      const e = await refusal(() => a2aAgent({ card, cardTimeoutMs: 150 }));
      expect(e.code).toBe('INVALID_ARGUMENT');
      expect(e.message).toMatch(/no card within 150 ms \(cardTimeoutMs\)/);
    }
  });
});

describe('A2A: "While held for approval it stays working … it then completes"', () => {
  it('keeps a blocking send (no stream, no returnImmediately) waiting while held, and answers completed with the reply once approved', async () => {
    const { b, ran } = front();
    const server = await serve(b);
    b.events.on('approval:requested', ({ approval }) => void b.approvals.approve(approval.id, { by: 'alice' }));
    const task = await send(server, 'order', [dataPart({ sku: 'ssd' })]);
    expect(task.status?.state).toBe(TaskState.TASK_STATE_COMPLETED);
    expect(valueOf(task)).toEqual({ id: 'o-ssd' });
    expect(ran).toEqual(['order ssd']);
    expect(b.getMessageLog({ agentId: 'partner-x' }).find((e) => e.type === 'delegate')).toMatchObject({ approval: 'approved', decidedBy: 'alice', outcome: 'replied' });
  });
});

describe('A2A: docs/a2a.md "maxConnections … open connections at most, authenticated or not (a 401 closes its connection)"', () => {
  it('lets no unauthenticated keep-alive hold the only slot: after its 401 a caller with a token is served', async () => {
    const { b } = front();
    const server = await serve(b, { maxConnections: 1 });
    const socket = connect(Number(new URL(server.url).port), '127.0.0.1');
    let text = '';
    socket.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    socket.write(`POST ${RPC_PATH} HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\n{}`);
    await closed;
    expect(text).toMatch(/^HTTP\/1\.1 401/);
    // One raw connection (fetch may open a second while its first is still being pooled,
    // and a cap of one closes that at once, as documented).
    const answer = async (): Promise<string> => {
      const legit = connect(Number(new URL(server.url).port), '127.0.0.1');
      let got = '';
      legit.setEncoding('utf8').on('data', (chunk: string) => (got += chunk));
      const body = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'GetTask', params: { id: 'none' } });
      legit.write(`POST ${RPC_PATH} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\nA2A-Version: 1.0\r\nConnection: close\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
      await new Promise<void>((resolve) => legit.once('close', () => resolve()));
      return got;
    };
    await expect.poll(answer).toMatch(/^HTTP\/1\.1 200[\s\S]*Task not found/);
  });
});
