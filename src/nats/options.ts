/**
 * The options of {@link natsTransport}: one object, checked once with a strict schema so a
 * misspelled key is an error that names it.
 */
import { z } from 'zod';
import { parseOptions } from '../options-schema.js';
import { BUS_NAME_PATTERN } from './subjects.js';

/** How a node reaches NATS and which bus it joins. */
export interface NatsTransportOptions {
  /** One server URL (`nats://127.0.0.1:4222`) or a list of them. */
  servers: string | readonly string[];
  /** The bus name: nodes with the same name and server see each other. `^[A-Za-z0-9][A-Za-z0-9-]{0,63}$`. */
  bus: string;
  /** This node's nkey seed (`SU…`), the contents of the `.nk` file `switchboard nats-config` wrote. @default none (an open server) */
  nkeySeed?: string;
  /** How long an agent id stays claimed after its node stops renewing, in ms. @default 15000 */
  leaseMs?: number;
  /** Give up the first connect after this many ms. @default 5000 */
  connectTimeoutMs?: number;
}

const schema = z
  .strictObject({
    servers: z.union([z.string().min(1), z.array(z.string().min(1)).min(1).max(64)]),
    bus: z.string().regex(BUS_NAME_PATTERN, `must match ${BUS_NAME_PATTERN}`),
    nkeySeed: z.string().regex(/^\s*SU[A-Z2-7]{56}\s*$/, 'must be a user nkey seed (SU…)').optional(),
    leaseMs: z.number().int().min(150).max(3_600_000).optional(),
    connectTimeoutMs: z.number().int().min(1).max(600_000).optional(),
  });

/** Checks `options` once and returns a frozen copy; throws `INVALID_ARGUMENT` naming the key. */
export function checkNatsOptions(options: unknown): Readonly<NatsTransportOptions> {
  return Object.freeze(parseOptions(schema, options, 'natsTransport') as NatsTransportOptions);
}
