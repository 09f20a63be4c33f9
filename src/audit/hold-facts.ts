/**
 * What a restored hold acts on besides the columns every attempt row has: the sender's trust
 * for the policy re-check at approval, how long it stays held, and the envelope fields the
 * row does not record. Written in the `hold` column of the hold's `pending` row, so the hash
 * chain vouches for them; the hold table only caches the payload.
 */
import { PRIORITIES, type Priority } from '../envelope.js';

/** The chained facts of one durable hold. */
export interface HoldFacts {
  /** The sender's trust when it was held (the policy is checked again with it on approval). */
  readonly trust: number;
  /** Epoch ms at which the hold expires. */
  readonly expiresAt: number;
  readonly priority: Priority;
  readonly depth: number;
  /** The envelope's deadline, when it has one. */
  readonly deadline?: number;
}

/**
 * The canonical JSON of a hold's facts (fixed key order, so its row always encodes the same
 * way). Facts the bus made are always valid; one that is not would read back as unreadable
 * (the hold is then never delivered), never as something else.
 */
export function encodeHoldFacts(f: HoldFacts): string {
  const { trust, expiresAt, priority, depth, deadline } = f;
  return JSON.stringify(deadline !== undefined ? { trust, expiresAt, priority, depth, deadline } : { trust, expiresAt, priority, depth });
}

/** The facts a `hold` column holds, or undefined when it is not valid JSON of valid facts. */
export function decodeHoldFacts(json: unknown): HoldFacts | undefined {
  if (typeof json !== 'string') return undefined;
  try {
    return readHoldFacts(JSON.parse(json));
  } catch {
    return undefined;
  }
}

function readHoldFacts(v: unknown): HoldFacts | undefined {
  if (typeof v !== 'object' || v === null) return undefined;
  const { trust, expiresAt, priority, depth, deadline } = v as Record<string, unknown>;
  if (typeof trust !== 'number' || !Number.isFinite(trust)) return undefined;
  if (typeof expiresAt !== 'number' || !Number.isFinite(expiresAt)) return undefined;
  if (!PRIORITIES.includes(priority as Priority)) return undefined;
  if (typeof depth !== 'number' || !Number.isSafeInteger(depth) || depth < 0) return undefined;
  if (deadline !== undefined && (typeof deadline !== 'number' || !Number.isFinite(deadline))) return undefined;
  return { trust, expiresAt, priority: priority as Priority, depth, ...(deadline !== undefined ? { deadline } : {}) };
}
