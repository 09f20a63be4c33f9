/**
 * `switchboard nats-config <topology.json>`: writes the nats-server authorization block and
 * one nkey seed file per node from an agent-to-node map (see `src/nats/permissions.ts`).
 *
 * Needs the optional peer `@nats-io/nkeys`; loaded only when this command runs.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { authorizationBlock, checkTopology } from '../nats/permissions.js';
import { escapeToken } from '../nats/subjects.js';

/** Where the command writes its lines. */
export interface NatsConfigIO {
  out(line: string): void;
  err(line: string): void;
}

export const NATS_CONFIG_HELP = `Usage: switchboard nats-config <topology.json> [--out DIR] [--force]

Write the nats-server authorization block (DIR/auth.conf, include it from your server
config) and one credentials file per node (DIR/<node>.nk, an nkey seed, mode 600) from an
agent-to-node map. Each node may publish only as its own agents, subscribe only to its own
agents' subjects and its own inbox, and answer each request once.

topology.json:
  { "bus": "shop", "nodes": { "billing-1": ["payment", "invoice"], "web-1": ["frontend"] } }

Options:
  --out DIR      Where to write (default: ./nats-config)
  --force        Overwrite existing files (new seeds: restart every node with them)
  -h, --help     Show this help

Needs the package @nats-io/nkeys (npm install @nats-io/nkeys).`;

interface NkeysModule {
  createUser(): { getPublicKey(): string; getSeed(): Uint8Array };
}

/**
 * Runs the command; returns the exit code (0 written, 1 cannot read or write, 2 bad usage
 * or bad topology). Never throws.
 */
export function runNatsConfig(args: readonly string[], io: NatsConfigIO): number {
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
    io.out(NATS_CONFIG_HELP);
    return 0;
  }
  if (positionals.length !== 1) return usage(io, `nats-config takes one topology file, got ${positionals.length}`);
  const file = positionals[0]!;
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    io.err(`switchboard: cannot read topology ${JSON.stringify(file)}: ${(e as Error).message}`);
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
    io.err('switchboard: nats-config needs the package @nats-io/nkeys: npm install @nats-io/nkeys');
    return 1;
  }
  const dir = resolve(values.out ?? 'nats-config');
  const nodes = Object.keys(topology.nodes);
  const targets = ['auth.conf', ...nodes.map((n) => `${escapeToken(n)}.nk`)].map((f) => join(dir, f));
  const existing = targets.filter((t) => existsSync(t));
  if (existing.length > 0 && values.force !== true) {
    io.err(`switchboard: ${existing[0]} exists; pass --force to overwrite (nodes then need their new seeds)`);
    return 1;
  }
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const keys = new Map<string, string>();
    for (const node of nodes) {
      const kp = nkeys.createUser();
      keys.set(node, kp.getPublicKey());
      writeFileSync(join(dir, `${escapeToken(node)}.nk`), `${new TextDecoder().decode(kp.getSeed())}\n`, { mode: 0o600 });
    }
    writeFileSync(join(dir, 'auth.conf'), authorizationBlock(topology, keys), { mode: 0o644 });
  } catch (e) {
    io.err(`switchboard: cannot write to ${dir}: ${(e as Error).message}`);
    return 1;
  }
  io.out(`wrote ${join(dir, 'auth.conf')} (bus "${topology.bus}", ${nodes.length} node${nodes.length === 1 ? '' : 's'})`);
  for (const node of nodes) io.out(`wrote ${join(dir, `${escapeToken(node)}.nk`)} (seed of node "${node}": keep it secret)`);
  return 0;
}

function usage(io: NatsConfigIO, message: string): number {
  io.err(`switchboard: ${message}`);
  io.err('Run "switchboard nats-config --help" for usage.');
  return 2;
}
