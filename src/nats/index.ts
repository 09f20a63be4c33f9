/**
 * `agent-switchboard/nats`: the NATS transport that carries one bus across processes and
 * machines (see docs/nodes.md).
 *
 * {@link natsTransport} connects a node to a NATS server (JetStream enabled) and implements
 * the orchestrator's transport seam: bus-wide agent id claims with a lease, a synchronous
 * directory of every node's agents, and asks, delegates (progress, cancel) and notifies
 * between nodes, every one signed by its node and checked against the fleet's
 * {@link Roster} (and sealed for the recipient node when asked).
 */
export { natsTransport } from './transport.js';
export type { NatsTransportOptions } from './options.js';
export { checkRoster, loadRoster } from './roster.js';
export { fleetApprovals } from './fleet-approvals.js';
export type { FleetApprovals, FleetApprovalsOptions, FleetApproval, FleetApproveOptions, FleetRejectOptions } from './fleet-approvals.js';
export type { Roster, RosterNode, RosterOperator } from './roster.js';
