/**
 * The roster: the fleet's public truth, given to each node locally (a file or an object),
 * never learnt from the broker. It names the bus, and per node its Ed25519 signing key (its
 * NATS user nkey), its X25519 sealing key and the agent ids it may serve (exact ids, or a
 * `prefix*` pattern); per operator a public key.
 *
 * What a node believes about a peer comes from here and from signatures checked against it:
 * a claim or a message is that node's only if its signature verifies under the key listed
 * for it, and only for agents the roster lets it serve.
 */
import { readFileSync } from 'node:fs';
import type { KeyObject } from 'node:crypto';
import { BusError } from '../errors.js';
import { AGENT_ID_PATTERN } from '../ids.js';
import { PUBLIC_KEY_PATTERN, SEALING_KEY_PATTERN, verifierOf } from './keys.js';
import { checkBusName } from './subjects.js';

/** One node of the roster. */
export interface RosterNode {
  /** The node's Ed25519 public key as a user nkey (`U…`): the broker's user and the signer of its claims and messages. */
  readonly signingKey: string;
  /** The node's X25519 public key (32 bytes, base64url): sealed messages to it are encrypted for this key. */
  readonly sealingKey: string;
  /** The agent ids the node may serve: exact ids, or `prefix*` for every id that starts with `prefix`. */
  readonly agents: readonly string[];
}

/** One operator of the roster (approvals across the fleet are signed with its key). */
export interface RosterOperator {
  /** The operator's Ed25519 public key as a user nkey (`U…`). */
  readonly key: string;
}

/** The roster document, as `switchboard fleet init` writes it to `roster.json`. */
export interface Roster {
  /** Format version. */
  readonly v: 1;
  /** The bus name. */
  readonly bus: string;
  /** node id → its keys and agents. */
  readonly nodes: Readonly<Record<string, RosterNode>>;
  /** operator id → its public key. */
  readonly operators: Readonly<Record<string, RosterOperator>>;
}

/** An agent id or a `prefix*` pattern. */
export const AGENT_PATTERN_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,126}\*$/;
const MAX_NODES = 1_000;
const MAX_AGENTS = 100_000;

function bad(message: string): BusError {
  return new BusError('INVALID_ARGUMENT', `invalid roster: ${message}`);
}

/** Checks one node's list of agent ids and patterns; throws naming the first bad entry. */
export function checkAgentList(node: string, agents: unknown, fail: (m: string) => BusError = bad): string[] {
  if (!Array.isArray(agents)) throw fail(`node "${node}": expected a list of agent ids`);
  const out: string[] = [];
  for (const agent of agents) {
    if (typeof agent !== 'string' || !(AGENT_ID_PATTERN.test(agent) || AGENT_PATTERN_PATTERN.test(agent))) {
      throw fail(`node "${node}": agent ${JSON.stringify(agent)} is neither an agent id (${AGENT_ID_PATTERN}) nor a "prefix*" pattern`);
    }
    out.push(agent);
  }
  return out;
}

/** Throws when an id or pattern could belong to two nodes. */
export function checkOwnership(nodes: Readonly<Record<string, readonly string[]>>, fail: (m: string) => BusError = bad): void {
  const exact = new Map<string, string>();
  const prefixes: { prefix: string; node: string }[] = [];
  let count = 0;
  for (const [node, agents] of Object.entries(nodes)) {
    for (const a of agents) {
      if (++count > MAX_AGENTS) throw fail(`more than ${MAX_AGENTS} agents`);
      if (a.endsWith('*')) prefixes.push({ prefix: a.slice(0, -1), node });
      else {
        const other = exact.get(a);
        if (other !== undefined) throw fail(`agent "${a}" is listed on two nodes: "${other}" and "${node}"`);
        exact.set(a, node);
      }
    }
  }
  for (const p of prefixes) {
    for (const [id, node] of exact) {
      if (node !== p.node && id.startsWith(p.prefix)) throw fail(`agent "${id}" of node "${node}" matches "${p.prefix}*" of node "${p.node}"`);
    }
    for (const q of prefixes) {
      if (q !== p && q.node !== p.node && q.prefix.startsWith(p.prefix)) throw fail(`"${q.prefix}*" of node "${q.node}" overlaps "${p.prefix}*" of node "${p.node}"`);
    }
  }
}

/**
 * Checks a roster document (read from a file or given as an object): every key known,
 * valid ids and keys, every agent on one node at most. Throws `INVALID_ARGUMENT` naming the
 * first problem. Returns a frozen copy.
 */
