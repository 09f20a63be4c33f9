/**
 * The options of {@link natsTransport}: one object, checked once with a strict schema so a
 * misspelled key is an error that names it.
 */
import { z } from 'zod';
import { BusError } from '../errors.js';
import { parseOptions } from '../options-schema.js';
import type { Roster } from './roster.js';
import { BUS_NAME_PATTERN } from './subjects.js';

/** How a node reaches NATS and which bus it joins. */
export interface NatsTransportOptions {
  /** One server URL (`nats://127.0.0.1:4222`) or a list of them. */
  servers: string | readonly string[];
  /** The bus name: nodes with the same name and server see each other. `^[A-Za-z0-9][A-Za-z0-9-]{0,63}$`. */
  bus: string;
  /**
   * The fleet's roster (`roster.json` from `switchboard fleet init`), as an object or the
   * path of its file: every claim and cross-node message is signed by its node and checked
   * against it. Required unless `insecure: true`.
   */
  roster?: Roster | string;
  /**
   * This node's nkey seed (`SU…`), the contents of its `.nk` file: its broker credentials
   * and its signing (and sealing) key. Required with `roster`; it must be the key the
   * roster lists for this node.
   */
  nkeySeed?: string;
  /**
   * Run without a roster: nothing is signed or checked beyond the broker's word, one
   * warning is printed, and every cross-node audit row is marked unverified. For tests and
   * local demos only. @default false
   */
  insecure?: boolean;
  /**
   * `'always'`: encrypt every payload, reply, progress note and error text for the
   * recipient node's sealing key (X25519 + AES-256-GCM), and refuse unsealed messages from
   * peers. Needs `roster`. @default 'never'
   */
  seal?: 'always' | 'never';
  /**
   * How this node proves it made each frame: `'digest'` (a MAC on routine frames, and one
   * frame in 64 to each peer, or the first after 100 ms, signed with the covers of the MAC'd
   * frames sent to it since the last signed one; a cover no signed frame listed within
   * 100 ms, or by `close()`, goes in a signed digest frame of its own, which the receiver
   * records as a `digest` audit record, not a message: the receiver's log then proves to
   * anyone holding the roster every row older than 100 ms, or all once the sender closed),
   * `'signature'` (Ed25519 on every frame: each row proven at once, at about a third of the
   * rate) or `'mac'` (HMAC-SHA256 under a key only this node and the receiving one share,
   * agreed from their roster sealing keys: cheapest, equally sure for the receiver, but
   * provable to the two nodes only). Receivers accept all three. @default 'digest'
   */
  proof?: 'signature' | 'mac' | 'digest';
  /**
   * How old (or how far in the future, for a peer's clock ahead of this one) a message's
   * signed timestamp may be, in ms; older ones are refused as replays, and ids admitted
   * within it are refused when repeated. @default 120000
   */
  freshnessMs?: number;
  /** How long an agent id stays claimed after its node stops renewing, in ms. @default 15000 */
  leaseMs?: number;
  /** Give up the first connect after this many ms. @default 5000 */
  connectTimeoutMs?: number;
}

const schema = z
  .strictObject({
    servers: z.union([z.string().min(1), z.array(z.string().min(1)).min(1).max(64)]),
    bus: z.string().regex(BUS_NAME_PATTERN, `must match ${BUS_NAME_PATTERN}`),
    roster: z.union([z.string().min(1), z.looseObject({})]).optional(),
    nkeySeed: z.string().regex(/^\s*SU[A-Z2-7]{56}\s*$/, 'must be a user nkey seed (SU…)').optional(),
    insecure: z.boolean().optional(),
    seal: z.enum(['always', 'never']).optional(),
    proof: z.enum(['signature', 'mac', 'digest']).optional(),
    freshnessMs: z.number().int().min(1_000).max(3_600_000).optional(),
    leaseMs: z.number().int().min(150).max(3_600_000).optional(),
    connectTimeoutMs: z.number().int().min(1).max(600_000).optional(),
  });

/**
 * A refusal of one natsTransport option in the convention's wording:
 * `Invalid natsTransport options: <key>: <why>`.
 */
export function natsOptionError(key: keyof NatsTransportOptions, why: string, cause?: unknown): BusError {
  return new BusError('INVALID_ARGUMENT', `Invalid natsTransport options: ${key}: ${why}`, cause === undefined ? undefined : { cause });
}

/** Checks `options` once and returns a frozen copy; throws `INVALID_ARGUMENT` naming the key. */
export function checkNatsOptions(options: unknown): Readonly<NatsTransportOptions> {
  const o = parseOptions(schema, options, 'natsTransport') as NatsTransportOptions;
  if (o.roster === undefined && o.insecure !== true) {
    throw natsOptionError(
      'roster',
      'no roster given. Pass `roster` (roster.json from `switchboard fleet init`) and `nkeySeed` so every claim and message is signed and checked, or `insecure: true` for a test or a local demo (anyone who reaches the broker can then speak as any agent)',
    );
  }
  if (o.roster !== undefined && o.insecure === true) throw natsOptionError('insecure', 'pass either `roster` or `insecure: true`, not both');
  if (o.roster !== undefined && o.nkeySeed === undefined) throw natsOptionError('nkeySeed', "`roster` needs this node's `nkeySeed` (its .nk file from `switchboard fleet init`)");
  if (o.seal === 'always' && o.roster === undefined) throw natsOptionError('seal', "`seal: 'always'` needs a `roster` (the peers' sealing keys)");
  return Object.freeze(o);
}
