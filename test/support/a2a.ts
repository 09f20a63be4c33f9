// Helpers for the A2A tests: the SDK's own client with a bearer token, a message naming a
// skill, and a bare @a2a-js/sdk server (express + the SDK's handlers) to call.
import { randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Role, TaskState, type AgentCard, type Message, type Part, type SendMessageRequest } from '@a2a-js/sdk';
import { ClientFactory, ClientFactoryOptions, JsonRpcTransportFactory, type Client } from '@a2a-js/sdk/client';
import { AgentEvent, DefaultRequestHandler, InMemoryTaskStore, type AgentExecutor } from '@a2a-js/sdk/server';
import { agentCardHandler, jsonRpcHandler, UserBuilder } from '@a2a-js/sdk/server/express';
import express from 'express';

/** The SDK's client for the card at `url`, sending `token` as a bearer token when given. */
export async function sdkClient(url: string, token?: string): Promise<Client> {
  const fetchImpl: typeof fetch = (input, init) => {
    const headers = new Headers(init?.headers);
    if (token !== undefined) headers.set('authorization', `Bearer ${token}`);
    return fetch(input, { ...init, headers });
  };
  const factory = new ClientFactory(ClientFactoryOptions.createFrom(ClientFactoryOptions.default, { transports: [new JsonRpcTransportFactory({ fetchImpl })] }));
  return factory.createFromUrl(url);
}

export function dataPart(value: unknown): Part {
  return { content: { $case: 'data', value }, metadata: undefined, filename: '', mediaType: 'application/json' };
}

export function textPart(value: string): Part {
  return { content: { $case: 'text', value }, metadata: undefined, filename: '', mediaType: 'text/plain' };
}

/** A send request whose message names `skill` in its metadata. */
export function request(skill: string | undefined, parts: Part[], returnImmediately = false): SendMessageRequest {
  const message: Message = {
    messageId: randomUUID(),
    contextId: '',
    taskId: '',
    role: Role.ROLE_USER,
    parts,
    metadata: skill === undefined ? {} : { skill },
    extensions: [],
    referenceTaskIds: [],
  };
  return { tenant: '', message, configuration: returnImmediately ? { acceptedOutputModes: [], taskPushNotificationConfig: undefined, returnImmediately: true } : undefined, metadata: undefined };
}

/** The text of a status message. */
export function statusText(message: Message | undefined): string {
  return (message?.parts ?? []).map((p) => (p.content?.$case === 'text' ? p.content.value : '')).join('');
}

/**
 * The executor of a bare SDK agent: each skill answers from `answer(skill, input)`, a value
 * (completed, as a data or text artifact) or a thrown error (failed, its message in the
 * status), with the task, working status, artifact and final status the SDK's sample agent
 * publishes.
 */
export function bareExecutor(answer: (skill: string, input: unknown) => unknown = (_skill, input) => input): { executor: AgentExecutor } {
  const executor: AgentExecutor = {
    async execute(ctx, bus) {
      const { taskId, contextId } = ctx;
      bus.publish(AgentEvent.task({ id: taskId, contextId, status: { state: TaskState.TASK_STATE_SUBMITTED, message: undefined, timestamp: new Date().toISOString() }, artifacts: [], history: [ctx.userMessage], metadata: undefined }));
      const skill = String(ctx.userMessage.metadata?.['skill']);
      const part = ctx.userMessage.parts[0]?.content;
      const input = part?.$case === 'data' || part?.$case === 'text' ? part.value : undefined;
      const status = (state: TaskState, text?: string) =>
        bus.publish(
          AgentEvent.statusUpdate({
            taskId,
            contextId,
            status: { state, timestamp: new Date().toISOString(), message: text === undefined ? undefined : { messageId: randomUUID(), contextId, taskId, role: Role.ROLE_AGENT, parts: [textPart(text)], metadata: undefined, extensions: [], referenceTaskIds: [] } },
            metadata: undefined,
          }),
        );
      status(TaskState.TASK_STATE_WORKING, 'working on it');
      try {
        const value = await answer(skill, input);
        bus.publish(AgentEvent.artifactUpdate({ taskId, contextId, artifact: { artifactId: 'a1', name: 'answer', description: '', parts: [typeof value === 'string' ? textPart(value) : dataPart(value)], metadata: undefined, extensions: [] }, append: false, lastChunk: true, metadata: undefined }));
        status(TaskState.TASK_STATE_COMPLETED);
      } catch (error) {
        status(TaskState.TASK_STATE_FAILED, (error as Error).message);
      }
    },
    async cancelTask(taskId, bus) {
      bus.publish(AgentEvent.statusUpdate({ taskId, contextId: '', status: { state: TaskState.TASK_STATE_CANCELED, message: undefined, timestamp: new Date().toISOString() }, metadata: undefined }));
    },
  };
  return { executor };
}

