// a2aAgent: a remote A2A agent as handlers of a local agent. Its card is read once; each of
// its skills becomes an intent whose handler calls the remote with the SDK's client.
import { randomUUID } from 'node:crypto';
import { Role, TaskState, type AgentCard, type Artifact, type Message, type Task, type TaskStatus } from '@a2a-js/sdk';
import { ClientFactory, ClientFactoryOptions, DefaultAgentCardResolver, JsonRpcTransportFactory, RestTransportFactory, type Client } from '@a2a-js/sdk/client';
import { z } from 'zod';
import { BusError } from '../errors.js';
import { parseOptions } from '../options-schema.js';
import type { Handler, HandlerContext } from '../types.js';
import { partOf, valueOfParts } from './parts.js';
import { stateName } from './task-states.js';

/** Options of {@link a2aAgent}. */
export interface A2aAgentOptions {
  /** The URL of the remote agent card (`https://…/.well-known/agent-card.json`). */
  readonly card: string;
  /**
   * Headers sent with every request to the card's origin, the card's own request included
   * (e.g. `authorization: Bearer …`), and to the origins of {@link A2aAgentOptions.allowOrigins}.
   */
  readonly headers?: Readonly<Record<string, string>>;
  /**
   * Origins other than the card's (`https://rpc.example.com`) that the card may name as its
   * endpoints and that receive `headers`. A card whose endpoint is on an origin neither the
   * card's nor listed here is refused, and so is a redirect to such an origin.
   * @default [] (the card's origin only)
   */
  readonly allowOrigins?: readonly string[];
  /** Only these skills become intents. @default every skill of the card */
  readonly skills?: readonly string[];
  /** Skills on a card at most (INVALID_ARGUMENT beyond). @default 256 */
  readonly maxSkills?: number;
  /** Bytes of one response (the card, a reply, a whole stream) read at most; beyond, the call fails. @default 16777216 */
  readonly maxResponseBytes?: number;
  /** Milliseconds the card's request may take, its body included; beyond, a2aAgent() is refused. @default 10000 */
  readonly cardTimeoutMs?: number;
}

/** What `bus.register(id, …)` takes: one handler per skill of the remote card. */
export interface A2aAgentRegistration {
  readonly handlers: Record<string, Handler>;
  readonly capabilities: readonly string[];
}

const optionsSchema = z.strictObject({
  card: z.url({ protocol: /^https?$/ }),
  headers: z.record(z.string().regex(/^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,256}$/, 'must be an HTTP header name'), z.string().max(8192).regex(/^[^\r\n\0]*$/, 'must not contain line breaks')).optional(),
  allowOrigins: z
    .array(z.url({ protocol: /^https?$/ }).refine((u) => new URL(u).origin === u.replace(/\/$/, ''), 'must be an origin (scheme://host[:port]) without a path'))
    .max(1024)
    .optional(),
  skills: z.array(z.string().min(1).max(256)).min(1).max(1024).optional(),
  maxSkills: z.number().int().min(1).max(100_000).optional(),
  maxResponseBytes: z.number().int().min(1024).max(1 << 30).optional(),
  cardTimeoutMs: z.number().int().positive().max(2_147_483_647).optional(),
});

/** The fields of a remote card that a2aAgent reads, as the A2A JSON has them. */
const cardShape = z.looseObject({
  skills: z.array(z.looseObject({ id: z.string().min(1).max(256) })),
  supportedInterfaces: z.array(z.looseObject({ url: z.string(), protocolBinding: z.string() })).optional(),
  capabilities: z.looseObject({ streaming: z.boolean().optional() }).optional(),
});

const TERMINAL: ReadonlySet<TaskState> = new Set([TaskState.TASK_STATE_COMPLETED, TaskState.TASK_STATE_FAILED, TaskState.TASK_STATE_CANCELED, TaskState.TASK_STATE_REJECTED]);
/** States in which the remote waits for something a bus message cannot give. */
const STOPPED: ReadonlySet<TaskState> = new Set([TaskState.TASK_STATE_INPUT_REQUIRED, TaskState.TASK_STATE_AUTH_REQUIRED]);

