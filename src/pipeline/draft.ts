import { decodePayload, type EncodedPayload } from '../codec.js';
import type { Envelope, MessageType, Priority } from '../envelope.js';

import type { PolicyDecision } from '../policy.js';
import { MAX_INTENT_LENGTH, recordedText } from './checks.js';

/** What a send is known to be while it is checked: enough to audit a refusal at any step. */
export interface Draft {
  readonly id: string;
  readonly ts: number;
  readonly type: MessageType;
  readonly from: string;
  to: string;
  readonly intent: string;
  readonly conversationId: string;
  readonly causationId: string | undefined;
  readonly inReplyTo?: string;
  encoded: EncodedPayload | undefined;
  hash: string;
  decision: PolicyDecision | undefined;
  /** The W3C trace context its envelopes carry (a traced send, or one from another node). */
  traceparent: string | undefined;
  /** The node at the other end, for a message that crosses nodes (recorded with this node's id). */
  peerNode?: string;
  /** On a receipt: the sending node's proof as its transport verified it, kept in the row. */
  proof?: string;
}

/** The chain a send hangs from: the envelope of the message whose handler sends it. */
export interface ChainParent {
  readonly envelope: Envelope;
}

/** A draft of a send; `to` and `intent` are kept short and printable whatever they are. */
export function makeDraft(id: string, ts: number, type: MessageType, from: string, to: unknown, intent: unknown, parent: ChainParent | undefined): Draft {
  return {
    id,
    ts,
    type,
    from,
    to: recordedText(to, 256),
    intent: recordedText(intent, MAX_INTENT_LENGTH),
    conversationId: parent?.envelope.conversationId ?? id,
    causationId: parent?.envelope.id,
    encoded: undefined,
    hash: '',
    decision: undefined,
    traceparent: undefined,
  };
}

/** A reply's draft: from the replier to the asker, in the ask's conversation. */
export function replyDraft(id: string, ts: number, from: string, ask: Envelope, encoded: EncodedPayload | undefined, hash: string): Draft {
  return {
    id,
    ts,
    type: 'reply',
    from,
    to: ask.from,
    intent: ask.intent,
    conversationId: ask.conversationId,
    causationId: ask.id,
    inReplyTo: ask.id,
    encoded,
    hash,
    decision: undefined,
    traceparent: undefined,
  };
}

/** The frozen envelope for the recipient; its payload is the draft's frozen copy (or `payload`). */
export function envelopeOf(draft: Draft, priority: Priority, depth: number, deadline: number | undefined, payload?: unknown): Envelope {
  const envelope: { -readonly [K in keyof Envelope]: Envelope[K] } = {
    id: draft.id,
    type: draft.type,
    from: draft.from,
    to: draft.to,
    intent: draft.intent,
    payload: payload !== undefined ? payload : decodePayload(draft.encoded!),
    ts: draft.ts,
    conversationId: draft.conversationId,
    priority,
    depth,
  };
  if (draft.causationId !== undefined) envelope.causationId = draft.causationId;
  if (draft.inReplyTo !== undefined) envelope.inReplyTo = draft.inReplyTo;
  if (deadline !== undefined) envelope.deadline = deadline;
  if (draft.traceparent !== undefined) (envelope as { traceparent?: string }).traceparent = draft.traceparent;
  return Object.freeze(envelope);
}
