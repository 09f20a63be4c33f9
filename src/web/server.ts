// The approval web page's server, on node:http alone. Every request needs the token;
// decisions are POSTs the page alone can make (CSRF header + same origin); held messages,
// recent decisions and the audit log tail stream to the page as server-sent events.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { z } from 'zod';
import type { PendingApproval } from '../approvals.js';
import type { BusEventName } from '../events.js';
import type { MessageLogEntry, MessageLogQuery } from '../audit/types.js';
import { answerText, ApprovalDesk, checkOperatorBus, type DeskAnswer, type OperatorBus } from '../operator/desk.js';
import { parseOptions } from '../options-schema.js';
import { csrfFor, csrfRefusal, newToken, presentedToken, tokenCookie, tokenMatches } from './auth.js';
import { APP_JS, CSP, CSS, pageHtml } from './page.js';
import { readBody } from '../http-body.js';
import { escapeText } from '../escape-text.js';

/** What the web page needs of an `Orchestrator`: events, approvals and (optionally) the audit log. */
export interface WebBus extends OperatorBus {
  getMessageLog?(query?: MessageLogQuery): MessageLogEntry[];
  /** True once the bus is closed: the page says so and lists nothing to decide. */
  readonly closed?: boolean;
}

/** Options of `approvalServer()`. */
export interface ApprovalServerOptions {
  /** TCP port; 0 picks a free one. @default 0 */
  port?: number;
  /** Interface to bind. Anything but loopback exposes the page to the network. @default '127.0.0.1' */
  host?: string;
  /** The secret every request must present (16 to 512 characters). @default a fresh random one, see `handle.token` */
  token?: string;
  /** The name the page fills in as the operator (each decision still names who made it). @default a fleet queue's `operator`, else none */
  operator?: string;
  /** Largest request body accepted, in bytes. @default 16384 */
  maxBodyBytes?: number;
  /** Pages listening at once (server-sent event streams). @default 32 */
  maxClients?: number;
  /** Held messages sent to the page at once (the oldest first). @default 100 */
  maxShown?: number;
  /** Audit log entries shown. @default 20 */
  logTail?: number;
}

/** A running approval server. */
export interface ApprovalServerHandle {
  /** `http://host:port/`: the page (it asks for the token). */
  readonly url: string;
  /** The URL with `?token=`: opening it signs the browser in (a cookie) and drops the token from the address bar. */
  readonly loginUrl: string;
  /** The token requests must present (as given, or generated). */
  readonly token: string;
  readonly port: number;
  /** Stops listening, ends the event streams, unsubscribes from the bus. Idempotent. */
  close(): Promise<void>;
}

const optionsSchema = z
  .strictObject({
    port: z.number().int().min(0).max(65535).optional(),
    host: z.string().min(1).max(255).optional(),
    token: z.string().min(16).max(512).optional(),
    operator: z.string().min(1).max(256).optional(),
    maxBodyBytes: z.number().int().min(256).max(1 << 20).optional(),
    maxClients: z.number().int().min(1).max(1000).optional(),
    maxShown: z.number().int().min(1).max(1000).optional(),
    logTail: z.number().int().min(0).max(500).optional(),
  });

const decideSchema = z.discriminatedUnion('decision', [
  z.object({ decision: z.literal('approve'), id: z.string().min(1).max(300), by: z.string().trim().min(1).max(256), note: z.string().max(1000).optional(), always: z.boolean().optional() }).strict(),
  z.object({ decision: z.literal('reject'), id: z.string().min(1).max(300), by: z.string().trim().min(1).max(256), reason: z.string().max(1000).optional() }).strict(),
]);

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '::1', '[::1]']);
/** How often, at most, the page's state is sent again while the bus is busy. */
const BROADCAST_MS = 100;
/** How often the server looks whether the bus has closed (it emits nothing as it closes). */
const CLOSED_CHECK_MS = 500;
/** Events after which the page's state is sent again (coalesced, see BROADCAST_MS). */
const STATE_EVENTS: readonly BusEventName[] = ['approval:requested', 'approval:decided', 'message:delivered', 'message:replied', 'message:denied', 'message:expired', 'message:failed', 'agent:lost'];

/**
 * Serves the approval page for `bus` on `http://host:port/`. Open `handle.loginUrl` (it
 * carries the token) in a browser; API clients send `Authorization: Bearer <token>`.
 *
 * @example
 * const web = await approvalServer(bus, { port: 8080, operator: 'alice' });
 * console.log(`approve at ${web.loginUrl}`);
 * // …
 * await web.close();
 */
