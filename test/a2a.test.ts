// agent-switchboard/a2a, checked with @a2a-js/sdk's own client and server in both directions.
import { connect, type Socket } from 'node:net';
import { TaskState, type Task } from '@a2a-js/sdk';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { a2aAgent, a2aServer, SCHEMA_EXTENSION_URI, type A2aServerHandle } from '../src/a2a/index.js';
import { contractJsonSchema } from '../src/tools/catalog.js';
import { defineContracts, type HandlerContext, type Orchestrator, type PolicyRule } from '../src/index.js';
import { closeBuses, makeBus, rejectionOf } from './support/helpers.js';
import { bareSdkServer, cardHost, dataPart, request, sdkClient, statusText, textPart } from './support/a2a.js';

const TOKEN = 'partner-token-0123456789';
const OTHER_TOKEN = 'other-token-0123456789ab';

const contracts = defineContracts({
  quote: { type: 'ask', input: z.object({ sku: z.string() }), output: z.object({ price: z.number() }) },
  summarize: { type: 'delegate', input: z.string(), output: z.string() },
  buy: { type: 'delegate', input: z.object({ sku: z.string(), qty: z.number().int() }), output: z.object({ order: z.string() }) },
  found: { type: 'notify', input: z.object({ url: z.string() }) },
});

const servers: A2aServerHandle[] = [];
const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await s.close();
  for (const c of closers.splice(0)) await c();
  await closeBuses();
});

const POLICIES: PolicyRule[] = [
  { from: 'partner', to: 'front', allow: ['ask'], intents: ['quote'] },
  { from: 'partner', to: 'front', allow: ['delegate'], intents: ['summarize'] },
  { from: 'partner', to: 'front', allow: ['delegate'], intents: ['buy'], requireApproval: true },
];

function frontBus(policies: PolicyRule[] = POLICIES, extra: Parameters<typeof makeBus>[0] = {}): { bus: Orchestrator; seen: string[] } {
  const bus = makeBus({ contracts, policies, ...extra });
  const seen: string[] = [];
  bus.register('front', {
    handlers: {
      quote: ({ sku }: { sku: string }) => {
        seen.push(`quote ${sku}`);
        if (sku === 'boom') throw new Error('no price for boom');
        if (sku === 'bad-output') return { price: 'free' } as never;
        return { price: sku.length * 10 };
      },
      summarize: async (text: string, ctx: HandlerContext) => {
        seen.push(`summarize ${text}`);
        ctx.progress(0.5, 'half way');
        if (text === 'forever') {
          await new Promise<void>((resolve) => ctx.signal.addEventListener('abort', () => resolve(), { once: true }));
          seen.push(`aborted ${String(ctx.signal.reason?.code ?? ctx.signal.reason)}`);
          return 'never';
        }
        return `summary of ${text}`;
      },
      buy: ({ sku, qty }: { sku: string; qty: number }) => {
        seen.push(`buy ${qty} ${sku}`);
        return { order: `order-${sku}-${qty}` };
      },
    } as never,
  });
  return { bus, seen };
}

async function serve(bus: Orchestrator, options: Partial<Parameters<typeof a2aServer>[1]> = {}): Promise<A2aServerHandle> {
  const server = await a2aServer(bus, { agent: 'front', host: '127.0.0.1', port: 0, callers: { [TOKEN]: 'partner', [OTHER_TOKEN]: 'other' }, ...options });
  servers.push(server);
  return server;
}

async function drain(stream: AsyncIterable<unknown>): Promise<void> {
  for await (const _event of stream);
}

function artifactValue(task: Task): unknown {
  const content = task.artifacts.at(-1)?.parts[0]?.content;
  return content?.$case === 'data' || content?.$case === 'text' ? content.value : undefined;
}

async function sendTask(server: A2aServerHandle, skill: string | undefined, parts: Parameters<typeof request>[1], token = TOKEN): Promise<Task> {
  const client = await sdkClient(server.url, token);
  const result = await client.sendMessage(request(skill, parts));
  if (!('status' in result)) throw new Error('expected a task');
  return result;
}

describe('a2aServer(): the card', () => {
  it('is public, declares a bearer scheme, and lists one skill per ask or delegate contract with its JSON Schemas in a declared extension', async () => {
    const { bus } = frontBus();
    const server = await serve(bus);
    const response = await fetch(`${server.url}/.well-known/agent-card.json`);
    expect(response.status).toBe(200);
    const client = await sdkClient(server.url);
    const card = await client.getAgentCard();
    expect(card.skills.map((s) => s.id).sort()).toEqual(['buy', 'quote', 'summarize']);
    const scheme = card.securitySchemes['bearer']?.scheme;
    expect(scheme?.$case).toBe('httpAuthSecurityScheme');
    expect(scheme?.$case === 'httpAuthSecurityScheme' && scheme.value.scheme).toBe('Bearer');
    expect(card.securityRequirements.map((r) => Object.keys(r.schemes))).toEqual([['bearer']]);
    const extension = card.capabilities?.extensions.find((e) => e.uri === SCHEMA_EXTENSION_URI);
    expect(extension?.params?.['quote']).toEqual({ type: 'ask', input: contractJsonSchema(contracts.quote.input), output: expect.objectContaining({ type: 'object' }) });
    expect(extension?.params?.['summarize']).toMatchObject({ type: 'delegate', input: { type: 'string' }, output: { type: 'string' } });
  });
});

