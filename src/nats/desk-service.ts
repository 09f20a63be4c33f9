/**
 * A node's side of fleet approvals: answers operators' signed `list` and `decide` requests
 * for this node's approval queue and tells every operator of held and decided messages.
 *
 * A request is taken only when its signer is an operator of THIS node's roster, its
 * signature verifies, it names this bus and this node, its time is within the freshness
 * window of this node's clock and its nonce was not seen within that window (a replay). A
 * decision is recorded with the operator's roster id as `decidedBy`; the queue's own
 * decided-once rule answers a second decision (`INVALID_ARGUMENT`). Every answer is signed
 * by this node, so an operator believes no list or outcome the broker made up. A refused
 * request is told to the node (`ApprovalDeskPort.refused`: the `operator:refused` event, or a
 * warning), with the operator and message id it names, so a forged or replayed decision
 * leaves a trace where it was aimed.
 */
import type { Subscription } from '@nats-io/transport-node';
import { BusError, isBusError } from '../errors.js';
import type { BusEvents } from '../events.js';
import type { ApprovalDeskPort } from '../pipeline/transport.js';
import type { NodeConnection } from './connection.js';
import { openFrame, sealFor, sealFrame, type Signer } from './desk-wire.js';
import { verifierOf } from './keys.js';
import type { RosterIndex } from './roster.js';
import type { Subjects } from './subjects.js';

/** What the service is built from (the transport's parts once connected). */
export interface DeskServiceOptions {
  readonly connection: NodeConnection;
  readonly subjects: Subjects;
  readonly node: string;
  readonly roster: RosterIndex;
  readonly keys: Signer;
  readonly desk: ApprovalDeskPort;
  /** How far a request's signed time may be from this node's clock. @default 120000 */
  readonly freshnessMs?: number;
  /** The clock (tests). @default Date.now */
  readonly now?: () => number;
}

/** What a request names (unverified), for the record of its refusal. */
interface Named {
  operator?: string;
  messageId?: string;
}

/** The most nonces remembered; past it, requests are refused until old ones age out. */
const MAX_NONCES = 100_000;
const NONCE = /^[A-Za-z0-9_-]{16,64}$/;

/** One node's answering side of fleet approvals. */
export class DeskService {
  readonly #o: DeskServiceOptions;
  readonly #fresh: number;
  readonly #now: () => number;
  readonly #subs: Subscription[] = [];
  /** nonce → the signed time it came with, for the replay check. */
  readonly #nonces = new Map<string, number>();
  readonly #unlisten: Array<() => void> = [];

