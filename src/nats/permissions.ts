/**
 * The broker-side enforcement of node identity: from an agent-to-node map, the NATS
 * permissions of each node's user and the server's `authorization` block.
 *
 * A node may publish only as its own agents (`<bus>.in.*.<agent>.*`), write only its own
 * agents' claims, subscribe only to its own agents' inbound subjects and its own inbox
 * prefix, and answer a request it received once (`allow_responses: { max: 1 }`).
 * For fleet approvals, a node takes operators' requests on its own `<bus>.ops.<node>.list`
 * and `.decide` and publishes its own `.changed`; an operator may request of every node,
 * hear every node's notices and read its own inbox prefix (nothing else of the bus).
 */
import { BusError } from '../errors.js';
import { AGENT_ID_PATTERN } from '../ids.js';
import { checkAgentList, checkOwnership } from './roster.js';
import { Subjects } from './subjects.js';

/** Which node serves which agents, on which bus, and who operates it (`fleet.json`). */
export interface Topology {
  readonly bus: string;
  /** node id → the agent ids (or `prefix*` patterns) it serves. */
  readonly nodes: Readonly<Record<string, readonly string[]>>;
  /** Operator ids: each gets a key pair; they create the claims bucket and sign approvals. */
  readonly operators: readonly string[];
}

/** One node's permissions, as nats-server reads them. */
export interface NodePermissions {
  publish: { allow: string[] };
  subscribe: { allow: string[] };
  allow_responses?: { max: number };
}

const MAX_NODES = 1_000;

/**
 * Checks a topology read from a file: a valid bus name, node and agent ids (or `prefix*`
 * patterns) matching the agent id pattern, every agent on one node at most, operator ids.
 * Throws `INVALID_ARGUMENT` naming the first problem.
 */
export function checkTopology(value: unknown): Topology {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw bad('expected an object { "bus": "...", "nodes": { "<node>": ["<agent>", ...] }, "operators": ["<id>"] }');
  const { bus, nodes, operators, ...rest } = value as Record<string, unknown>;
  const extra = Object.keys(rest);
  if (extra.length > 0) throw bad(`unknown key ${JSON.stringify(extra[0])} (expected "bus", "nodes" and "operators")`);
  new Subjects(bus as string);
  if (typeof nodes !== 'object' || nodes === null || Array.isArray(nodes)) throw bad('"nodes" must be an object of node id → list of agent ids');
  const entries = Object.entries(nodes);
  if (entries.length === 0 || entries.length > MAX_NODES) throw bad(`"nodes" must name 1 to ${MAX_NODES} nodes, got ${entries.length}`);
  const out: Record<string, string[]> = {};
  for (const [node, agents] of entries) {
    if (!AGENT_ID_PATTERN.test(node)) throw bad(`node id ${JSON.stringify(node)} does not match ${AGENT_ID_PATTERN}`);
    out[node] = checkAgentList(node, agents, bad);
  }
  checkOwnership(out, bad);
  const ops: string[] = [];
  if (operators !== undefined) {
    if (!Array.isArray(operators)) throw bad('"operators" must be a list of operator ids');
    for (const op of operators) {
      if (typeof op !== 'string' || !AGENT_ID_PATTERN.test(op)) throw bad(`operator id ${JSON.stringify(op)} does not match ${AGENT_ID_PATTERN}`);
      if (Object.hasOwn(out, op) || ops.includes(op)) throw bad(`operator id "${op}" is used twice (node ids and operator ids share one namespace of key files)`);
      ops.push(op);
    }
  }
  return { bus: bus as string, nodes: out, operators: ops };
}

/**
 * The permissions of `node`'s NATS user. Exact agent ids are pinned by subject; a `prefix*`
 * pattern cannot be (NATS wildcards match whole tokens), so a node with one may publish and
 * subscribe on every agent's subjects and write any claim key: signatures checked against
 * the roster pin those ids instead, and sealing keeps payloads from it.
 */
