/**
 * One console for a fleet: {@link fleetApprovals} lists, approves and rejects the held
 * messages of every node of a bus, as the operator whose seed it is given. Each request is
 * signed with the operator's key; each node checks it against its own roster and records the
 * operator's roster id as `decidedBy` (see desk-service.ts). Each answer and notice is signed
 * by its node and checked against the roster here.
 */
import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import type { ApprovalResult, PendingApproval } from '../approvals.js';
import { BusError, ErrorCode, isBusError } from '../errors.js';
import { BusEmitter, eventsFace, type BusEventSource } from '../events.js';
import { objectWith, parseOptions } from '../options-schema.js';
import type { Transport } from '../pipeline/transport.js';
import { NodeConnection } from './connection.js';
import { ephemeralKey, openFrame, sealFrame } from './desk-wire.js';
import { fleetOf, type FleetOf } from './fleet-of.js';
import { keysFromSeed, type NodeKeys } from './keys.js';

/** Options of {@link fleetApprovals}. */
export interface FleetApprovalsOptions {
  /** A `natsTransport` built with the fleet's roster (any node's): where the broker is, and the roster. */
  readonly transport: Transport;
  /** The operator's nkey seed (`SU…`, `fleet/<operator>.nk`): its public key must be an operator's in the roster. */
  readonly operatorSeed: string | Uint8Array;
  /** How long a node may take to answer a request. @default 5000 */
  readonly timeoutMs?: number;
  /** How often every node is listed again (nodes that started since, holds restored at their start). @default 5000 */
  readonly refreshMs?: number;
}

/** A held message of one node of the fleet. */
export interface FleetApproval extends PendingApproval {
  /** The node that holds it (and decides it). */
  readonly node: string;
}

/** Options of a fleet approval: who decides is always the operator of the seed (`by` is ignored). */
export interface FleetApproveOptions {
  readonly note?: string;
  readonly always?: boolean;
  /** Ignored: the node records the operator's roster id. Accepted because consoles pass it. */
  readonly by?: string;
}

/** Options of a fleet rejection (`by` is ignored, as for {@link FleetApproveOptions}). */
export interface FleetRejectOptions {
  readonly reason?: string;
  readonly by?: string;
}

/** The fleet's approval queue, as `approvalServer` and `openApprovalConsole` take it in place of a bus. */
export interface FleetApprovals {
  /** The operator's id in the roster: every decision made here is recorded as `decidedBy` this. */
  readonly operator: string;
  /** `approval:requested` and `approval:decided` of every node (each `approval` has its `node`). */
  readonly events: BusEventSource;
  readonly approvals: {
    /** Held messages of every node that answered, oldest first, each with its `node`. */
    list(): FleetApproval[];
    /** Approves `id` at the node that holds it. Rejects with the node's BusError (`INVALID_ARGUMENT` once decided, `POLICY_DENIED` if the node does not trust this operator). */
    approve(id: string, options?: FleetApproveOptions): Promise<ApprovalResult>;
    /** Rejects `id` at the node that holds it; rejects as `approve` does. */
    reject(id: string, options?: FleetRejectOptions): Promise<void>;
  };
  /** Lists every node again now. */
  refresh(): Promise<void>;
  /** True once closed. */
  readonly closed: boolean;
  /** Disconnects. Idempotent. */
  close(): Promise<void>;
}

const optionsSchema = z.strictObject({
  transport: objectWith<Transport>('a natsTransport built with a roster', 'attach', 'send'),
  operatorSeed: z.union([z.string().min(1), z.instanceof(Uint8Array)]),
  timeoutMs: z.number().int().min(100).max(600_000).optional(),
  refreshMs: z.number().int().min(100).max(3_600_000).optional(),
});
const approveSchema = z.strictObject({ note: z.string().max(1000).optional(), always: z.boolean().optional(), by: z.string().max(256).optional() });
const rejectSchema = z.strictObject({ reason: z.string().max(1000).optional(), by: z.string().max(256).optional() });
const codes = new Set<string>(Object.values(ErrorCode));