describe('a2aServer(): authentication', () => {
  it('answers 401 without a valid bearer token, runs no handler and writes no audit row', async () => {
    const { bus, seen } = frontBus();
    const server = await serve(bus);
    const before = bus.getMessageLog().length;
    const body = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'SendMessage', params: {} });
    for (const authorization of [undefined, 'Bearer wrong-token-0123456789', `Basic ${TOKEN}`, `Bearer ${TOKEN}x`]) {
      const res = await fetch(`${server.url}/a2a/jsonrpc`, { method: 'POST', body, headers: { 'content-type': 'application/json', ...(authorization ? { authorization } : {}) } });
      expect(res.status).toBe(401);
      expect(res.headers.get('www-authenticate')).toBe('Bearer');
    }
    const client = await sdkClient(server.url, 'not-a-caller-token-123');
    await expect(client.sendMessage(request('quote', [dataPart({ sku: 'a' })]))).rejects.toThrow();
    expect(seen).toEqual([]);
    expect(bus.getMessageLog().length).toBe(before);
  });

  it('closes the connection after a 401, however the request asked to keep it alive', async () => {
    const { bus } = frontBus();
    const server = await serve(bus);
    const socket = connect(Number(new URL(server.url).port), '127.0.0.1');
    let text = '';
    socket.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    socket.write('POST /a2a/jsonrpc HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}');
    await closed;
    expect(text).toMatch(/^HTTP\/1\.1 401 /);
    expect(text.toLowerCase()).toContain('connection: close');
  });

  it('refuses a body over maxBodyBytes with 413 before the SDK reads it', async () => {
    const { bus, seen } = frontBus();
    const server = await serve(bus, { maxBodyBytes: 2048 });
    const res = await fetch(`${server.url}/a2a/jsonrpc`, { method: 'POST', body: 'x'.repeat(4096), headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' } });
    expect(res.status).toBe(413);
    expect(seen).toEqual([]);
  });
});