export function checkRoster(value: unknown): Roster {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw bad('expected an object { "v": 1, "bus", "nodes", "operators" }');
  const { v, bus, nodes, operators, ...rest } = value as Record<string, unknown>;
  const extra = Object.keys(rest);
  if (extra.length > 0) throw bad(`unknown key ${JSON.stringify(extra[0])}`);
  if (v !== 1) throw bad(`"v" must be 1, got ${JSON.stringify(v)}`);
  try {
    checkBusName(bus);
  } catch (e) {
    throw bad((e as Error).message);
  }
  if (typeof nodes !== 'object' || nodes === null || Array.isArray(nodes)) throw bad('"nodes" must be an object of node id → { signingKey, sealingKey, agents }');
  const entries = Object.entries(nodes);
  if (entries.length === 0 || entries.length > MAX_NODES) throw bad(`"nodes" must name 1 to ${MAX_NODES} nodes, got ${entries.length}`);
  const outNodes: Record<string, RosterNode> = {};
  const keys = new Map<string, string>();
  const sealers = new Map<string, string>();
  for (const [node, entry] of entries) {
    if (!AGENT_ID_PATTERN.test(node)) throw bad(`node id ${JSON.stringify(node)} does not match ${AGENT_ID_PATTERN}`);
    if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) throw bad(`node "${node}": expected { signingKey, sealingKey, agents }`);
    const { signingKey, sealingKey, agents, ...more } = entry as Record<string, unknown>;
    const unknown = Object.keys(more);
    if (unknown.length > 0) throw bad(`node "${node}": unknown key ${JSON.stringify(unknown[0])}`);
    if (typeof signingKey !== 'string' || !PUBLIC_KEY_PATTERN.test(signingKey)) throw bad(`node "${node}": signingKey must be a user public nkey (U…)`);
    try {
      verifierOf(signingKey);
    } catch (e) {
      throw bad(`node "${node}": signingKey ${(e as Error).message}`);
    }
    if (typeof sealingKey !== 'string' || !SEALING_KEY_PATTERN.test(sealingKey)) throw bad(`node "${node}": sealingKey must be 32 bytes in base64url`);
    const dup = keys.get(signingKey);
    if (dup !== undefined) throw bad(`nodes "${dup}" and "${node}" have the same signingKey`);
    keys.set(signingKey, node);
    const sharer = sealers.get(sealingKey);
    if (sharer !== undefined) throw bad(`nodes "${sharer}" and "${node}" have the same sealingKey`);
    sealers.set(sealingKey, node);
    outNodes[node] = Object.freeze({ signingKey, sealingKey, agents: Object.freeze(checkAgentList(node, agents)) });
  }
  checkOwnership(Object.fromEntries(Object.entries(outNodes).map(([n, e]) => [n, e.agents])));
  const outOperators: Record<string, RosterOperator> = {};
  if (operators !== undefined) {
    if (typeof operators !== 'object' || operators === null || Array.isArray(operators)) throw bad('"operators" must be an object of operator id → { key }');
    for (const [id, entry] of Object.entries(operators)) {
      if (!AGENT_ID_PATTERN.test(id)) throw bad(`operator id ${JSON.stringify(id)} does not match ${AGENT_ID_PATTERN}`);
      const key = (entry as { key?: unknown } | null)?.key;
      if (typeof key !== 'string' || !PUBLIC_KEY_PATTERN.test(key) || Object.keys(entry as object).length !== 1) throw bad(`operator "${id}": expected { "key": "U…" }`);
      if (keys.has(key)) throw bad(`operator "${id}" has the key of node "${keys.get(key)}"`);
      outOperators[id] = Object.freeze({ key });
    }
  }
  return Object.freeze({ v: 1, bus: bus as string, nodes: Object.freeze(outNodes), operators: Object.freeze(outOperators) });
}

/** Reads and checks a roster given as an object or as the path of its JSON file. */
export function loadRoster(source: Roster | string): Roster {
  if (typeof source !== 'string') return checkRoster(source);
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(source, 'utf8'));
  } catch (e) {
    throw new BusError('INVALID_ARGUMENT', `cannot read the roster ${JSON.stringify(source)}: ${(e as Error).message}`);
  }
  return checkRoster(raw);
}

/** True when `agents` (ids and `prefix*` patterns) covers `agent`. */
export function covers(agents: readonly string[], agent: string): boolean {
  for (const a of agents) {
    if (a === agent) return true;
    if (a.endsWith('*') && agent.startsWith(a.slice(0, -1))) return true;
  }
  return false;
}

/** A checked roster with its verifying keys made once: what the transport consults. */
export class RosterIndex {
  readonly roster: Roster;
  readonly #verifiers = new Map<string, KeyObject>();
  readonly #serves = new Map<string, boolean>();

  constructor(roster: Roster) {
    this.roster = roster;
    for (const [node, entry] of Object.entries(roster.nodes)) this.#verifiers.set(node, verifierOf(entry.signingKey));
  }

  /** The node's entry, or undefined when the roster does not list it. */
  node(node: string): RosterNode | undefined {
    return Object.hasOwn(this.roster.nodes, node) ? this.roster.nodes[node] : undefined;
  }

  /** The key that verifies `node`'s signatures, or undefined when the roster does not list it. */
  verifier(node: string): KeyObject | undefined {
    return this.#verifiers.get(node);
  }

  /** True when the roster lets `node` serve (and speak as) `agent`. Cached: asked per message. */
  mayServe(node: string, agent: string): boolean {
    const key = `${node}\0${agent}`;
    let yes = this.#serves.get(key);
    if (yes === undefined) {
      const entry = this.node(node);
      yes = entry !== undefined && covers(entry.agents, agent);
      if (this.#serves.size >= 100_000) this.#serves.clear();
      this.#serves.set(key, yes);
    }
    return yes;
  }

  /** The node whose signing key is `publicKey`, if any. */
  nodeOfKey(publicKey: string): string | undefined {
    for (const [node, entry] of Object.entries(this.roster.nodes)) if (entry.signingKey === publicKey) return node;
    return undefined;
  }
}
