// The two nodes of `npm run bench:nodes`: a fleet of two (fleet init, then the claims bucket),
// each node an Orchestrator on its own NATS connection. Node `bench-a` serves `client`, node
// `bench-b` serves `echo`; bench/responder.ts runs `bench-b` in a process of its own.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Orchestrator, type InboundPerNode } from '../src/index.js';
import { runFleetBucket, runFleetInit } from '../src/cli/fleet.js';
import { natsTransport, type NatsTransportOptions } from '../src/nats/index.js';

export type Audit = 'off' | 'memory' | 'file';
/** Insecure (no roster); a roster with every message signed, MAC'd, or MAC'd with signed digests; sealed besides. */
export type Trust = 'insecure' | 'signed' | 'mac' | 'digest' | 'sealed' | 'digest-sealed';

/** How both nodes of one pair are set up (what a responder process is told). */
export interface PairSetup {
  readonly url: string;
  readonly bus: string;
  readonly audit: Audit;
  readonly trust: Trust;
  /** Where the fleet's files and the audit files go. */
  readonly dir: string;
  /** `audit.worker` of the file logs, when given. */
  readonly auditWorker?: boolean;
  /** `limits.inboundPerNode` of both nodes, when given. */
  readonly inboundPerNode?: InboundPerNode | false;
}

const quietIO = { out: () => {}, err: (l: string) => console.error(l) };

/** Writes the fleet of a pair (roster, seeds) and creates its claims bucket; nothing for an insecure one. */
export async function createFleet(setup: PairSetup): Promise<void> {
  if (setup.trust === 'insecure') return;
  const out = join(setup.dir, setup.bus);
  writeFileSync(`${out}.json`, JSON.stringify({ bus: setup.bus, nodes: { 'bench-a': ['client'], 'bench-b': ['echo'] } }));
  if (runFleetInit([`${out}.json`, '--out', out], quietIO) !== 0) throw new Error('fleet init failed');
  if ((await runFleetBucket(['--servers', setup.url, '--roster', join(out, 'roster.json')], quietIO)) !== 0) throw new Error('fleet bucket failed');
}

/** One node's transport options in a fleet written by {@link createFleet}. */
function trustOptions(setup: PairSetup, node: string): Partial<NatsTransportOptions> {
  const { trust } = setup;
  if (trust === 'insecure') return { insecure: true };
  const out = join(setup.dir, setup.bus);
  return {
    roster: join(out, 'roster.json'),
    nkeySeed: readFileSync(join(out, `${node}.nk`), 'utf8'),
    ...(trust === 'sealed' || trust === 'digest-sealed' ? { seal: 'always' as const } : {}),
    ...(trust === 'signed' || trust === 'sealed' ? { proof: 'signature' as const } : {}),
    ...(trust === 'mac' ? { proof: 'mac' as const } : {}),
    ...(trust === 'digest' || trust === 'digest-sealed' ? { proof: 'digest' as const } : {}),
  };
}

/** Node `node` of the pair: its bus, connected and configured (agents not registered yet). */
export async function makeNode(setup: PairSetup, node: 'bench-a' | 'bench-b'): Promise<Orchestrator> {
  const { audit, dir, bus } = setup;
  return new Orchestrator({
    node,
    transport: await natsTransport({ servers: setup.url, bus, ...trustOptions(setup, node) }),
    policies: [{ from: 'client', to: 'echo', allow: ['ask'] }],
    limits: { rate: false, maxQueue: 1_000_000, ...(setup.inboundPerNode === undefined ? {} : { inboundPerNode: setup.inboundPerNode }) },
    audit:
      audit === 'off'
        ? false
        : audit === 'memory'
          ? { path: ':memory:' }
          : { path: join(dir, `${bus}-${node}.db`), ...(setup.auditWorker === undefined ? {} : { worker: setup.auditWorker }) },
  });
}

/** Registers `echo` on node `bench-b`: it answers every ask with its payload. */
export function serveEcho(b: Orchestrator): void {
  b.register('echo', { concurrency: 10_000, handlers: { echo: (payload) => payload } });
}

/**
 * Resolves once `client` reaches `echo`: a node's watch of the claims may not show another
 * node's agent yet right after both are ready. Gives up after about 5 s.
 */
export async function untilEchoAnswers(client: { ask(to: string, intent: string, payload: unknown): Promise<unknown> }): Promise<void> {
  for (let tries = 0; ; tries++) {
    try {
      await client.ask('echo', 'echo', 0);
      return;
    } catch (e) {
      if (tries > 500 || (e as { code?: string }).code !== 'UNKNOWN_AGENT') throw e;
      await new Promise((r) => setTimeout(r, 10));
    }
  }
}