export async function approvalServer(bus: WebBus, options: ApprovalServerOptions = {}): Promise<ApprovalServerHandle> {
  const o = parseOptions(optionsSchema, options, 'approvalServer');
  checkOperatorBus(bus, 'approvalServer');
  const host = o.host ?? '127.0.0.1';
  const token = o.token ?? newToken();
  const csrf = csrfFor(token);
  const maxBody = o.maxBodyBytes ?? 16_384;
  const maxClients = o.maxClients ?? 32;
  const maxShown = o.maxShown ?? 100;
  const logTail = o.logTail ?? 20;
  const desk = new ApprovalDesk(bus, { remember: 50 });
  // A fleet's queue (`fleetApprovals`) names its operator: the id every node records.
  const named = (bus as { readonly operator?: unknown }).operator;
  const fleetOperator = typeof named === 'string' && named !== '' ? named : undefined;
  const clients = new Set<ServerResponse>();
  let port = 0;

  const busClosed = () => bus.closed === true;
  const state = () => {
    const closed = busClosed();
    // A closed bus decides nothing: the page lists nothing to decide.
    const pending = closed ? [] : desk.pending();
    let log: MessageLogEntry[] = [];
    try {
      if (logTail > 0 && typeof bus.getMessageLog === 'function') log = bus.getMessageLog({ limit: logTail });
    } catch {
      log = []; // a closed or failing log: the page shows none
    }
    return {
      now: Date.now(),
      closed,
      operator: o.operator ?? fleetOperator ?? null,
      pending: pending.slice(0, maxShown).map(viewOf),
      more: Math.max(0, pending.length - maxShown),
      recent: desk.recent().map((d) => ({
        id: d.id,
        at: d.at,
        decision: d.decision,
        by: d.by,
        reason: d.reason,
        node: d.approval.node ?? null,
        from: d.approval.envelope.from,
        to: d.approval.envelope.to,
        type: d.approval.envelope.type,
        intent: d.approval.envelope.intent,
      })),
      log,
    };
  };

  // At most one state per BROADCAST_MS, however busy the bus: each reads the audit log tail.
  let queued: ReturnType<typeof setTimeout> | undefined;
  const broadcast = () => {
    if (queued !== undefined || clients.size === 0) return;
    queued = setTimeout(() => {
      queued = undefined;
      const frame = `event: state\ndata: ${JSON.stringify(state())}\n\n`;
      for (const res of clients) res.write(frame);
    }, BROADCAST_MS);
    queued.unref();
  };
  for (const name of STATE_EVENTS) bus.events.on(name, broadcast);
  const heartbeat = setInterval(() => {
    for (const res of clients) res.write(': keep-alive\n\n');
  }, 15_000);
  heartbeat.unref();
  /** Tells every page the bus (or this server) is gone, then ends their streams: their EventSource stops for good. */
  const closedFrame = (reason: string) => `event: closed\ndata: ${JSON.stringify({ reason })}\n\n`;
  const endAll = (reason: string) => {
    const frame = closedFrame(reason);
    for (const res of clients) res.end(frame);
    clients.clear();
  };
  const BUS_CLOSED = 'the bus has closed: nothing is held here any more';
  const closedWatch = setInterval(() => {
    if (!busClosed()) return;
    clearInterval(closedWatch);
    endAll(BUS_CLOSED);
  }, CLOSED_CHECK_MS);
  closedWatch.unref();

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    setSecurityHeaders(res);
    const hostHeader = req.headers.host;
    // DNS rebinding: a loopback server answers only to loopback names.
    if (typeof hostHeader !== 'string' || (LOOPBACK.has(host) && !LOOPBACK.has(hostName(hostHeader)))) {
      return send(res, 421, { error: 'unexpected Host header' });
    }
    let url: URL;
    try {
      url = new URL(req.url ?? '/', `http://${hostHeader}`);
    } catch {
      return send(res, 400, { error: 'bad request target' });
    }
    const given = presentedToken(req, url, tokenCookie(port));
    if (!tokenMatches(given, token)) {
      return send(res, 401, { error: 'token required: open the URL printed with the token, or send Authorization: Bearer <token>' });
    }
    const route = `${req.method} ${url.pathname}`;
    if (url.searchParams.has('token')) {
      // Trade the token in the address for a cookie the page's requests carry.
      res.setHeader('Set-Cookie', `${tokenCookie(port)}=${encodeURIComponent(token)}; HttpOnly; SameSite=Strict; Path=/`);
      res.setHeader('Location', '/');
      return send(res, 303, { error: 'signed in' });
    }
    switch (route) {
      case 'GET /':
        return sendText(res, 200, 'text/html; charset=utf-8', pageHtml(csrf));
      case 'GET /app.js':
        return sendText(res, 200, 'text/javascript; charset=utf-8', APP_JS);
      case 'GET /app.css':
        return sendText(res, 200, 'text/css; charset=utf-8', CSS);
      case 'GET /favicon.ico':
        res.writeHead(204);
        return void res.end();
      case 'GET /api/state':
        return send(res, 200, state());
      case 'GET /api/events': {
        if (clients.size >= maxClients) return send(res, 503, { error: `too many pages open (${maxClients})` });
        res.writeHead(200, { 'Content-Type': 'text/event-stream; charset=utf-8', Connection: 'keep-alive' });
        if (busClosed()) return void res.end(`retry: 2000\nevent: state\ndata: ${JSON.stringify(state())}\n\n${closedFrame(BUS_CLOSED)}`);
        res.write(`retry: 2000\nevent: state\ndata: ${JSON.stringify(state())}\n\n`);
        clients.add(res);
        req.on('close', () => clients.delete(res));
        return;
      }
      case 'POST /api/decide':
        return decide(req, res, hostHeader);
    }
    if (['/', '/app.js', '/app.css', '/api/state', '/api/events', '/api/decide'].includes(url.pathname)) {
      res.setHeader('Allow', url.pathname === '/api/decide' ? 'POST' : 'GET');
      return send(res, 405, { error: `${req.method} is not allowed on ${url.pathname}` });
    }
    return send(res, 404, { error: 'not found' });
  };

  const decide = async (req: IncomingMessage, res: ServerResponse, hostHeader: string): Promise<void> => {
    const refusal = csrfRefusal(req, token, `http://${hostHeader}`);
    if (refusal !== undefined) return send(res, 403, { error: `refused as a possible cross-site request: ${refusal}` });
    const type = req.headers['content-type'];
    if (typeof type !== 'string' || !/^application\/json(;|$)/i.test(type)) return send(res, 415, { error: 'send application/json' });
    const body = await readBody(req, maxBody);
    if (body === undefined) {
      res.setHeader('Connection', 'close');
      return send(res, 413, { error: `request body over ${maxBody} bytes` });
    }
    let json: unknown;
    try {
      json = JSON.parse(body);
    } catch {
      return send(res, 400, { error: 'body is not JSON' });
    }
    const input = decideSchema.safeParse(json);
    if (!input.success) {
      const issue = input.error.issues[0]!;
      return send(res, 400, { error: `${issue.path.join('.') || 'body'}: ${issue.message}` });
    }
    const d = input.data;
    const answer =
      d.decision === 'approve'
        ? await desk.decide(d.id, { approve: true, by: d.by, ...(d.note !== undefined ? { note: d.note } : {}), ...(d.always === true ? { always: true } : {}) })
        : await desk.decide(d.id, { approve: false, by: d.by, ...(d.reason !== undefined && d.reason.trim() !== '' ? { reason: d.reason.trim() } : {}) });
    return send(res, statusOf(answer), { ...answer, text: answerText(answer) });
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      if (!res.headersSent) send(res, 500, { error: 'internal error' });
      else res.destroy();
      process.emitWarning(`agent-switchboard web: ${escapeText(error instanceof Error ? error.message : String(error))}`, { code: 'SWITCHBOARD_WEB_ERROR' });
    });
  });
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  port = (server.address() as AddressInfo).port;
  const base = `http://${host.includes(':') ? `[${host}]` : host}:${port}/`;
  let closing: Promise<void> | undefined;
  return {
    url: base,
    loginUrl: `${base}?token=${encodeURIComponent(token)}`,
    token,
    port,
    close() {
      closing ??= new Promise<void>((resolve) => {
        clearInterval(heartbeat);
        clearInterval(closedWatch);
        if (queued !== undefined) clearTimeout(queued);
        for (const name of STATE_EVENTS) bus.events.off(name, broadcast);
        void desk.close();
        endAll(busClosed() ? BUS_CLOSED : 'the approval server stopped: nothing can be decided here any more');
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}

/** What the page sees of a held message. */
function viewOf(a: PendingApproval) {
  return { id: a.id, node: a.node ?? null, envelope: a.envelope, rule: a.rule ?? null, payloadHash: a.payloadHash, payloadBytes: a.payloadBytes, requestedAt: a.requestedAt, expiresAt: a.expiresAt, restored: a.restored === true };
}

/** HTTP status for a desk answer: 409 for a second decision, 404 for an unknown item, 422 for a refusal. */
function statusOf(answer: DeskAnswer): number {
  switch (answer.status) {
    case 'decided':
      return 200;
    case 'already':
    case 'busy':
      return 409;
    case 'unknown':
      return 404;
    case 'refused':
      return answer.code === 'INVALID_ARGUMENT' ? 400 : 422;
  }
}

function hostName(hostHeader: string): string {
  if (hostHeader.startsWith('[')) return hostHeader.slice(0, hostHeader.indexOf(']') + 1);
  const at = hostHeader.lastIndexOf(':');
  return at < 0 ? hostHeader : hostHeader.slice(0, at);
}

function setSecurityHeaders(res: ServerResponse): void {
  res.setHeader('Content-Security-Policy', CSP);
  res.setHeader('X-Content-Type-Options', 'nosniff');
  res.setHeader('X-Frame-Options', 'DENY');
  res.setHeader('Referrer-Policy', 'no-referrer');
  res.setHeader('Cache-Control', 'no-store');
  res.setHeader('Cross-Origin-Opener-Policy', 'same-origin');
  res.setHeader('Cross-Origin-Resource-Policy', 'same-origin');
}

function send(res: ServerResponse, status: number, body: unknown): void {
  sendText(res, status, 'application/json; charset=utf-8', JSON.stringify(body));
}

function sendText(res: ServerResponse, status: number, type: string, text: string): void {
  res.writeHead(status, { 'Content-Type': type, 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

