// a2aServer: one bus agent served over A2A (JSON-RPC over HTTP, with SSE streaming). The
// SDK's request handler and JSON-RPC transport handler speak the protocol; this file only
// authenticates (bearer token → the caller's stand-in agent), bounds the request, answers a
// body that is not one JSON-RPC request, and moves bytes between node:http and the SDK.
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { A2A_VERSION_HEADER, AGENT_CARD_PATH, Extensions, formatSSEErrorEvent, formatSSEEvent, HTTP_EXTENSION_HEADER, SSE_HEADERS } from '@a2a-js/sdk';
import { UnsupportedOperationError } from '@a2a-js/sdk/errors';
import { defaultServerCallContextBuilder, JsonRpcTransportHandler, validateVersion, type User } from '@a2a-js/sdk/server';
import { z } from 'zod';
import type { Agent } from '../agent.js';
import type { Contracts } from '../contracts.js';
import { BusError, describe, toBusError } from '../errors.js';
import type { BusEventSource } from '../events.js';
import { AGENT_ID_PATTERN } from '../ids.js';
import { parseOptions } from '../options-schema.js';
import { buildCard, cardJson, skillsOf, type CardOverrides } from './card.js';
import { BusExecutor } from './executor.js';
import { OneMessageTasks } from './request-handler.js';
import { SseWriter } from './sse-writer.js';
import { BoundedTaskStore } from './task-store.js';
import { readBody } from '../http-body.js';

/** What a2aServer needs of an `Orchestrator`: stand-in agents, approval events and the contracts. */
export interface A2aBus {
  register(id: string): Agent;
  unregister(id: string): boolean;
  readonly events: BusEventSource;
  readonly contracts?: Contracts | undefined;
}

/** Options of {@link a2aServer}. */
export interface A2aServerOptions {
  /** The bus agent the A2A peers call: every task is an ask or delegate to it. */
  readonly agent: string;
  /** Interface to bind. Anything but loopback exposes the agent to the network. */
  readonly host: string;
  /** TCP port; 0 picks a free one. */
  readonly port: number;
  /**
   * Bearer token → the caller's agent id. Each id is registered on the bus as a stand-in
   * agent (it must not be registered already) and is the `from` of what that caller sends.
   * Tokens are secrets of 16 to 512 visible ASCII characters (what an HTTP header carries).
   */
  readonly callers: Readonly<Record<string, string>>;
  /** Name, description, version and provider of the card. @default from the agent id */
  readonly card?: CardOverrides;
  /** Where the skills' types and schemas come from. @default the bus's contracts */
  readonly contracts?: Contracts;
  /** Only these intents become skills. @default every ask and delegate contract */
  readonly skills?: readonly string[];
  /** Deadline of each task's send. @default the bus's `timeouts.askMs` / `delegateMs` */
  readonly timeoutMs?: number;
  /** Largest request body, in bytes (413 beyond). @default 1048576 */
  readonly maxBodyBytes?: number;
  /** Tasks remembered for tasks/get and tasks/cancel (the oldest go first). @default 10000 */
  readonly maxTasks?: number;
  /** Bytes of remembered tasks at most (each keeps the caller's message and the reply; the oldest go first). @default 67108864 */
  readonly maxTaskBytes?: number;
  /**
   * Bytes of a stream's events waiting for a slow reader at most (beyond what the socket
   * buffers): beyond, that stream is closed; its task goes on and tasks/get reads it.
   * @default 1048576
   */
  readonly maxStreamBufferBytes?: number;
  /** Open connections at most, authenticated or not: one beyond is closed at once. @default 1024 */
  readonly maxConnections?: number;
  /** The URL peers reach this server at, when it sits behind a proxy. @default `http://host:port` */
  readonly publicUrl?: string;
}

/** A running A2A server. */
export interface A2aServerHandle {
  /** `http://host:port` (or `publicUrl`): the card is at `${url}/.well-known/agent-card.json`. */
  readonly url: string;
  /** Stops listening, cancels running tasks, unregisters the stand-in agents. Idempotent. */
  close(): Promise<void>;
}

/** The JSON-RPC endpoint, below the server's URL. */
export const RPC_PATH = '/a2a/jsonrpc';