/**
 * Reads a remote A2A agent's card and returns register options whose handlers call it:
 * one intent per skill (the skill id), the payload sent as one part (a string as text,
 * anything else as data) with `message.metadata.skill` naming the skill. The reply is the
 * final artifact's value (one data part → its data, one text part → the string, several
 * → an array); a remote task that does not complete is HANDLER_FAILED naming its state.
 * Streams when the remote supports it; its status updates become `ctx.progress` reports.
 *
 * @example
 * bus.register('remote-research', await a2aAgent({ card: 'https://research.example/.well-known/agent-card.json',
 *   headers: { authorization: `Bearer ${process.env.REMOTE_TOKEN}` } }));
 */
export async function a2aAgent(options: A2aAgentOptions): Promise<A2aAgentRegistration> {
  const o = parseOptions(optionsSchema, options, 'a2aAgent');
  const extra = o.headers ?? {};
  const maxResponseBytes = o.maxResponseBytes ?? 16 * 1024 * 1024;
  const cardOrigin = new URL(o.card).origin;
  // `headers` often hold a bearer token: they go to the origins the caller named (the card's
  // and allowOrigins), never to one the remote names (its card's endpoints, a redirect).
  const allowed = new Set([cardOrigin, ...(o.allowOrigins ?? []).map((u) => new URL(u).origin)]);
  // The remote is not trusted to be small: every response body is counted as it is read.
  const fetchImpl: typeof fetch = async (input, init) => {
    const response = await fetchAllowed(input instanceof Request ? input.url : String(input), init, extra, allowed);
    return response.body === null ? response : new Response(capped(response.body, maxResponseBytes), { status: response.status, statusText: response.statusText, headers: response.headers });
  };
  let card: AgentCard;
  // A remote that takes the connection and never answers would hold the app's start-up.
  const cardTimeoutMs = o.cardTimeoutMs ?? 10_000;
  const deadline = new AbortController();
  const timer = setTimeout(() => deadline.abort(new Error(`no card within ${cardTimeoutMs} ms (cardTimeoutMs)`)), cardTimeoutMs);
  try {
    card = await new DefaultAgentCardResolver({ fetchImpl: (input, init) => fetchImpl(input, { ...init, signal: deadline.signal }) }).resolve(o.card, '');
  } catch (error) {
    const reason = deadline.signal.aborted ? (deadline.signal.reason as Error) : (error as Error);
    throw new BusError('INVALID_ARGUMENT', `a2aAgent(): cannot read the agent card at ${o.card}: ${reason.message}`, { cause: error });
  } finally {
    clearTimeout(timer);
  }
  // The SDK hands the remote's JSON back as it came: the fields read here are checked first,
  // so a card of the wrong shape is a refusal naming it, never a TypeError from deep inside.
  const shape = cardShape.safeParse(card);
  if (!shape.success) {
    const issue = shape.error.issues[0]!;
    throw new BusError('INVALID_ARGUMENT', `a2aAgent(): the agent card at ${o.card} is not an A2A card: ${issue.path.join('.') || 'the card'}: ${issue.message}`);
  }
  for (const endpoint of card.supportedInterfaces ?? []) {
    if (!USED_BINDINGS.has(endpoint.protocolBinding.toUpperCase())) continue;
    let origin: string;
    try {
      origin = new URL(endpoint.url).origin;
    } catch (error) {
      throw new BusError('INVALID_ARGUMENT', `a2aAgent(): the card at ${o.card} names an endpoint that is not a URL: ${JSON.stringify(endpoint.url.slice(0, 200))}`, { cause: error });
    }
    if (!allowed.has(origin)) {
      throw new BusError(
        'INVALID_ARGUMENT',
        `a2aAgent(): the card at ${o.card} (origin ${cardOrigin}) names its ${endpoint.protocolBinding} endpoint on origin ${JSON.stringify(origin.slice(0, 200))}: headers go to the card's origin only; list that origin in options.allowOrigins to call it`,
      );
    }
  }
  const maxSkills = o.maxSkills ?? 256;
  if (card.skills.length > maxSkills) throw new BusError('INVALID_ARGUMENT', `a2aAgent(): the card at ${o.card} lists more than ${maxSkills} skills (maxSkills): choose some with options.skills`);
  const offered = new Set(card.skills.map((s) => s.id));
  const wanted = o.skills ?? [...offered];
  const missing = wanted.filter((id) => !offered.has(id));
  if (missing.length > 0) throw new BusError('INVALID_ARGUMENT', `a2aAgent(): the card at ${o.card} has no skill ${missing.map((s) => JSON.stringify(s)).join(', ')}`);
  const factory = new ClientFactory(
    ClientFactoryOptions.createFrom(ClientFactoryOptions.default, { transports: [new JsonRpcTransportFactory({ fetchImpl }), new RestTransportFactory({ fetchImpl })] }),
  );
  let client: Client;
  try {
    client = await factory.createFromAgentCard(card);
  } catch (error) {
    throw new BusError('INVALID_ARGUMENT', `a2aAgent(): no transport of the card at ${o.card} can be used: ${(error as Error).message}`, { cause: error });
  }
  const streaming = card.capabilities?.streaming === true;
  const handlers: Record<string, Handler> = Object.create(null) as Record<string, Handler>;
  for (const skill of wanted) handlers[skill] = (payload, ctx) => call(client, streaming, skill, payload, ctx);
  return { handlers, capabilities: ['a2a'] };
}

