/**
 * `switchboard fleet init <fleet.json>` (alias `switchboard nats-config`): the roster, the
 * node and operator seeds and the nats-server authorization block of a fleet; and
 * `switchboard fleet bucket`: the operator's one-time creation of the claims bucket with
 * rollup, purge and delete denied.
 *
 * Needs the optional peers `@nats-io/nkeys` (init) and `@nats-io/transport-node` (bucket);
 * loaded only when these commands run.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { keysFromSeed } from '../nats/keys.js';
import { authorizationBlock, checkTopology } from '../nats/permissions.js';
import { checkRoster, loadRoster, type Roster } from '../nats/roster.js';
import { escapeToken } from '../nats/subjects.js';

/** Where the commands write their lines. */
export interface FleetIO {
  out(line: string): void;
  err(line: string): void;
}

export const FLEET_INIT_HELP = `Usage: switchboard fleet init <fleet.json> [--out DIR] [--force]
       (also: switchboard nats-config <fleet.json> …)

Write a fleet's keys and configuration from its description:
  DIR/roster.json      the public roster: bus, per node its signing and sealing keys and its
                       agents, per operator its key. Give it to every node (natsTransport roster).
  DIR/<node>.nk        each node's secret seed (mode 600): its broker credentials, signing
                       and sealing key (natsTransport nkeySeed).
  DIR/<operator>.nk    each operator's secret seed (mode 600).
  DIR/auth.conf        the nats-server authorization block: include it from the server config.
Each node may publish only as its own agents, write only its own claims, subscribe only to
its own agents' subjects and its own inbox, and never create, purge or delete a stream.

fleet.json:
  { "bus": "shop", "nodes": { "billing-1": ["payment", "ledger"], "web-1": ["front", "chat-*"] },
    "operators": ["alice"] }
An agent given as "prefix*" covers every id that starts with prefix (the broker cannot pin
those: signatures do; see docs/nodes.md).

Options:
  --out DIR      Where to write (default: ./fleet)
  --force        Overwrite existing files (new keys: restart every node with them)
  -h, --help     Show this help

Then an operator creates the claims bucket once:
  switchboard fleet bucket --servers nats://… --creds DIR/<operator>.nk`;

export const FLEET_BUCKET_HELP = `Usage: switchboard fleet bucket --servers URL[,URL…] --creds OPERATOR.nk [--roster roster.json]

Create the claims bucket of the roster's bus (a JetStream stream) with the settings every
node checks: exactly the bucket's subject, one value per key, rollup, purge and delete
denied. An existing stream with these settings is left as it is; one with other settings is
reported, named, and left for you to delete.

Options:
  --servers URLS   The NATS server(s), comma-separated
  --creds FILE     The operator's seed file from fleet init (or a node-less user's seed)
  --roster FILE    The fleet's roster.json, for the bus name (default: roster.json beside
                   the --creds file, where fleet init wrote both)
  -h, --help       Show this help`;

interface NkeysModule {
  createUser(): { getPublicKey(): string; getSeed(): Uint8Array };
}

/** `switchboard fleet <init|bucket> …`. Returns the exit code (or a promise of it, for bucket). Never throws. */
export function runFleet(args: readonly string[], io: FleetIO): number | Promise<number> {
  const [sub, ...rest] = args;
  if (sub === 'init') return runFleetInit(rest, io);
  if (sub === 'bucket') return runFleetBucket(rest, io);
  if (sub === '-h' || sub === '--help' || sub === undefined) {
    (sub === undefined ? io.err : io.out)(`${FLEET_INIT_HELP}\n\n${FLEET_BUCKET_HELP}`);
    return sub === undefined ? 2 : 0;
  }
  return usage(io, `unknown fleet command "${sub}" (init or bucket)`);
}

/**
 * `fleet init`: returns the exit code (0 written, 1 cannot read or write, 2 bad usage or
 * bad fleet description). Never throws.
 */