export function nodePermissions(topology: Pick<Topology, 'bus' | 'nodes'>, node: string): NodePermissions {
  const s = new Subjects(topology.bus);
  const agents = topology.nodes[node];
  if (agents === undefined) throw bad(`node "${node}" is not in the topology`);
  const stream = `KV_${s.claimsBucket()}`;
  const exact = agents.filter((a) => !a.endsWith('*'));
  const patterned = exact.length !== agents.length;
  return {
    publish: {
      allow: [
        ...(patterned ? [`${s.bus}.in.*.*.*`, `$KV.${s.claimsBucket()}.*`] : [...exact.map((a) => s.outboundOf(a)), ...exact.map((a) => `$KV.${s.claimsBucket()}.${s.claimKey(a)}`)]),
        // Reading the claims stream (its settings, its entries, a watch): never creating,
        // updating, purging or deleting it.
        '$JS.API.INFO',
        `$JS.API.STREAM.INFO.${stream}`,
        `$JS.API.STREAM.MSG.GET.${stream}`,
        `$JS.API.DIRECT.GET.${stream}`,
        `$JS.API.DIRECT.GET.${stream}.>`,
        `$JS.API.CONSUMER.CREATE.${stream}`,
        `$JS.API.CONSUMER.CREATE.${stream}.>`,
        `$JS.API.CONSUMER.INFO.${stream}.>`,
        `$JS.API.CONSUMER.DELETE.${stream}.>`,
        `$JS.FC.${stream}.>`,
        s.desk(node, 'changed'),
      ],
    },
    subscribe: { allow: [...(patterned ? [`${s.bus}.in.*.*.*`] : exact.map((a) => s.inboundFor(a))), `${s.inboxPrefix(node)}.>`, s.desk(node, 'list'), s.desk(node, 'decide')] },
    allow_responses: { max: 1 },
  };
}

/**
 * The permissions of operator `op`'s NATS user: create and inspect the claims stream, send
 * fleet-approval requests to any node and hear their notices, read its own inboxes.
 */
export function operatorPermissions(bus: string, op: string): NodePermissions {
  const s = new Subjects(bus);
  const stream = `KV_${s.claimsBucket()}`;
  return {
    publish: { allow: ['$JS.API.INFO', `$JS.API.STREAM.CREATE.${stream}`, `$JS.API.STREAM.UPDATE.${stream}`, `$JS.API.STREAM.INFO.${stream}`, s.deskRequests('list'), s.deskRequests('decide')] },
    subscribe: { allow: ['_INBOX.>', `${s.operatorInbox(op)}.>`, s.deskChanges()] },
  };
}

/**
 * The server's `authorization { users = [...] }` block: one nkey user per node.
 * `publicKeys` maps node id → the user's public nkey (`U…`).
 */
export function authorizationBlock(topology: Pick<Topology, 'bus' | 'nodes'> & { operators?: readonly string[] }, publicKeys: ReadonlyMap<string, string>): string {
  const lines = [
    `# Generated by \`switchboard fleet init\` for bus "${topology.bus}". Include it from nats-server.conf.`,
    `# Each node connects with its own nkey and may publish only as its own agents; no node may`,
    `# create, update, purge or delete the claims stream (an operator creates it: switchboard fleet bucket).`,
    'authorization {',
    '  users = [',
  ];
  for (const node of Object.keys(topology.nodes)) {
    const key = publicKeys.get(node);
    if (key === undefined || !/^U[A-Z2-7]{55}$/.test(key)) throw bad(`no valid public user nkey for node "${node}"`);
    const p = nodePermissions(topology, node);
    lines.push(
      `    # node ${JSON.stringify(node)}`,
      `    { nkey: ${JSON.stringify(key)}, permissions: {`,
      `        publish: { allow: ${list(p.publish.allow)} }`,
      `        subscribe: { allow: ${list(p.subscribe.allow)} }`,
      `        allow_responses: { max: ${p.allow_responses!.max} }`,
      `    } }`,
    );
  }
  for (const op of topology.operators ?? []) {
    const key = publicKeys.get(op);
    if (key === undefined || !/^U[A-Z2-7]{55}$/.test(key)) throw bad(`no valid public user nkey for operator "${op}"`);
    const p = operatorPermissions(topology.bus, op);
    lines.push(
      `    # operator ${JSON.stringify(op)}`,
      `    { nkey: ${JSON.stringify(key)}, permissions: {`,
      `        publish: { allow: ${list(p.publish.allow)} }`,
      `        subscribe: { allow: ${list(p.subscribe.allow)} }`,
      `    } }`,
    );
  }
  lines.push('  ]', '}', '');
  return lines.join('\n');
}

function list(items: readonly string[]): string {
  return `[${items.map((i) => JSON.stringify(i)).join(', ')}]`;
}

function bad(message: string): BusError {
  return new BusError('INVALID_ARGUMENT', `invalid topology: ${message}`);
}