/** The bindings of the transports a2aAgent's client is built with. */
const USED_BINDINGS: ReadonlySet<string> = new Set(['JSONRPC', 'HTTP+JSON']);
/** Redirects followed at most per request (the fetch standard's own limit). */
const MAX_REDIRECTS = 20;

/**
 * `fetch` with `extra` headers, following redirects by hand so that each hop is checked:
 * a hop to an origin outside `allowed` is refused (fetch itself would carry custom headers
 * across origins), and so is a first request to one.
 */
async function fetchAllowed(url: string, init: RequestInit | undefined, extra: Readonly<Record<string, string>>, allowed: ReadonlySet<string>): Promise<Response> {
  let target = new URL(url);
  let request: RequestInit = { ...init };
  for (let hop = 0; ; hop++) {
    if (!allowed.has(target.origin)) {
      throw new Error(`a2aAgent refuses to send its headers to ${target.origin}${hop === 0 ? '' : ' (a redirect)'}: not the card's origin nor in allowOrigins`);
    }
    const headers = new Headers(request.headers);
    for (const [name, value] of Object.entries(extra)) headers.set(name, value);
    const response = await fetch(target, { ...request, headers, redirect: 'manual' });
    const location = response.headers.get('location');
    if (response.status < 300 || response.status > 399 || location === null) return response;
    await response.body?.cancel();
    if (hop >= MAX_REDIRECTS) throw new Error(`a2aAgent: more than ${MAX_REDIRECTS} redirects from ${url}`);
    target = new URL(location, target);
    // As fetch does: a 303, or a 301/302 after a POST, becomes a GET without a body.
    const method = (request.method ?? 'GET').toUpperCase();
    if (response.status === 303 ? method !== 'HEAD' : (response.status === 301 || response.status === 302) && method === 'POST') {
      const { body: _body, ...rest } = request;
      request = { ...rest, method: 'GET' };
    }
  }
}

