// What the fleet-trust suites forge and watch: frames signed with a node's seed (as that node,
// or a thief of its seed, would send them) and the `message:denied` events of a bus.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Orchestrator } from '../../src/index.js';
import { keysFromSeed } from '../../src/nats/keys.js';
import { Proofs } from '../../src/nats/proofs.js';
import { loadRoster, RosterIndex } from '../../src/nats/roster.js';
import { Subjects } from '../../src/nats/subjects.js';
import { messageLine } from '../../src/nats/wire.js';

/** A fleet written by `switchboard fleet init … --out dir`, for bus `bus`. */
export interface FleetFiles {
  readonly dir: string;
  readonly bus: string;
}

/**
 * An ask from `from` to `to` signed (Ed25519, `proof: 'signature'`) with `signer`'s seed,
 * on the subject the broker routes to `to`; sealed for `peer` when `seal` is true.
 */
export function signedFrame(
  fleet: FleetFiles,
  signer: string,
  to: string,
  from: string,
  meta: Partial<Parameters<typeof messageLine>[0]> = {},
  payload = '{}',
  peer?: string,
  seal = false,
): { subject: string; data: Uint8Array } {
  const roster = new RosterIndex(loadRoster(join(fleet.dir, 'roster.json')));
  const keys = keysFromSeed(readFileSync(join(fleet.dir, `${signer}.nk`), 'utf8'));
  const proofs = new Proofs({ bus: fleet.bus, node: signer, roster, keys, proof: 'signature' });
  const subject = new Subjects(fleet.bus).inbound(to, from, 'ask');
  const line = messageLine({ id: `mforged-${Math.random().toString(36).slice(2, 10)}`, intent: 'echo', ts: Date.now(), conversationId: 'c', depth: 0, priority: 'normal', budgetMs: 5000, node: signer, ...meta });
  return { subject, data: proofs.wrap(subject, line, payload, peer, seal) };
}

/** Every `message:denied` of a bus, as it happens. */
export function denials(bus: Orchestrator): Array<{ code: string; reason: string }> {
  const seen: Array<{ code: string; reason: string }> = [];
  bus.events.on('message:denied', (e) => seen.push({ code: e.code, reason: e.reason }));
  return seen;
}