/**
 * Connects as an operator of the fleet and lists the held messages of every node.
 * Rejects with `INVALID_ARGUMENT` when `transport` was built without a roster or the seed is
 * no operator's of that roster (naming the seed's key and the roster's operators), and with
 * `TRANSPORT_UNAVAILABLE` when the broker refuses the operator's credentials.
 *
 * @example
 * const fleet = await fleetApprovals({ transport, operatorSeed: readFileSync('fleet/alice.nk', 'utf8') });
 * const web = await approvalServer(fleet, { operator: fleet.operator });
 * // …
 * await web.close();
 * await fleet.close();
 */
export async function fleetApprovals(options: FleetApprovalsOptions): Promise<FleetApprovals> {
  const o = parseOptions(optionsSchema, options, 'fleetApprovals');
  const fleet = fleetOf(o.transport);
  if (fleet === undefined) throw new BusError('INVALID_ARGUMENT', 'fleetApprovals(): transport must be a natsTransport built with the fleet\'s roster (an insecure one has no operators)');
  const keys = keysFromSeed(o.operatorSeed);
  const operators = fleet.roster.roster.operators;
  const operator = Object.keys(operators).find((id) => operators[id]!.key === keys.publicKey);
  if (operator === undefined) {
    const known = Object.keys(operators);
    throw new BusError('INVALID_ARGUMENT', `fleetApprovals(): the operator seed is that of key ${keys.publicKey}, which no operator of the roster of bus "${fleet.subjects.bus}" has (operators: ${known.length === 0 ? 'none' : known.map((k) => `${k} ${operators[k]!.key}`).join(', ')})`);
  }
  const conn = await NodeConnection.open({
    servers: fleet.servers,
    inboxPrefix: fleet.subjects.operatorInbox(operator),
    nkeySeed: o.operatorSeed,
    name: `switchboard ${fleet.subjects.bus} operator ${operator}`,
    ...(fleet.connectTimeoutMs === undefined ? {} : { connectTimeoutMs: fleet.connectTimeoutMs }),
  });
  const desk = new FleetDesk(conn, fleet, keys, operator, o.timeoutMs ?? 5_000);
  try {
    await desk.refresh();
  } catch (e) {
    await desk.close();
    throw e;
  }
  desk.every(o.refreshMs ?? 5_000);
  return desk;
}

class FleetDesk implements FleetApprovals {
  readonly operator: string;
  readonly events: BusEventSource;
  readonly approvals: FleetApprovals['approvals'];
  readonly #emitter = new BusEmitter();
  readonly #conn: NodeConnection;
  readonly #fleet: FleetOf;
  readonly #keys: NodeKeys;
  readonly #timeoutMs: number;
  /** node → its held messages, as it last said. */
  readonly #held = new Map<string, FleetApproval[]>();
  #timer: ReturnType<typeof setInterval> | undefined;
  #closed = false;