async function call(client: Client, streaming: boolean, skill: string, payload: unknown, ctx: HandlerContext): Promise<unknown> {
  const message: Message = {
    messageId: randomUUID(),
    contextId: '',
    taskId: '',
    role: Role.ROLE_USER,
    parts: [partOf(payload)],
    metadata: { skill },
    extensions: [],
    referenceTaskIds: [],
  };
  const request = { tenant: '', message, configuration: undefined, metadata: undefined };
  const seen = new TaskView();
  const cancelRemote = () => {
    if (seen.id !== undefined && !seen.final) void client.cancelTask({ tenant: '', id: seen.id, metadata: undefined }).catch(() => undefined);
  };
  ctx.signal.addEventListener('abort', cancelRemote, { once: true });
  try {
    if (streaming) {
      for await (const event of client.sendMessageStream(request, { signal: ctx.signal })) {
        const p = event.payload;
        if (p === undefined) continue;
        if (p.$case === 'message') return answerOf(p.value.parts);
        if (p.$case === 'task') seen.task(p.value);
        else if (p.$case === 'artifactUpdate' && p.value.artifact !== undefined) seen.artifact(p.value.artifact, p.value.append);
        else if (p.$case === 'statusUpdate' && p.value.status !== undefined) {
          seen.status(p.value.status);
          const progress = p.value.metadata?.['progress'];
          const note = textOf(p.value.status.message);
          if (p.value.status.state === TaskState.TASK_STATE_WORKING && (note !== undefined || typeof progress === 'number')) {
            ctx.progress(typeof progress === 'number' && progress >= 0 && progress <= 1 ? progress : seen.fraction, note);
            if (typeof progress === 'number') seen.fraction = progress;
          }
        }
        if (seen.final) break;
      }
    } else {
      // Without a stream the task id comes only with an answer: a blocking send would leave a
      // deadline nothing to cancel. So the send returns at once and the task is polled.
      const result = await client.sendMessage(
        { ...request, configuration: { acceptedOutputModes: [], taskPushNotificationConfig: undefined, returnImmediately: true } },
        { signal: ctx.signal },
      );
      if ('parts' in result) return answerOf(result.parts);
      seen.task(result);
      for (let wait = FIRST_POLL_MS; !seen.final; wait = Math.min(wait * 2, MAX_POLL_MS)) {
        await pause(wait, ctx.signal);
        seen.task(await client.getTask({ tenant: '', id: seen.id!, historyLength: 0 }, { signal: ctx.signal }));
      }
    }
  } finally {
    ctx.signal.removeEventListener('abort', cancelRemote);
  }
  return seen.answer();
}

/** The first wait before a non-streaming remote's task is read again; each wait doubles up to the last. */
const FIRST_POLL_MS = 20;
const MAX_POLL_MS = 1000;

/** Resolves after `ms`, or rejects with the signal's reason once it aborts. */
function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/** What the client has seen of one remote task. */
class TaskView {
  id: string | undefined;
  state: TaskState | undefined;
  reason: string | undefined;
  fraction = 0;
  readonly #artifacts = new Map<string, Artifact>();

  get final(): boolean {
    return this.state !== undefined && (TERMINAL.has(this.state) || STOPPED.has(this.state));
  }

  task(task: Task): void {
    this.id = task.id;
    for (const artifact of task.artifacts) this.#artifacts.set(artifact.artifactId, artifact);
    if (task.status !== undefined) this.status(task.status);
  }

  status(status: TaskStatus): void {
    this.state = status.state;
    this.reason = textOf(status.message);
  }

  artifact(artifact: Artifact, append: boolean): void {
    const earlier = this.#artifacts.get(artifact.artifactId);
    this.#artifacts.set(artifact.artifactId, append && earlier !== undefined ? { ...earlier, parts: [...earlier.parts, ...artifact.parts] } : artifact);
  }

  answer(): unknown {
    if (this.state !== TaskState.TASK_STATE_COMPLETED) {
      const state = this.state === undefined ? 'no final state' : stateName(this.state);
      // The remote's text is capped: it becomes an error message, an audit row, a console line.
      const reason = this.reason === undefined ? '' : `: ${this.reason.length > 1000 ? `${this.reason.slice(0, 1000)}…` : this.reason}`;
      throw new Error(`the remote A2A task ended ${state}${reason}`);
    }
    const last = [...this.#artifacts.values()].at(-1);
    return last === undefined ? null : answerOf(last.parts);
  }
}

function answerOf(parts: Message['parts']): unknown {
  if (parts.length === 0) return null;
  const value = valueOfParts(parts);
  if (!value.ok) throw new Error(`the remote A2A agent answered with ${value.reason.replace(/^a /, 'a ')}`);
  return value.value;
}

function textOf(message: Message | undefined): string | undefined {
  if (message === undefined) return undefined;
  const texts = message.parts.flatMap((p) => (p.content?.$case === 'text' ? [p.content.value] : []));
  return texts.length === 0 ? undefined : texts.join('\n');
}

/** `body`, failing once more than `max` bytes went through. */
function capped(body: ReadableStream<Uint8Array>, max: number): ReadableStream<Uint8Array> {
  let seen = 0;
  return body.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, controller) {
        seen += chunk.byteLength;
        if (seen > max) controller.error(new Error(`the remote A2A agent sent more than ${max} bytes in one response (maxResponseBytes)`));
        else controller.enqueue(chunk);
      },
    }),
  );
}
