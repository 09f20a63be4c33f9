/**
 * `agent-switchboard/nats`: the NATS transport that carries one bus across processes and
 * machines (see docs/nodes.md).
 *
 * Status: the carriage (subjects, wire format, link, claims, connection) and the
 * `switchboard nats-config` command are built and tested against a real nats-server; the
 * Orchestrator does not accept a `transport` yet, so {@link natsTransport} checks its options
 * and then throws. It is wired in the second phase of issue 12.
 */
import { checkNatsOptions, type NatsTransportOptions } from './options.js';

export type { NatsTransportOptions } from './options.js';

/**
 * Creates the NATS transport for `new Orchestrator({ node, transport })`.
 *
 * NOT WIRED YET: checks `options` (a bad one is `INVALID_ARGUMENT` naming the key), then
 * rejects with an error saying the transport is not wired to the Orchestrator yet.
 *
 * @example
 * const transport = await natsTransport({ servers: 'nats://127.0.0.1:4222', bus: 'shop' });
 */
export async function natsTransport(options: NatsTransportOptions): Promise<never> {
  checkNatsOptions(options);
  throw new Error('natsTransport is not wired to the Orchestrator yet (issue 12, phase 2): the NATS link, claims and nats-config are available, the Orchestrator `transport` option is not');
}
