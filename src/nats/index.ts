/**
 * `agent-switchboard/nats`: the NATS transport that carries one bus across processes and
 * machines (see docs/nodes.md).
 *
 * {@link natsTransport} connects a node to a NATS server (JetStream enabled) and implements
 * the orchestrator's transport seam: bus-wide agent id claims with a lease, a synchronous
 * directory of every node's agents, and asks, delegates (progress, cancel) and notifies
 * between nodes on subjects whose sender the broker pins to the node's credentials.
 */
export { natsTransport } from './transport.js';
export type { NatsTransportOptions } from './options.js';
