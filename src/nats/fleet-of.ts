// What `fleetApprovals` reads of a secure natsTransport: where the broker is and the roster
// it was built with. Kept beside the transport, not on it, so the transport's face holds
// nothing a caller can use.
import type { RosterIndex } from './roster.js';
import type { Subjects } from './subjects.js';

/** The fleet a secure natsTransport belongs to. */
export interface FleetOf {
  readonly servers: string | readonly string[];
  readonly roster: RosterIndex;
  readonly subjects: Subjects;
  readonly connectTimeoutMs?: number;
}

const fleets = new WeakMap<object, FleetOf>();

/** Records the fleet of a transport built with a roster. @internal */
export function rememberFleet(transport: object, fleet: FleetOf): void {
  fleets.set(transport, fleet);
}

/** The fleet of `transport`, or undefined when it is not a natsTransport built with a roster. @internal */
export function fleetOf(transport: unknown): FleetOf | undefined {
  return typeof transport === 'object' && transport !== null ? fleets.get(transport) : undefined;
}