  constructor(options: DeskServiceOptions) {
    this.#o = options;
    this.#fresh = options.freshnessMs ?? 120_000;
    this.#now = options.now ?? Date.now;
    const { connection, subjects, node, desk } = options;
    this.#subs.push(
      connection.nc.subscribe(subjects.desk(node, 'list'), { callback: (error, msg) => { if (error === null) this.#answer(msg.data, (m) => msg.respond(m), 'list'); } }),
      connection.nc.subscribe(subjects.desk(node, 'decide'), { callback: (error, msg) => { if (error === null) this.#answer(msg.data, (m) => msg.respond(m), 'decide'); } }),
    );
    this.#unlisten.push(
      desk.events.on('approval:requested', ({ approval }) => this.#tell({ event: 'requested', id: approval.id })),
      desk.events.on('approval:decided', (e: BusEvents['approval:decided']) =>
        this.#tell({ event: 'decided', id: e.approval.id, decision: e.decision, ...(e.by !== undefined ? { by: e.by } : {}), ...(e.reason !== undefined ? { reason: e.reason } : {}) }),
      ),
    );
  }

  /** Stops answering and telling. Idempotent. */
  close(): void {
    for (const off of this.#unlisten.splice(0)) off();
    for (const sub of this.#subs.splice(0)) sub.unsubscribe();
  }

  #tell(fields: Record<string, unknown>): void {
    const { connection, subjects, node, keys } = this.#o;
    try {
      connection.nc.publish(subjects.desk(node, 'changed'), sealFrame(keys, { kind: 'changed', bus: subjects.bus, node, ts: this.#now(), ...fields }));
    } catch {
      // A connection that is down: operators list again when they reconnect.
    }
  }

  #answer(data: Uint8Array, respond: (data: Uint8Array) => void, kind: 'list' | 'decide'): void {
    const { subjects, node, keys } = this.#o;
    const base = { kind: kind === 'list' ? 'listed' : 'decided', bus: subjects.bus, node };
    const named: Named = {};
    const body = this.#check(data, kind, named);
    const send = (fields: Record<string, unknown>) => {
      try {
        respond(sealFrame(keys, { ...base, ...fields }));
      } catch {
        // The operator is gone (or the connection is): it times out at its end.
      }
    };
    if (isBusError(body)) {
      this.#refused(kind, named, body);
      return send({ nonce: null, ok: false, code: body.code, message: body.message });
    }
    const nonce = body.nonce as string;
    if (kind === 'list') {
      // The oldest held messages that fit one NATS message; `more` counts the rest.
      const all = this.#o.desk.approvals.list();
      const room = (this.#o.connection.nc.info?.max_payload ?? 1024 * 1024) - 4096;
      for (let shown = all.length; ; shown = Math.floor(shown / 2)) {
        let sealed: Record<string, string>;
        try {
          sealed = sealFor(String(body.eph), nonce, all.slice(0, shown));
        } catch (error) {
          const refusal = new BusError('INVALID_ARGUMENT', `fleet approvals: a list request needs its one-time key "eph": ${(error as Error).message}`);
          this.#refused(kind, named, refusal);
          return send({ nonce, ok: false, code: refusal.code, message: refusal.message });
        }
        // Base64url grows the ciphertext by a third; the signed frame adds its fields.
        if (shown === 0 || sealed.ct!.length + 1024 < room) return send({ nonce, ok: true, sealed, more: all.length - shown });
      }
    }
    void this.#decide(body).then(
      (result) => send({ nonce, ok: true, ...(result === undefined ? {} : { result }) }),
      (error: unknown) => {
        const e = isBusError(error) ? error : new BusError('INVALID_ARGUMENT', String((error as Error)?.message ?? error));
        send({ nonce, ok: false, code: e.code, message: e.message });
      },
    );
  }

  async #decide(body: Record<string, unknown>): Promise<unknown> {
    const { approvals } = this.#o.desk;
    const by = body.op as string;
    const id = body.id as string;
    if (body.decision === 'approve') {
      return approvals.approve(id, { by, ...(typeof body.note === 'string' ? { note: body.note } : {}), ...(body.always === true ? { always: true } : {}) });
    }
    await approvals.reject(id, { by, ...(typeof body.reason === 'string' ? { reason: body.reason } : {}) });
    return undefined;
  }

  /** Tells the node of a refused request (never throws: the port is the bus's). */
  #refused(request: 'list' | 'decide', named: Named, error: BusError): void {
    try {
      this.#o.desk.refused?.({ request, ...named, code: error.code, reason: error.message });
    } catch {
      // The bus closing, or a port that throws: the operator still gets the refusal.
    }
  }

  /**
   * The request's body, or the BusError that refuses it (`POLICY_DENIED` for who signed it,
   * `INVALID_ARGUMENT` for its shape). `named` gets the operator and message id the body
   * names, read before anything is verified (for the record of a refusal only).
   */
  #check(data: Uint8Array, kind: 'list' | 'decide', named: Named): Record<string, unknown> | BusError {
    const { roster, subjects, node } = this.#o;
    const body = openFrame(data, (b) => {
      const op = b.op;
      if (typeof op === 'string') named.operator = op.slice(0, 80);
      if (kind === 'decide' && typeof b.id === 'string') named.messageId = b.id.slice(0, 300);
      if (typeof op !== 'string' || !Object.hasOwn(roster.roster.operators, op)) return `operator ${JSON.stringify(String(op).slice(0, 80))} is not in the roster of node "${node}"`;
      return verifierOf(roster.roster.operators[op]!.key);
    });
    if (isBusError(body)) return new BusError('POLICY_DENIED', body.message);
    if (body.kind !== kind || body.bus !== subjects.bus || body.node !== node) return new BusError('POLICY_DENIED', `fleet approvals: refused a frame signed for ${JSON.stringify(`${String(body.kind)} on ${String(body.bus)}/${String(body.node)}`)}, not ${kind} on ${subjects.bus}/${node}`);
    const now = this.#now();
    const ts = body.ts;
    if (typeof ts !== 'number' || !Number.isFinite(ts) || Math.abs(now - ts) > this.#fresh) return new BusError('POLICY_DENIED', `fleet approvals: refused a request of operator "${String(body.op)}" signed at ${typeof ts === 'number' ? new Date(ts).toISOString() : 'no time'}, more than ${this.#fresh} ms from this node's clock (a replay, or clocks out of sync)`);
    const nonce = body.nonce;
    if (typeof nonce !== 'string' || !NONCE.test(nonce)) return new BusError('INVALID_ARGUMENT', 'fleet approvals: a request needs a nonce of 16 to 64 base64url characters');
    this.#forget(now);
    if (this.#nonces.has(nonce)) return new BusError('POLICY_DENIED', `fleet approvals: refused a repeated request of operator "${String(body.op)}" (nonce ${nonce}: a replay)`);
    if (this.#nonces.size >= MAX_NONCES) return new BusError('RATE_LIMITED', `fleet approvals: more than ${MAX_NONCES} requests within the freshness window`);
    this.#nonces.set(nonce, ts);
    if (kind === 'decide') {
      if (typeof body.id !== 'string' || body.id === '' || body.id.length > 300) return new BusError('INVALID_ARGUMENT', 'fleet approvals: a decision needs the held message id');
      if (body.decision !== 'approve' && body.decision !== 'reject') return new BusError('INVALID_ARGUMENT', `fleet approvals: decision must be "approve" or "reject", got ${JSON.stringify(String(body.decision).slice(0, 40))}`);
      for (const k of ['note', 'reason'] as const) if (body[k] !== undefined && (typeof body[k] !== 'string' || body[k].length > 1000)) return new BusError('INVALID_ARGUMENT', `fleet approvals: ${k} must be a string of at most 1000 characters`);
    }
    return body;
  }

  /** Drops nonces whose time has left the window (a request that old is refused for its time). */
  #forget(now: number): void {
    for (const [nonce, ts] of this.#nonces) {
      if (ts >= now - 2 * this.#fresh) break;
      this.#nonces.delete(nonce);
    }
  }
}