  constructor(conn: NodeConnection, fleet: FleetOf, keys: NodeKeys, operator: string, timeoutMs: number) {
    this.#conn = conn;
    this.#fleet = fleet;
    this.#keys = keys;
    this.operator = operator;
    this.#timeoutMs = timeoutMs;
    this.events = eventsFace(this.#emitter);
    this.approvals = Object.freeze({
      list: () => this.#list(),
      approve: async (id: string, opts: FleetApproveOptions = {}) => {
        const { note, always } = parseOptions(approveSchema, opts, 'fleetApprovals approve()');
        return (await this.#decide(id, { decision: 'approve', ...(note === undefined ? {} : { note }), ...(always === true ? { always: true } : {}) })) as ApprovalResult;
      },
      reject: async (id: string, opts: FleetRejectOptions = {}) => {
        const { reason } = parseOptions(rejectSchema, opts, 'fleetApprovals reject()');
        await this.#decide(id, { decision: 'reject', ...(reason === undefined ? {} : { reason }) });
      },
    });
    conn.nc.subscribe(fleet.subjects.deskChanges(), { callback: (error, msg) => { if (error === null) this.#notice(msg.data); } });
  }

  get closed(): boolean {
    return this.#closed;
  }

  every(ms: number): void {
    this.#timer = setInterval(() => void this.refresh().catch(() => undefined), ms);
    this.#timer.unref();
  }

  async refresh(): Promise<void> {
    if (this.#closed) return;
    await Promise.all(Object.keys(this.#fleet.roster.roster.nodes).map((node) => this.#refreshNode(node)));
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#timer);
    this.#held.clear();
    await this.#conn.close();
  }

  #list(): FleetApproval[] {
    if (this.#closed) return [];
    return [...this.#held.values()].flat().sort((a, b) => a.requestedAt - b.requestedAt);
  }

  /** Lists `node` again; a node that is not running (no responders) holds nothing visible. */
  async #refreshNode(node: string): Promise<void> {
    const eph = ephemeralKey();
    let listed: unknown;
    try {
      const answer = await this.#request(node, 'list', { eph: eph.publicKey });
      listed = eph.open(answer.sealed, answer.nonce as string);
    } catch (e) {
      if (isBusError(e) && e.code === 'TRANSPORT_UNAVAILABLE' && /no node answers/.test(e.message)) this.#held.delete(node);
      return;
    }
    const items = Array.isArray(listed) ? listed.filter(isApproval).map((a) => Object.freeze({ ...a, node })) : [];
    const before = new Set((this.#held.get(node) ?? []).map((a) => a.id));
    this.#held.set(node, items);
    for (const item of items) if (!before.has(item.id)) this.#emitter.emit('approval:requested', { approval: item });
  }

  async #decide(id: string, fields: Record<string, unknown>): Promise<unknown> {
    if (this.#closed) throw new BusError('CLOSED', 'fleetApprovals: closed');
    const holders = this.#list().filter((a) => a.id === id);
    // One message is held at one node at a time: two claiming it means one of them lies.
    if (holders.length > 1) throw new BusError('INVALID_ARGUMENT', `fleetApprovals: nodes ${holders.map((a) => `"${a.node}"`).sort().join(' and ')} both list message "${id}": decide it at its node's own console`);
    const item = holders[0];
    if (item === undefined) throw new BusError('INVALID_ARGUMENT', `fleetApprovals: no node of bus "${this.#fleet.subjects.bus}" holds message "${id}" (decided, expired or unknown)`);
    const answer = await this.#request(item.node, 'decide', { id, ...fields });
    if (answer.ok !== true) {
      const code = typeof answer.code === 'string' && codes.has(answer.code) ? (answer.code as ErrorCode) : 'TRANSPORT_UNAVAILABLE';
      // Decided meanwhile (another console, the node's own): what the node holds now.
      if (code === 'INVALID_ARGUMENT') await this.#refreshNode(item.node);
      throw new BusError(code, `node "${item.node}": ${String(answer.message ?? 'refused')}`);
    }
    this.#drop(item.node, id);
    return answer.result;
  }

  #drop(node: string, id: string): FleetApproval | undefined {
    const items = this.#held.get(node);
    const gone = items?.find((a) => a.id === id);
    if (items !== undefined && gone !== undefined) this.#held.set(node, items.filter((a) => a !== gone));
    return gone;
  }

  /** A signed request to `node`; resolves with its verified answer's body. */
  async #request(node: string, kind: 'list' | 'decide', fields: Record<string, unknown>): Promise<Record<string, unknown>> {
    const { subjects, roster } = this.#fleet;
    const nonce = randomBytes(18).toString('base64url');
    const data = sealFrame(this.#keys, { kind, bus: subjects.bus, node, op: this.operator, ts: Date.now(), nonce, ...fields });
    let reply;
    try {
      reply = await this.#conn.nc.request(subjects.desk(node, kind), data, { timeout: this.#timeoutMs });
    } catch (cause) {
      const none = noResponders(cause);
      throw new BusError('TRANSPORT_UNAVAILABLE', none ? `fleetApprovals: no node answers for "${node}" (not running)` : `fleetApprovals: node "${node}" did not answer ${kind} within ${this.#timeoutMs} ms: ${(cause as Error)?.message}`, { cause });
    }
    const verifier = roster.verifier(node);
    const body = openFrame(reply.data, (b) => (b.node !== node || verifier === undefined ? `answer names node ${JSON.stringify(String(b.node))}, not "${node}"` : verifier));
    if (isBusError(body)) throw new BusError('TRANSPORT_UNAVAILABLE', `node "${node}": ${body.message}`);
    if (body.bus !== subjects.bus || body.kind !== (kind === 'list' ? 'listed' : 'decided')) throw new BusError('TRANSPORT_UNAVAILABLE', `node "${node}" answered a ${String(body.kind)} for bus ${String(body.bus)}`);
    // A refusal before the node read the nonce carries none: still signed by the node.
    if (body.nonce !== nonce && !(body.ok === false && body.nonce === null)) throw new BusError('TRANSPORT_UNAVAILABLE', `node "${node}" answered another request (a replayed answer)`);
    if (kind === 'list' && body.ok !== true) throw new BusError(typeof body.code === 'string' && codes.has(body.code) ? (body.code as ErrorCode) : 'TRANSPORT_UNAVAILABLE', `node "${node}": ${String(body.message)}`);
    return body;
  }

  /** A node's signed notice: updates the list and tells the views. */
  #notice(data: Uint8Array): void {
    if (this.#closed) return;
    const { subjects, roster } = this.#fleet;
    const body = openFrame(data, (b) => (typeof b.node === 'string' && roster.verifier(b.node) !== undefined ? roster.verifier(b.node)! : `notice of node ${JSON.stringify(String(b.node))}, not in the roster`));
    if (isBusError(body) || body.kind !== 'changed' || body.bus !== subjects.bus || typeof body.id !== 'string') return;
    if (typeof body.ts !== 'number' || Math.abs(Date.now() - body.ts) > 120_000) return;
    const node = body.node as string;
    if (body.event === 'requested') {
      // The notice carries no payload: the node's sealed list does (refreshNode emits the event).
      void this.#refreshNode(node);
    } else if (body.event === 'decided' && typeof body.decision === 'string' && ['approved', 'rejected', 'expired', 'cancelled'].includes(body.decision)) {
      const approval = this.#drop(node, body.id);
      if (approval === undefined) return; // never listed here: no view shows it
      this.#emitter.emit('approval:decided', {
        approval,
        decision: body.decision as 'approved',
        ...(typeof body.by === 'string' ? { by: body.by } : {}),
        ...(typeof body.reason === 'string' ? { reason: body.reason } : {}),
      });
    }
  }
}

/** True when the broker said nobody subscribes to the subject (the node is not running), at any depth of `cause`. */
function noResponders(error: unknown): boolean {
  for (let e = error, depth = 0; typeof e === 'object' && e !== null && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    if ((e as Error).name === 'NoResponders' || /no responders/i.test(String((e as Error).message))) return true;
  }
  return false;
}

/** The fields a view reads of a held message, checked (the node is trusted, its bytes still parsed with care). */
function isApproval(value: unknown): value is PendingApproval {
  if (typeof value !== 'object' || value === null) return false;
  const a = value as Record<string, unknown>;
  const e = a.envelope as Record<string, unknown> | null;
  return typeof a.id === 'string' && typeof a.requestedAt === 'number' && typeof a.expiresAt === 'number' && typeof e === 'object' && e !== null && typeof e.from === 'string' && typeof e.to === 'string' && typeof e.id === 'string';
}