const cardSchema = z.strictObject({
  name: z.string().min(1).max(256).optional(),
  description: z.string().max(4096).optional(),
  version: z.string().min(1).max(64).optional(),
  provider: z.strictObject({ organization: z.string().min(1).max(256), url: z.url() }).optional(),
  documentationUrl: z.url().optional(),
  iconUrl: z.url().optional(),
});
const optionsSchema = z.strictObject({
  agent: z.string().regex(AGENT_ID_PATTERN, 'must be an agent id'),
  host: z.string().min(1).max(255),
  port: z.number().int().min(0).max(65535),
  // Checked by hand below: an issue's path would print the token, a secret.
  callers: z.custom<Record<string, string>>((v) => typeof v === 'object' && v !== null && !Array.isArray(v), 'must be an object of bearer token → agent id'),
  card: cardSchema.optional(),
  contracts: z.custom<Contracts>((v) => typeof v === 'object' && v !== null, 'must be the contracts object').optional(),
  skills: z.array(z.string().min(1).max(256)).min(1).max(256).optional(),
  timeoutMs: z.number().int().positive().max(2_147_483_647).optional(),
  maxBodyBytes: z.number().int().min(1024).max(64 * 1024 * 1024).optional(),
  maxTasks: z.number().int().min(1).max(10_000_000).optional(),
  maxTaskBytes: z.number().int().min(1024).max(2 ** 40).optional(),
  maxStreamBufferBytes: z.number().int().min(1024).max(1 << 30).optional(),
  maxConnections: z.number().int().min(1).max(1_000_000).optional(),
  publicUrl: z.url().optional(),
});

/** The authenticated caller, as the SDK's request context carries it. */
class Caller implements User {
  readonly #id: string;
  constructor(id: string) {
    this.#id = id;
  }
  get isAuthenticated(): boolean {
    return true;
  }
  get userName(): string {
    return this.#id;
  }
}

/**
 * Serves `agent` of `bus` to A2A peers: an agent card (public) whose skills are the agent's
 * ask and delegate contracts, and the JSON-RPC endpoint (bearer token required). Each
 * caller is a stand-in agent on the bus, so the default-deny policy, rate buckets,
 * approvals and the audit log apply to it as to any agent. A client names the skill it
 * calls in `message.metadata.skill`.
 *
 * @example
 * const server = await a2aServer(bus, { agent: 'front', host: '127.0.0.1', port: 0,
 *   callers: { [process.env.PARTNER_TOKEN!]: 'partner-x' } });
 * console.log(`${server.url}/.well-known/agent-card.json`);
 */
