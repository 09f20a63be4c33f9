/**
 * The claims bucket's stream: the settings it must have, created by an operator
 * (`switchboard fleet bucket`), and checked by every node before it trusts what it reads.
 *
 * A key-value bucket is a JetStream stream. Its defaults allow a `Nats-Rollup` header (one
 * message on any key that wipes every other key) and purges; a stream made by someone else
 * could carry extra subjects (so it captures the bus's messages), republish them, or mirror
 * or source another stream. The expected stream has exactly the bucket's subject, at most one
 * value per key, and denies rollup, purge and delete in its own settings, so no client, a
 * node included, can wipe other nodes' claims whatever its permissions allow.
 */
import { jetstreamManager, type StreamConfig, type StreamInfo } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { BusError } from '../errors.js';
import { Subjects } from './subjects.js';

/** The largest claim value a node writes (a signed JSON document). */
export const MAX_CLAIM_BYTES = 64 * 1024;

/** The stream name and the settings of the claims bucket of `bus`. */
export function claimsStreamConfig(bus: string): Partial<StreamConfig> & { name: string; subjects: string[] } {
  const s = new Subjects(bus);
  const bucket = s.claimsBucket();
  return {
    name: `KV_${bucket}`,
    subjects: [`$KV.${bucket}.>`],
    max_msgs_per_subject: 1,
    max_msg_size: MAX_CLAIM_BYTES,
    allow_rollup_hdrs: false,
    deny_delete: true,
    deny_purge: true,
    allow_direct: true,
  } as Partial<StreamConfig> & { name: string; subjects: string[] };
}

/**
 * The ways `info`'s settings differ from the expected claims stream of `bus` (empty when
 * they match): each names the setting, what was found and what is expected.
 */
export function claimsStreamDifferences(info: StreamInfo, bus: string): string[] {
  const want = claimsStreamConfig(bus);
  const c = info.config as StreamConfig & Record<string, unknown>;
  const out: string[] = [];
  const subjects = c.subjects ?? [];
  if (subjects.length !== 1 || subjects[0] !== want.subjects[0]) out.push(`subjects ${JSON.stringify(subjects)} (expected exactly ${JSON.stringify(want.subjects)})`);
  if (c.allow_rollup_hdrs === true) out.push('allow_rollup_hdrs is true (a rollup would wipe every claim)');
  if (c.deny_purge !== true) out.push('deny_purge is false (a purge would wipe claims)');
  if (c.deny_delete !== true) out.push('deny_delete is false');
  if (c.republish !== undefined && c.republish !== null) out.push(`republish ${JSON.stringify(c.republish)} (claims must not be copied elsewhere)`);
  if (c.mirror !== undefined && c.mirror !== null) out.push(`mirror ${JSON.stringify(c.mirror)}`);
  if (Array.isArray(c.sources) && c.sources.length > 0) out.push(`sources ${JSON.stringify(c.sources)}`);
  if (c.max_msgs_per_subject !== 1) out.push(`max_msgs_per_subject ${c.max_msgs_per_subject} (expected 1)`);
  if (c.sealed === true) out.push('sealed is true (claims could not be written)');
  if (Array.isArray(c.subject_transform) || (c.subject_transform !== undefined && c.subject_transform !== null)) out.push(`subject_transform ${JSON.stringify(c.subject_transform)}`);
  return out;
}

/** Throws `INVALID_ARGUMENT` naming every difference when `info` is not the expected claims stream. */
export function assertClaimsStream(info: StreamInfo, bus: string): void {
  const diff = claimsStreamDifferences(info, bus);
  if (diff.length > 0) {
    throw new BusError(
      'INVALID_ARGUMENT',
      `the claims stream "${info.config.name}" of bus "${bus}" has unexpected settings, refused: ${diff.join('; ')}. Delete it and let an operator create it with \`switchboard fleet bucket\``,
    );
  }
}

/**
 * Reads the claims stream's settings; `create` makes it (with the expected settings) when it
 * does not exist. Resolves with its info; rejects with `INVALID_ARGUMENT` when its settings
 * differ, or with a message naming `switchboard fleet bucket` when it is missing.
 */
export async function openClaimsStream(nc: NatsConnection, bus: string, create: boolean): Promise<StreamInfo> {
  const want = claimsStreamConfig(bus);
  const jsm = await jetstreamManager(nc);
  let info: StreamInfo;
  try {
    info = await jsm.streams.info(want.name);
  } catch (e) {
    if (!/stream not found/i.test(String((e as Error)?.message))) throw e;
    if (!create) {
      throw new BusError('TRANSPORT_UNAVAILABLE', `the claims bucket of bus "${bus}" (stream "${want.name}") does not exist: an operator creates it once with \`switchboard fleet bucket --servers … --creds <operator>.nk --roster roster.json\``);
    }
    try {
      info = await jsm.streams.add(want);
    } catch (e2) {
      // Another node made it at the same moment: read what it made.
      if (!/already in use|subjects overlap|already exists/i.test(String((e2 as Error)?.message))) throw e2;
      info = await jsm.streams.info(want.name);
    }
  }
  assertClaimsStream(info, bus);
  return info;
}