describe('a2aServer(): tasks follow the message', () => {
  it('completes an ask with the reply as a data artifact, sent as the caller\'s agent id', async () => {
    const { bus, seen } = frontBus();
    const server = await serve(bus);
    const task = await sendTask(server, 'quote', [dataPart({ sku: 'abc' })]);
    expect(task.status?.state).toBe(TaskState.TASK_STATE_COMPLETED);
    expect(artifactValue(task)).toEqual({ price: 30 });
    expect(task.artifacts.at(-1)?.parts[0]?.content?.$case).toBe('data');
    expect(seen).toEqual(['quote abc']);
    expect(bus.getMessageLog({ agentId: 'partner' }).filter((e) => e.type === 'ask')).toMatchObject([{ from: 'partner', to: 'front', type: 'ask', intent: 'quote', decision: 'allowed', outcome: 'replied' }]);
  });

  it('returns a string reply as a text part', async () => {
    const { bus } = frontBus();
    const server = await serve(bus);
    const task = await sendTask(server, 'summarize', [textPart('the news')]);
    expect(task.status?.state).toBe(TaskState.TASK_STATE_COMPLETED);
    expect(task.artifacts.at(-1)?.parts[0]?.content).toEqual({ $case: 'text', value: 'summary of the news' });
  });

  it('streams a delegate: working, progress as a status update, the artifact, completed', async () => {
    const { bus } = frontBus();
    const server = await serve(bus);
    const client = await sdkClient(server.url, TOKEN);
    const events: string[] = [];
    for await (const event of client.sendMessageStream(request('summarize', [textPart('a report')]))) {
      const p = event.payload;
      if (p?.$case === 'task') events.push(`task ${TaskState[p.value.status!.state]}`);
      if (p?.$case === 'statusUpdate') events.push(`status ${TaskState[p.value.status!.state]}${statusText(p.value.status?.message) ? ` ${statusText(p.value.status?.message)}` : ''}`);
      if (p?.$case === 'artifactUpdate') events.push(`artifact ${JSON.stringify(p.value.artifact?.parts[0]?.content)}`);
    }
    expect(events).toEqual([
      'task TASK_STATE_SUBMITTED',
      'status TASK_STATE_WORKING',
      'status TASK_STATE_WORKING half way',
      'artifact {"$case":"text","value":"summary of a report"}',
      'status TASK_STATE_COMPLETED',
    ]);
  });

  it('is rejected with POLICY_DENIED (code and reason in the status message) when no rule lets the caller send', async () => {
    const { bus, seen } = frontBus();
    const server = await serve(bus);
    const task = await sendTask(server, 'quote', [dataPart({ sku: 'a' })], OTHER_TOKEN);
    expect(task.status?.state).toBe(TaskState.TASK_STATE_REJECTED);
    expect(statusText(task.status?.message)).toMatch(/^POLICY_DENIED: /);
    expect(task.status?.message?.metadata).toMatchObject({ code: 'POLICY_DENIED' });
    expect(seen).toEqual([]);
    expect(bus.getMessageLog({ agentId: 'other' })).toMatchObject([{ from: 'other', to: 'front', decision: 'denied', code: 'POLICY_DENIED' }]);
  });

  it('fails on HANDLER_FAILED, INVALID_PAYLOAD and TIMEOUT', async () => {
    const { bus } = frontBus();
    const server = await serve(bus, { timeoutMs: 100 });
    const failed = await sendTask(server, 'quote', [dataPart({ sku: 'boom' })]);
    expect(failed.status?.state).toBe(TaskState.TASK_STATE_FAILED);
    expect(statusText(failed.status?.message)).toMatch(/^HANDLER_FAILED: .*no price for boom/);
    const invalid = await sendTask(server, 'quote', [dataPart({ sku: 42 })]);
    expect(invalid.status?.state).toBe(TaskState.TASK_STATE_FAILED);
    expect(statusText(invalid.status?.message)).toMatch(/^INVALID_PAYLOAD: /);
    const timeout = await sendTask(server, 'summarize', [textPart('forever')]);
    expect(timeout.status?.state).toBe(TaskState.TASK_STATE_FAILED);
    expect(statusText(timeout.status?.message)).toMatch(/^TIMEOUT: /);
  });

  it('keeps a task small however often its handler reports progress: the status is the latest report, the history holds one', async () => {
    const bus = makeBus({ contracts, policies: POLICIES });
    bus.register('front', {
      handlers: {
        summarize: (_text: string, ctx: HandlerContext) => {
          for (let i = 1; i <= 300; i++) ctx.progress(i / 1000, `step ${i}`);
          return 'done';
        },
      } as never,
    });
    const server = await serve(bus);
    const client = await sdkClient(server.url, TOKEN);
    const notes: string[] = [];
    let id = '';
    for await (const event of client.sendMessageStream(request('summarize', [textPart('x')]))) {
      if (event.payload?.$case === 'task') id = event.payload.value.id;
      if (event.payload?.$case === 'statusUpdate' && event.payload.value.status?.message !== undefined) notes.push(statusText(event.payload.value.status.message));
    }
    expect(notes).toContain('step 300');
    const task = await client.getTask({ tenant: '', id });
    expect(task.status?.state).toBe(TaskState.TASK_STATE_COMPLETED);
    expect(task.history.length).toBeLessThan(5);
  });

  it('escapes the agent\'s text in status messages: an error message and a progress note carry no control or bidirectional character', async () => {
    const bus = makeBus({ contracts, policies: POLICIES });
    bus.register('front', {
      handlers: {
        quote: () => {
          throw new Error('no price\u001b[2J\u202e');
        },
        summarize: (_text: string, ctx: HandlerContext) => {
          ctx.progress(0.5, 'half\u001b]0;owned\u0007 way');
          return 'done';
        },
      } as never,
    });
    const server = await serve(bus);
    const failed = await sendTask(server, 'quote', [dataPart({ sku: 'a' })]);
    expect(statusText(failed.status?.message)).toContain('no price\\x1b[2J\\u202e');
    const client = await sdkClient(server.url, TOKEN);
    const texts: string[] = [];
    for await (const event of client.sendMessageStream(request('summarize', [textPart('x')]))) {
      if (event.payload?.$case === 'statusUpdate' && event.payload.value.status?.message !== undefined) texts.push(statusText(event.payload.value.status.message));
    }
    expect(texts).toContain('half\\x1b]0;owned\\x07 way');
    for (const text of [...texts, statusText(failed.status?.message)]) expect(text).not.toMatch(/[\u0000-\u001f\u202e]/);
  });

  it('is rejected with RATE_LIMITED once the caller\'s bucket is empty', async () => {
    const { bus } = frontBus(POLICIES, { limits: { rate: { perSecond: 0.001, burst: 1 } } });
    const server = await serve(bus);
    expect((await sendTask(server, 'quote', [dataPart({ sku: 'a' })])).status?.state).toBe(TaskState.TASK_STATE_COMPLETED);
    const limited = await sendTask(server, 'quote', [dataPart({ sku: 'b' })]);
    expect(limited.status?.state).toBe(TaskState.TASK_STATE_REJECTED);
    expect(statusText(limited.status?.message)).toMatch(/^RATE_LIMITED: /);
  });

  it('rejects a message that names no known skill, or carries a file, before anything reaches the bus', async () => {
    const { bus, seen } = frontBus();
    const server = await serve(bus);
    const before = bus.getMessageLog().length;
    const none = await sendTask(server, undefined, [dataPart({ sku: 'a' })]);
    expect(none.status?.state).toBe(TaskState.TASK_STATE_REJECTED);
    expect(statusText(none.status?.message)).toContain('message.metadata.skill');
    const unknown = await sendTask(server, 'found', [dataPart({ url: 'x' })]);
    expect(statusText(unknown.status?.message)).toMatch(/^INVALID_ARGUMENT: no skill "found"/);
    const file = await sendTask(server, 'quote', [{ content: { $case: 'url', value: 'https://example.com/f' }, metadata: undefined, filename: 'f', mediaType: 'text/plain' }]);
    expect(statusText(file.status?.message)).toMatch(/^INVALID_ARGUMENT: a url part cannot be carried/);
    expect(seen).toEqual([]);
    expect(bus.getMessageLog().length).toBe(before);
  });
});