export async function a2aServer(bus: A2aBus, options: A2aServerOptions): Promise<A2aServerHandle> {
  const o = parseOptions(optionsSchema, options, 'a2aServer');
  if (typeof bus?.register !== 'function' || typeof bus.unregister !== 'function' || typeof bus.events?.on !== 'function') {
    throw new BusError('INVALID_ARGUMENT', 'a2aServer(): bus must be an Orchestrator');
  }
  const tokens = callerTable(o.callers, o.agent);
  const contracts = o.contracts ?? bus.contracts;
  if (contracts === undefined) throw new BusError('INVALID_ARGUMENT', 'Invalid a2aServer options: contracts: the bus has none and options.contracts is not given (skills come from ask and delegate contracts)');
  const skills = skillsOf(contracts, o.skills);
  if (skills.length === 0) throw new BusError('INVALID_ARGUMENT', `Invalid a2aServer options: contracts: no ask or delegate contract to offer as a skill of ${o.agent}`);
  const maxBody = o.maxBodyBytes ?? 1_048_576;
  const maxStreamBuffer = o.maxStreamBufferBytes ?? 1_048_576;

  // Stand-ins first: a taken id fails here, before anything listens.
  const stand = new Map<string, Agent>();
  try {
    for (const id of new Set(tokens.values())) stand.set(id, bus.register(id));
  } catch (error) {
    for (const id of stand.keys()) bus.unregister(id);
    throw error;
  }

  const executor = new BusExecutor({ agent: o.agent, callers: stand, skills: new Map(skills.map((s) => [s.id, s])), events: bus.events, timeoutMs: o.timeoutMs });
  const server = createServer();
  server.headersTimeout = 10_000;
  server.requestTimeout = 60_000;
  // Each socket costs a file descriptor and buffers whether or not it ever authenticates: bounded.
  server.maxConnections = o.maxConnections ?? 1024;
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(o.port, o.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (error) {
    executor.close();
    for (const id of stand.keys()) bus.unregister(id);
    throw new BusError('INVALID_ARGUMENT', `a2aServer(): cannot listen on ${o.host}:${o.port}: ${(error as Error).message}`, { cause: error });
  }
  const port = (server.address() as AddressInfo).port;
  const url = (o.publicUrl ?? `http://${o.host.includes(':') ? `[${o.host}]` : o.host}:${port}`).replace(/\/+$/, '');
  const card = buildCard(o.agent, `${url}${RPC_PATH}`, skills, (o.card ?? {}) as CardOverrides);
  const cardBody = JSON.stringify(cardJson(card));
  const requestHandler = new OneMessageTasks(card, new BoundedTaskStore(o.maxTasks ?? 10_000, o.maxTaskBytes ?? 64 * 1024 * 1024), executor);
  const transport = new JsonRpcTransportHandler(requestHandler);

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const path = (req.url ?? '/').split('?')[0];
    if (path === `/${AGENT_CARD_PATH}` || path === AGENT_CARD_PATH) {
      if (req.method !== 'GET' && req.method !== 'HEAD') return plain(res, 405, 'use GET', { Allow: 'GET' });
      res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(cardBody), 'Cache-Control': 'public, max-age=300' });
      return void res.end(req.method === 'HEAD' ? undefined : cardBody);
    }
    // Everything else authenticates first: no token, no work (and nothing reaches the bus).
    const caller = tokens.get(digestOf(bearerOf(req)));
    // Closed after the answer: an unauthenticated peer keeps no socket (maxConnections is shared).
    if (caller === undefined) return plain(res, 401, 'a valid bearer token is required', { 'WWW-Authenticate': 'Bearer', Connection: 'close' });
    if (path !== RPC_PATH) return plain(res, 404, 'not found');
    if (req.method !== 'POST') return plain(res, 405, 'use POST', { Allow: 'POST' });
    const body = await readBody(req, maxBody);
    if (body === undefined) return plain(res, 413, `request body over ${maxBody} bytes`, { Connection: 'close' });
    await serveRpc(req, res, body, caller);
  };

  const serveRpc = async (req: IncomingMessage, res: ServerResponse, body: string, caller: string): Promise<void> => {
    const parsed = parseEnvelope(body);
    if ('error' in parsed) return json(res, 200, parsed.error);
    const version = headerOf(req, A2A_VERSION_HEADER);
    const context = defaultServerCallContextBuilder({
      extensions: Extensions.parseServiceParameter(headerOf(req, HTTP_EXTENSION_HEADER)),
      user: new Caller(caller),
      headers: req.headers,
      ...(version !== undefined ? { requestedVersion: version } : {}),
    });
    // One task space per caller: the SDK keeps a table per tenant (never emptied) and keys
    // running tasks by it while our store does not, so a named tenant is refused.
    context.setTenant = (tenant: string | undefined) => {
      if (tenant !== undefined && tenant !== '') throw new UnsupportedOperationError('this server has no tenants: send tenant empty');
    };
    let reply: Awaited<ReturnType<JsonRpcTransportHandler['handle']>>;
    try {
      validateVersion(context.requestedVersion, card, 'JSONRPC');
      // Handed over parsed: the SDK takes an object as it is, so the body is parsed once.
      reply = await transport.handle(parsed.request, context);
    } catch (error) {
      return json(res, 200, rpcError(body, error));
    }
    if (!isAsyncIterable(reply)) return json(res, 200, withoutInternals(reply));
    // A stream: a refusal before its first event is a plain JSON-RPC error; then SSE until
    // the task ends. A client that goes away stops the writes, not the reading: the SDK
    // records the task's states as it reads them, so tasks/get stays true.
    let first: IteratorResult<unknown, void>;
    try {
      first = await reply.next();
    } catch (error) {
      return json(res, 200, rpcError(body, error));
    }
    res.writeHead(200, SSE_HEADERS);
    const stream = new SseWriter(res, maxStreamBuffer);
    try {
      for (let next = first; next.done !== true; next = await reply.next()) stream.write(formatSSEEvent(next.value));
    } catch (error) {
      stream.write(formatSSEErrorEvent(rpcError(body, error)));
    }
    stream.end();
  };

  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    handle(req, res).catch(() => {
      // Nothing of the request goes to a log: its text is the caller's.
      if (!res.headersSent) plain(res, 500, 'internal error');
      else res.destroy();
    });
  });

  let closing: Promise<void> | undefined;
  return {
    url,
    close() {
      closing ??= new Promise<void>((resolve) => {
        executor.close();
        server.close(() => {
          for (const id of stand.keys()) bus.unregister(id);
          resolve();
        });
        server.closeAllConnections();
      });
      return closing;
    },
  };
}