export function runFleetInit(args: readonly string[], io: FleetIO): number {
  let values: { out?: string; force?: boolean; help?: boolean };
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args: [...args],
      allowPositionals: true,
      strict: true,
      options: { out: { type: 'string' }, force: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
    }));
  } catch (e) {
    return usage(io, (e as Error).message);
  }
  if (values.help === true) {
    io.out(FLEET_INIT_HELP);
    return 0;
  }
  if (positionals.length !== 1) return usage(io, `fleet init takes one fleet description file, got ${positionals.length}`);
  const file = positionals[0]!;
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    io.err(`switchboard: cannot read ${JSON.stringify(file)}: ${(e as Error).message}`);
    return 1;
  }
  let topology;
  try {
    topology = checkTopology(raw);
  } catch (e) {
    return usage(io, `${file}: ${(e as Error).message}`);
  }
  let nkeys: NkeysModule;
  try {
    nkeys = createRequire(import.meta.url)('@nats-io/nkeys') as NkeysModule;
  } catch {
    io.err('switchboard: fleet init needs the package @nats-io/nkeys: npm install @nats-io/nkeys');
    return 1;
  }
  const dir = resolve(values.out ?? 'fleet');
  const nodes = Object.keys(topology.nodes);
  const holders = [...nodes, ...topology.operators];
  const targets = ['auth.conf', 'roster.json', ...holders.map((n) => `${escapeToken(n)}.nk`)].map((f) => join(dir, f));
  const existing = targets.filter((t) => existsSync(t));
  if (existing.length > 0 && values.force !== true) {
    io.err(`switchboard: ${existing[0]} exists; pass --force to overwrite (nodes then need their new seeds)`);
    return 1;
  }
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const keys = new Map<string, string>();
    const rosterNodes: Record<string, Roster['nodes'][string]> = {};
    const operators: Record<string, Roster['operators'][string]> = {};
    for (const holder of holders) {
      const seed = new TextDecoder().decode(nkeys.createUser().getSeed());
      const k = keysFromSeed(seed);
      keys.set(holder, k.publicKey);
      if (Object.hasOwn(topology.nodes, holder)) rosterNodes[holder] = { signingKey: k.publicKey, sealingKey: k.sealingKey, agents: topology.nodes[holder]! };
      else operators[holder] = { key: k.publicKey };
      writeFileSync(join(dir, `${escapeToken(holder)}.nk`), `${seed}\n`, { mode: 0o600 });
    }
    const roster = checkRoster({ v: 1, bus: topology.bus, nodes: rosterNodes, operators });
    writeFileSync(join(dir, 'roster.json'), `${JSON.stringify(roster, null, 2)}\n`, { mode: 0o644 });
    writeFileSync(join(dir, 'auth.conf'), authorizationBlock(topology, keys), { mode: 0o644 });
  } catch (e) {
    io.err(`switchboard: cannot write to ${dir}: ${(e as Error).message}`);
    return 1;
  }
  io.out(`wrote ${join(dir, 'roster.json')} (bus "${topology.bus}", ${nodes.length} node${nodes.length === 1 ? '' : 's'}, ${topology.operators.length} operator${topology.operators.length === 1 ? '' : 's'}: public, give it to every node)`);
  io.out(`wrote ${join(dir, 'auth.conf')} (include it from nats-server.conf)`);
  for (const node of nodes) io.out(`wrote ${join(dir, `${escapeToken(node)}.nk`)} (seed of node "${node}": keep it secret)`);
  for (const op of topology.operators) io.out(`wrote ${join(dir, `${escapeToken(op)}.nk`)} (seed of operator "${op}": keep it secret)`);
  const op = topology.operators[0];
  io.out(
    op === undefined
      ? 'next: create the claims bucket once with `switchboard fleet bucket` (add an operator to fleet.json to get credentials allowed to)'
      : `next: an operator creates the claims bucket once: switchboard fleet bucket --servers nats://… --creds ${join(dir, `${escapeToken(op)}.nk`)}`,
  );
  return 0;
}

/** `fleet bucket`: resolves with the exit code (0 created or already right, 1 cannot, 2 bad usage). Never rejects. */
export async function runFleetBucket(args: readonly string[], io: FleetIO): Promise<number> {
  let values: { servers?: string; creds?: string; roster?: string; help?: boolean };
  try {
    ({ values } = parseArgs({
      args: [...args],
      strict: true,
      options: { servers: { type: 'string' }, creds: { type: 'string' }, roster: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
    }));
  } catch (e) {
    return usage(io, (e as Error).message);
  }
  if (values.help === true) {
    io.out(FLEET_BUCKET_HELP);
    return 0;
  }
  if (values.servers === undefined) return usage(io, 'fleet bucket needs --servers (and --creds on a server with authorization)');
  const rosterPath = values.roster ?? (values.creds === undefined ? undefined : join(dirname(values.creds), 'roster.json'));
  if (rosterPath === undefined) return usage(io, 'fleet bucket needs --roster (or --creds beside the roster.json fleet init wrote)');
  let roster: Roster;
  let seed: string | undefined;
  try {
    roster = loadRoster(rosterPath);
    seed = values.creds === undefined ? undefined : readFileSync(values.creds, 'utf8').trim();
  } catch (e) {
    io.err(`switchboard: ${(e as Error).message}`);
    return 1;
  }
  try {
    const { connect, nkeyAuthenticator } = await import('@nats-io/transport-node');
    const { openClaimsStream, claimsStreamConfig } = await import('../nats/bucket.js');
    const nc = await connect({
      servers: values.servers.split(',').map((s) => s.trim()),
      timeout: 5_000,
      ...(seed === undefined ? {} : { authenticator: nkeyAuthenticator(new TextEncoder().encode(seed)) }),
    });
    try {
      await openClaimsStream(nc, roster.bus, true);
      io.out(`claims bucket of bus "${roster.bus}" ready: stream "${claimsStreamConfig(roster.bus).name}" with rollup, purge and delete denied`);
      return 0;
    } finally {
      await nc.close();
    }
  } catch (e) {
    io.err(`switchboard: fleet bucket: ${(e as Error).message}`);
    return 1;
  }
}

function usage(io: FleetIO, message: string): number {
  io.err(`switchboard: ${message}`);
  io.err('Run "switchboard fleet --help" for usage.');
  return 2;
}