describe('a2aServer(): approvals', () => {
  it('streams working with a status message naming the approval while held, then the artifact and completed once approved', async () => {
    const { bus, seen } = frontBus();
    const server = await serve(bus);
    const client = await sdkClient(server.url, TOKEN);
    const events: string[] = [];
    for await (const event of client.sendMessageStream(request('buy', [dataPart({ sku: 'gpu', qty: 2 })]))) {
      const p = event.payload;
      if (p?.$case === 'statusUpdate') {
        const text = statusText(p.value.status?.message);
        events.push(`${TaskState[p.value.status!.state]} ${text}`.trim());
        if (text.startsWith('held for approval')) {
          const [approval] = bus.approvals.list();
          expect(text).toContain(approval!.id);
          expect(seen).toEqual([]);
          await bus.approvals.approve(approval!.id, { by: 'alice' });
        }
      }
      if (p?.$case === 'artifactUpdate') events.push(`artifact ${JSON.stringify(p.value.artifact?.parts[0]?.content)}`);
    }
    expect(events).toEqual([
      'TASK_STATE_WORKING',
      expect.stringMatching(/^TASK_STATE_WORKING held for approval \S+ \(rule .*\): the task stays working until an operator decides$/),
      'TASK_STATE_WORKING approved by an operator: running "buy"',
      'artifact {"$case":"data","value":{"order":"order-gpu-2"}}',
      'TASK_STATE_COMPLETED',
    ]);
    expect(seen).toEqual(['buy 2 gpu']);
    expect(bus.getMessageLog({ agentId: 'partner' }).find((e) => e.type === 'delegate')).toMatchObject({ decision: 'pending', approval: 'approved', decidedBy: 'alice', outcome: 'replied' });
  });

  it('keeps the task true for tasks/get after a streaming client goes away while it is held', async () => {
    const { bus } = frontBus();
    const server = await serve(bus);
    const client = await sdkClient(server.url, TOKEN);
    let taskId = '';
    for await (const event of client.sendMessageStream(request('buy', [dataPart({ sku: 'ssd', qty: 1 })]))) {
      if (event.payload?.$case === 'task') taskId = event.payload.value.id;
      if (event.payload?.$case === 'statusUpdate' && statusText(event.payload.value.status?.message).startsWith('held for approval')) break;
    }
    await bus.approvals.approve(bus.approvals.list()[0]!.id, { by: 'alice' });
    await expect.poll(async () => (await client.getTask({ tenant: '', id: taskId })).status?.state).toBe(TaskState.TASK_STATE_COMPLETED);
    expect(artifactValue(await client.getTask({ tenant: '', id: taskId }))).toEqual({ order: 'order-ssd-1' });
  });

  it('shows working to tasks/get while held (returnImmediately), then rejected with APPROVAL_REJECTED and the reason', async () => {
    const { bus, seen } = frontBus();
    const server = await serve(bus);
    const client = await sdkClient(server.url, TOKEN);
    const started = await client.sendMessage(request('buy', [dataPart({ sku: 'gpu', qty: 2 })], true));
    if (!('status' in started)) throw new Error('expected a task');
    await expect.poll(async () => statusText((await client.getTask({ tenant: '', id: started.id })).status?.message)).toMatch(/^held for approval/);
    expect((await client.getTask({ tenant: '', id: started.id })).status?.state).toBe(TaskState.TASK_STATE_WORKING);
    const [approval] = bus.approvals.list();
    bus.approvals.reject(approval!.id, { by: 'alice', reason: 'over budget' });
    await expect.poll(async () => (await client.getTask({ tenant: '', id: started.id })).status?.state).toBe(TaskState.TASK_STATE_REJECTED);
    const task = await client.getTask({ tenant: '', id: started.id });
    expect(statusText(task.status?.message)).toMatch(/^APPROVAL_REJECTED: .*over budget/);
    expect(seen).toEqual([]);
  });
});