/** The card of a bare SDK agent at `url` (JSON-RPC at `${url}/a2a/jsonrpc`, streaming, no security). */
export function bareCard(url: string, skills: readonly string[]): AgentCard {
  return {
    name: 'bare',
    description: 'a bare SDK agent',
    version: '1.0.0',
    supportedInterfaces: [{ url: `${url}/a2a/jsonrpc`, protocolBinding: 'JSONRPC', tenant: '', protocolVersion: '1.0' }],
    provider: undefined,
    capabilities: { streaming: true, pushNotifications: false, extensions: [] },
    securitySchemes: {},
    securityRequirements: [],
    defaultInputModes: ['application/json'],
    defaultOutputModes: ['application/json'],
    skills: skills.map((id) => ({ id, name: id, description: id, tags: [], examples: [], inputModes: [], outputModes: [], securityRequirements: [] })),
    signatures: [],
  };
}

/** A bare @a2a-js/sdk server on express (the SDK's own handlers), no bus, no auth; see {@link bareExecutor}. */
export async function bareSdkServer(
  skills: readonly string[],
  answer: (skill: string, input: unknown) => unknown,
): Promise<{ url: string; close(): Promise<void>; seenAuth: string[] }> {
  const seenAuth: string[] = [];
  const { executor } = bareExecutor(answer);
  const app = express();
  app.use((req, _res, next) => {
    seenAuth.push(String(req.headers.authorization ?? ''));
    next();
  });
  const { url, close } = await onLoopback(app.listen(0, '127.0.0.1'));
  const handler = new DefaultRequestHandler(bareCard(url, skills), new InMemoryTaskStore(), executor);
  app.use('/.well-known/agent-card.json', agentCardHandler({ agentCardProvider: handler }));
  app.use('/a2a/jsonrpc', jsonRpcHandler({ requestHandler: handler, userBuilder: UserBuilder.noAuthentication }));
  return { url, seenAuth, close };
}

/**
 * A plain HTTP server on its own origin that serves `card` (JSON text made from the URL it
 * listens on) and answers `/rpc` with a 307 redirect to `redirectTo` when given; records the
 * authorization header of each request.
 */
export async function cardHost(card: (url: string) => string, redirectTo?: string): Promise<{ url: string; close(): Promise<void>; seenAuth: string[] }> {
  const seenAuth: string[] = [];
  const server = createServer((req, res) => {
    seenAuth.push(String(req.headers.authorization ?? ''));
    if (req.url === '/.well-known/agent-card.json') res.writeHead(200, { 'content-type': 'application/json' }).end(card(url));
    else if (req.url === '/rpc' && redirectTo !== undefined) res.writeHead(307, { location: redirectTo }).end();
    else res.writeHead(404).end();
  });
  const { url, close } = await onLoopback(server.listen(0, '127.0.0.1'));
  return { url, seenAuth, close };
}

/** Waits until `server` listens; its URL, and a close() that also ends open connections. */
async function onLoopback(server: Server): Promise<{ url: string; close(): Promise<void> }> {
  await new Promise<void>((resolve) => server.once('listening', () => resolve()));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const close = () =>
    new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  return { url, close };
}