/** sha256(token) → caller id, after checking each entry (tokens never appear in errors). */
function callerTable(callers: Record<string, string>, agent: string): Map<string, string> {
  const table = new Map<string, string>();
  let entries: [string, unknown][];
  try {
    entries = Object.entries(callers);
  } catch (error) {
    // A getter or a Proxy trap of the caller's object: refused, never thrown through.
    throw toBusError(error, 'INVALID_ARGUMENT', undefined, 'Invalid a2aServer options: cannot read callers: ');
  }
  if (entries.length === 0) throw new BusError('INVALID_ARGUMENT', 'Invalid a2aServer options: callers is empty: give at least one bearer token → agent id');
  if (entries.length > 10_000) throw new BusError('INVALID_ARGUMENT', 'Invalid a2aServer options: callers has more than 10000 tokens');
  for (const [token, id] of entries) {
    if (typeof id !== 'string' || !AGENT_ID_PATTERN.test(id)) throw new BusError('INVALID_ARGUMENT', `Invalid a2aServer options: callers: ${describe(id)} is not an agent id`);
    if (id === agent) throw new BusError('INVALID_ARGUMENT', `Invalid a2aServer options: callers: "${id}" is the served agent itself; a caller needs its own id`);
    if (token.length < 16 || token.length > 512) throw new BusError('INVALID_ARGUMENT', `Invalid a2aServer options: callers: the token of "${id}" must be 16 to 512 characters, got ${token.length}`);
    // A header carries visible ASCII only: any other token could never be sent, so never match.
    if (!/^[\x21-\x7e]+$/.test(token)) throw new BusError('INVALID_ARGUMENT', `Invalid a2aServer options: callers: the token of "${id}" must be visible ASCII (no whitespace, control or non-ASCII character)`);
    table.set(digestOf(token), id);
  }
  return table;
}

// Looked up by digest: the compare runs on hashes, so its timing says nothing of the token.
function digestOf(token: string | undefined): string {
  return token === undefined ? '' : createHash('sha256').update(token, 'utf8').digest('base64');
}

function bearerOf(req: IncomingMessage): string | undefined {
  const auth = req.headers.authorization;
  if (typeof auth !== 'string' || auth.length > 1024) return undefined;
  const match = /^Bearer[ ]+(\S+)\s*$/i.exec(auth);
  return match?.[1];
}

function headerOf(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name.toLowerCase()];
  return Array.isArray(value) ? value.join(',') : value;
}

/** A JSON-RPC error response for a request that failed before or while the SDK ran it. */
function rpcError(body: string, error: unknown): unknown {
  let id: unknown = null;
  try {
    const parsed = JSON.parse(body) as { id?: unknown };
    if (typeof parsed.id === 'string' || typeof parsed.id === 'number') id = parsed.id;
  } catch {
    id = null;
  }
  const mapped = JsonRpcTransportHandler.mapToJSONRPCError(error);
  // Code and message only: the SDK's details may carry internals.
  return withoutInternals({ jsonrpc: '2.0', id, error: { code: mapped.code, message: mapped.message } });
}

/**
 * The body as one JSON-RPC request object, or the JSON-RPC error JSON-RPC 2.0 and A2A give it
 * (the SDK answers both as invalid params): not JSON is a parse error (-32700), JSON that is
 * not one request object is an invalid request (-32600).
 */
function parseEnvelope(body: string): { request: Record<string, unknown> } | { error: unknown } {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    return { error: { jsonrpc: '2.0', id: null, error: { code: -32700, message: 'parse error: the body is not JSON' } } };
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    return { error: { jsonrpc: '2.0', id: null, error: { code: -32600, message: 'invalid request: one JSON-RPC request object is served (no batches)' } } };
  }
  const request = parsed as Record<string, unknown>;
  const { jsonrpc, method, id } = request;
  if (jsonrpc !== '2.0' || typeof method !== 'string' || (id !== undefined && id !== null && typeof id !== 'string' && typeof id !== 'number')) {
    const echoed = typeof id === 'string' || typeof id === 'number' ? id : null;
    return { error: { jsonrpc: '2.0', id: echoed, error: { code: -32600, message: 'invalid request: jsonrpc must be "2.0", method a string, id a string, a number or null' } } };
  }
  return { request };
}

/** JSON-RPC's "internal error": its message is a thrown error's own text (a TypeError's, naming our code). */
const INTERNAL_ERROR = -32603;

/** `reply`, with the message of an internal error replaced: the caller learns that it failed, not where. */
function withoutInternals<T>(reply: T): T {
  const error = (reply as { error?: { code?: unknown } } | null)?.error;
  if (typeof error !== 'object' || error === null || error.code !== INTERNAL_ERROR) return reply;
  return { ...reply, error: { code: INTERNAL_ERROR, message: 'internal error' } };
}

function isAsyncIterable(value: unknown): value is AsyncGenerator<unknown, void, undefined> {
  return typeof value === 'object' && value !== null && typeof (value as { [Symbol.asyncIterator]?: unknown })[Symbol.asyncIterator] === 'function';
}

function json(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

function plain(res: ServerResponse, status: number, text: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