describe('a2aServer(): approvals that nobody decides', () => {
  it('is rejected with APPROVAL_EXPIRED once the held message reaches its deadline', async () => {
    const { bus, seen } = frontBus();
    const server = await serve(bus, { timeoutMs: 150 });
    const task = await sendTask(server, 'buy', [dataPart({ sku: 'gpu', qty: 1 })]);
    expect(task.status?.state).toBe(TaskState.TASK_STATE_REJECTED);
    expect(statusText(task.status?.message)).toMatch(/^APPROVAL_EXPIRED: /);
    expect(seen).toEqual([]);
  });
});

describe('a2aServer(): tasks/get and tasks/cancel', () => {
  it('cancels a running task: the handler\'s signal aborts and the task is canceled', async () => {
    const { bus, seen } = frontBus();
    const server = await serve(bus);
    const client = await sdkClient(server.url, TOKEN);
    const started = await client.sendMessage(request('summarize', [textPart('forever')], true));
    if (!('status' in started)) throw new Error('expected a task');
    await expect.poll(() => seen).toContain('summarize forever');
    const canceled = await client.cancelTask({ tenant: '', id: started.id, metadata: undefined });
    expect(canceled.status?.state).toBe(TaskState.TASK_STATE_CANCELED);
    await expect.poll(() => seen).toContain('aborted CANCELLED');
    expect((await client.getTask({ tenant: '', id: started.id })).status?.state).toBe(TaskState.TASK_STATE_CANCELED);
  });

  it('refuses a further message to a running task as an unsupported operation and leaves the task as it was', async () => {
    const { bus, seen } = frontBus();
    const server = await serve(bus);
    const client = await sdkClient(server.url, TOKEN);
    const started = await client.sendMessage(request('buy', [dataPart({ sku: 'gpu', qty: 1 })], true));
    if (!('status' in started)) throw new Error('expected a task');
    await expect.poll(() => bus.approvals.list().length).toBe(1);
    const follow = request('buy', [dataPart({ sku: 'gpu', qty: 9 })]);
    follow.message!.taskId = started.id;
    follow.message!.contextId = started.contextId;
    await expect(client.sendMessage(follow)).rejects.toThrow(/takes one message/);
    await expect(drain(client.sendMessageStream(follow))).rejects.toThrow(/takes one message/);
    expect(bus.approvals.list()).toHaveLength(1);
    expect((await client.getTask({ tenant: '', id: started.id })).status?.state).toBe(TaskState.TASK_STATE_WORKING);
    expect(seen).toEqual([]);
    await bus.approvals.approve(bus.approvals.list()[0]!.id, { by: 'alice' });
    await expect.poll(async () => (await client.getTask({ tenant: '', id: started.id })).status?.state).toBe(TaskState.TASK_STATE_COMPLETED);
    expect(seen).toEqual(['buy 1 gpu']);
  });

  it("does not show one caller's task to another", async () => {
    const { bus } = frontBus([...POLICIES, { from: 'other', to: 'front', allow: ['ask'] }]);
    const server = await serve(bus);
    const task = await sendTask(server, 'quote', [dataPart({ sku: 'a' })]);
    const other = await sdkClient(server.url, OTHER_TOKEN);
    await expect(other.getTask({ tenant: '', id: task.id })).rejects.toThrow(/not found/i);
  });
});

describe('a2aServer(): what a caller cannot name', () => {
  it('refuses a request that names a tenant, so a caller cannot add tables of its own to the server or cancel a task where it does not run', async () => {
    const { bus, seen } = frontBus();
    const server = await serve(bus);
    const client = await sdkClient(server.url, TOKEN);
    await expect(client.sendMessage({ ...request('quote', [dataPart({ sku: 'a' })]), tenant: 'tenant-1' })).rejects.toThrow(/tenant/);
    const started = await client.sendMessage(request('summarize', [textPart('forever')], true));
    if (!('status' in started)) throw new Error('expected a task');
    await expect(client.cancelTask({ tenant: 'elsewhere', id: started.id, metadata: undefined })).rejects.toThrow(/tenant/);
    expect((await client.getTask({ tenant: '', id: started.id })).status?.state).toBe(TaskState.TASK_STATE_WORKING);
    await client.cancelTask({ tenant: '', id: started.id, metadata: undefined });
    expect(seen.filter((s) => !s.startsWith('aborted'))).toEqual(['summarize forever']);
  });

  it('refuses referenceTaskIds before the SDK looks them up (and writes the caller\'s text to the console)', async () => {
    const { bus, seen } = frontBus();
    const server = await serve(bus);
    const client = await sdkClient(server.url, TOKEN);
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => undefined);
    try {
      const req = request('quote', [dataPart({ sku: 'a' })]);
      await expect(client.sendMessage({ ...req, message: { ...req.message!, referenceTaskIds: ['\u001b[2Jforged'] } })).rejects.toThrow(/referenceTaskIds/);
      expect(warn).not.toHaveBeenCalled();
    } finally {
      warn.mockRestore();
    }
    expect(seen).toEqual([]);
  });
});

describe('a2aServer(): errors', () => {
  it('answers an internal error without its text: a malformed part is "internal error", never the TypeError naming the code', async () => {
    const { bus, seen } = frontBus();
    const server = await serve(bus);
    const body = JSON.stringify({ jsonrpc: '2.0', id: 6, method: 'SendMessage', params: { message: { messageId: 'm', role: 'ROLE_USER', parts: [null] } } });
    const res = await fetch(`${server.url}/a2a/jsonrpc`, { method: 'POST', body, headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json', 'a2a-version': '1.0' } });
    expect(await res.json()).toEqual({ jsonrpc: '2.0', id: 6, error: { code: -32603, message: 'internal error' } });
    expect(seen).toEqual([]);
  });
});

describe('a2aServer(): remembered tasks', () => {
  it('forgets the oldest tasks once they hold more than maxTaskBytes, however few they are', async () => {
    const { bus } = frontBus();
    const server = await serve(bus, { maxTaskBytes: 100_000 });
    const client = await sdkClient(server.url, TOKEN);
    const big = 'x'.repeat(30_000);
    const ids: string[] = [];
    for (let i = 0; i < 4; i++) ids.push((await sendTask(server, 'summarize', [textPart(`${i}${big}`)])).id);
    await expect(client.getTask({ tenant: '', id: ids[0]! })).rejects.toThrow(/not found/i);
    expect((await client.getTask({ tenant: '', id: ids[3]! })).status?.state).toBe(TaskState.TASK_STATE_COMPLETED);
  });
});

describe('a2aServer(): connections', () => {
  it('closes a connection beyond maxConnections at once, and serves again once one closes', async () => {
    const { bus } = frontBus();
    const server = await serve(bus, { maxConnections: 2 });
    const { port } = new URL(server.url);
    const open = async (): Promise<Socket> => {
      const socket = connect(Number(port), '127.0.0.1');
      // A whole request answered: the server has accepted and counted this socket (kept alive).
      socket.write('GET /.well-known/agent-card.json HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n');
      await new Promise<void>((resolve, reject) => {
        socket.once('data', () => resolve());
        socket.once('close', () => reject(new Error('closed')));
      });
      return socket;
    };
    const first = await open();
    const second = await open();
    await expect(open()).rejects.toThrow('closed');
    first.destroy();
    await expect.poll(async () => (await fetch(`${server.url}/.well-known/agent-card.json`)).status).toBe(200);
    second.destroy();
  });

  it('refuses maxConnections of 0, naming it', async () => {
    const { bus } = frontBus();
    const error = await rejectionOf(a2aServer(bus, { agent: 'front', host: '127.0.0.1', port: 0, callers: { [TOKEN]: 'partner' }, maxConnections: 0 }));
    expect(error.message).toMatch(/^Invalid a2aServer options: maxConnections: /);
  });
});

describe('a2aServer(): options', () => {
  it('refuses an unknown option, naming it', async () => {
    const { bus } = frontBus();
    const error = await rejectionOf(a2aServer(bus, { agent: 'front', host: '127.0.0.1', port: 0, callers: { [TOKEN]: 'partner' }, prot: 1 } as never));
    expect(error.code).toBe('INVALID_ARGUMENT');
    expect(error.message).toContain('"prot"');
  });

  it('refuses a short token naming its caller, never the token', async () => {
    const { bus } = frontBus();
    const error = await rejectionOf(a2aServer(bus, { agent: 'front', host: '127.0.0.1', port: 0, callers: { 'short-secret': 'partner' } }));
    expect(error.code).toBe('INVALID_ARGUMENT');
    expect(error.message).toContain('"partner"');
    expect(error.message).not.toContain('short-secret');
  });

  it('refuses callers whose getter throws with INVALID_ARGUMENT, never the thrown value, and registers nothing', async () => {
    const { bus } = frontBus();
    const callers = Object.defineProperty({}, TOKEN, { enumerable: true, get: () => { throw new Error('gotcha'); } });
    const error = await rejectionOf(a2aServer(bus, { agent: 'front', host: '127.0.0.1', port: 0, callers }));
    expect([error.code, error.message]).toEqual(['INVALID_ARGUMENT', 'Invalid a2aServer options: cannot read callers: gotcha']);
    expect(() => bus.register('partner')).not.toThrow();
  });

  it('refuses a caller id that is already registered (DUPLICATE_AGENT) and registers nothing', async () => {
    const { bus } = frontBus();
    bus.register('other');
    const error = await rejectionOf(serve(bus));
    expect(error.code).toBe('DUPLICATE_AGENT');
    expect(bus.agents().map((a) => a.id).sort()).toEqual(['front', 'other']);
  });

  it('unregisters its stand-in agents on close', async () => {
    const { bus } = frontBus();
    const server = await serve(bus);
    expect(bus.agents().map((a) => a.id).sort()).toEqual(['front', 'other', 'partner']);
    await server.close();
    expect(bus.agents().map((a) => a.id)).toEqual(['front']);
  });
});

describe('a2aAgent()', () => {
  it("registers a bare SDK server's skills as intents: a data reply as its value, a text reply as the string, headers on every request", async () => {
    const bare = await bareSdkServer(['price', 'echo'], (skill, input) => (skill === 'price' ? { price: (input as { n: number }).n * 2 } : `echo ${String(input)}`));
    closers.push(bare.close);
    const bus = makeBus({ policies: [{ from: 'me', to: 'remote', allow: ['ask', 'delegate'] }] });
    const options = await a2aAgent({ card: `${bare.url}/.well-known/agent-card.json`, headers: { authorization: 'Bearer remote-secret' } });
    expect(Object.keys(options.handlers).sort()).toEqual(['echo', 'price']);
    bus.register('remote', options);
    const me = bus.register('me');
    expect(await me.ask('remote', 'price', { n: 21 })).toEqual({ price: 42 });
    const progress: (string | undefined)[] = [];
    expect(await me.delegate('remote', 'echo', 'hi').onProgress((p) => progress.push(p.note))).toBe('echo hi');
    expect(progress).toContain('working on it');
    expect(bare.seenAuth.length).toBeGreaterThan(2);
    expect(new Set(bare.seenAuth)).toEqual(new Set(['Bearer remote-secret']));
  });

  it('rejects with HANDLER_FAILED naming the remote state when the remote task fails', async () => {
    const bare = await bareSdkServer(['price'], () => {
      throw new Error('out of stock');
    });
    closers.push(bare.close);
    const bus = makeBus({ policies: [{ from: 'me', to: 'remote', allow: ['ask'] }] });
    bus.register('remote', await a2aAgent({ card: `${bare.url}/.well-known/agent-card.json` }));
    const error = await rejectionOf(bus.register('me').ask('remote', 'price', { n: 1 }));
    expect(error.code).toBe('HANDLER_FAILED');
    expect(error.message).toContain('TASK_STATE_FAILED');
    expect(error.message).toContain('out of stock');
  });

  it('fails with HANDLER_FAILED when the remote sends more than maxResponseBytes', async () => {
    const bare = await bareSdkServer(['big'], () => 'x'.repeat(64 * 1024));
    closers.push(bare.close);
    const bus = makeBus({ policies: [{ from: 'me', to: 'remote', allow: ['ask'] }] });
    bus.register('remote', await a2aAgent({ card: `${bare.url}/.well-known/agent-card.json`, maxResponseBytes: 16 * 1024 }));
    const error = await rejectionOf(bus.register('me').ask('remote', 'big', null));
    expect(error.code).toBe('HANDLER_FAILED');
    expect(error.message).toContain('maxResponseBytes');
  });

  it('refuses bad options and a skill the card lacks, naming them', async () => {
    expect((await rejectionOf(a2aAgent({ card: 'ftp://x/card.json' }))).message).toContain('card');
    expect((await rejectionOf(a2aAgent({ card: 'http://127.0.0.1:1/card.json', headers: { 'bad header': 'x' } }))).message).toContain('headers');
    const bare = await bareSdkServer(['price'], () => 1);
    closers.push(bare.close);
    const error = await rejectionOf(a2aAgent({ card: `${bare.url}/.well-known/agent-card.json`, skills: ['price', 'nope'] }));
    expect(error.code).toBe('INVALID_ARGUMENT');
    expect(error.message).toContain('"nope"');
  });
});

describe('a2aAgent() headers', () => {
  async function bareWithCard(): Promise<{ bare: Awaited<ReturnType<typeof bareSdkServer>>; cardJson: string }> {
    const bare = await bareSdkServer(['price'], (_skill, input) => ({ price: (input as { n: number }).n * 2 }));
    closers.push(bare.close);
    const cardJson = await (await fetch(`${bare.url}/.well-known/agent-card.json`)).text();
    bare.seenAuth.length = 0;
    return { bare, cardJson };
  }

  it("refuses a card whose endpoint is on another origin, naming both origins, and sends no header there", async () => {
    const { bare, cardJson } = await bareWithCard();
    const host = await cardHost(() => cardJson);
    closers.push(host.close);
    const error = await rejectionOf(a2aAgent({ card: `${host.url}/.well-known/agent-card.json`, headers: { authorization: 'Bearer secret' } }));
    expect(error.code).toBe('INVALID_ARGUMENT');
    expect(error.message).toContain(host.url);
    expect(error.message).toContain(bare.url);
    expect(error.message).toContain('allowOrigins');
    expect(bare.seenAuth).toEqual([]);
    expect(host.seenAuth).toEqual(['Bearer secret']);
  });

  it('sends the headers to an endpoint on another origin listed in allowOrigins', async () => {
    const { bare, cardJson } = await bareWithCard();
    const host = await cardHost(() => cardJson);
    closers.push(host.close);
    const bus = makeBus({ policies: [{ from: 'me', to: 'remote', allow: ['ask'] }] });
    bus.register('remote', await a2aAgent({ card: `${host.url}/.well-known/agent-card.json`, headers: { authorization: 'Bearer secret' }, allowOrigins: [bare.url] }));
    expect(await bus.register('me').ask('remote', 'price', { n: 4 })).toEqual({ price: 8 });
    expect(new Set(bare.seenAuth)).toEqual(new Set(['Bearer secret']));
  });

  it('refuses a redirect to another origin without sending the headers there', async () => {
    const { bare, cardJson } = await bareWithCard();
    const host = await cardHost((url) => cardJson.replaceAll(`${bare.url}/a2a/jsonrpc`, `${url}/rpc`), `${bare.url}/a2a/jsonrpc`);
    closers.push(host.close);
    const bus = makeBus({ policies: [{ from: 'me', to: 'remote', allow: ['ask'] }] });
    bus.register('remote', await a2aAgent({ card: `${host.url}/.well-known/agent-card.json`, headers: { authorization: 'Bearer secret' } }));
    const error = await rejectionOf(bus.register('me').ask('remote', 'price', { n: 4 }));
    expect(error.code).toBe('HANDLER_FAILED');
    expect(bare.seenAuth).toEqual([]);
  });

  it('refuses an allowOrigins entry that is not an origin', async () => {
    const error = await rejectionOf(a2aAgent({ card: 'http://127.0.0.1:1/card.json', allowOrigins: ['https://rpc.example/path'] }));
    expect(error.code).toBe('INVALID_ARGUMENT');
    expect(error.message).toContain('allowOrigins.0');
  });
});

describe('a2aAgent() calling a2aServer()', () => {
  it("carries one bus's ask to another bus's agent over A2A, with each bus's policy applied", async () => {
    const { bus: far } = frontBus();
    const server = await serve(far);
    const near = makeBus({ policies: [{ from: 'buyer', to: 'partner-front', allow: ['ask', 'delegate'], intents: ['quote', 'summarize'] }] });
    near.register('partner-front', await a2aAgent({ card: `${server.url}/.well-known/agent-card.json`, headers: { authorization: `Bearer ${TOKEN}` } }));
    const buyer = near.register('buyer');
    expect(await buyer.ask('partner-front', 'quote', { sku: 'abcd' })).toEqual({ price: 40 });
    const progress: number[] = [];
    expect(await buyer.delegate('partner-front', 'summarize', 'q3').onProgress((p) => progress.push(p.fraction))).toBe('summary of q3');
    expect(progress).toContain(0.5);
    // The near bus denies what its policy does not allow: nothing crosses.
    expect((await rejectionOf(buyer.delegate('partner-front', 'buy', { sku: 'x', qty: 1 }))).code).toBe('POLICY_DENIED');
    // The far bus decides too: a caller it does not allow is rejected there.
    const stranger = makeBus({ policies: [{ from: 'buyer', to: 'front-as-other', allow: ['ask'] }] });
    stranger.register('front-as-other', await a2aAgent({ card: `${server.url}/.well-known/agent-card.json`, headers: { authorization: `Bearer ${OTHER_TOKEN}` } }));
    const error = await rejectionOf(stranger.register('buyer').ask('front-as-other', 'quote', { sku: 'a' }));
    expect(error.code).toBe('HANDLER_FAILED');
    expect(error.message).toContain('TASK_STATE_REJECTED: POLICY_DENIED');
    expect(far.getMessageLog({ agentId: 'other' })).toMatchObject([{ decision: 'denied', code: 'POLICY_DENIED' }]);
  });
});
