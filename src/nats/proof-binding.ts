/**
 * Whether a peer's proof kept with an audit entry is a proof of that entry.
 *
 * A proof's signature covers what the peer sent: the subject (recipient, sender and type of a
 * message; the asker's inbox and the message of an answer), the metadata line (id, intent,
 * conversation, causation, node) and the payload's hash. Checking the signature alone says
 * the peer sent *something*; `switchboard verify --roster` must also check that the entry
 * records that very thing, or a log rewritten with its chain recomputed could move a
 * genuine proof onto a row that says another sender, recipient, intent or id.
 */
import type { MessageLogEntry } from '../audit/types.js';
import { escapeToken, unescapeToken, Subjects } from './subjects.js';
import { decodeMessage } from './wire.js';

/** The parts of an entry a proof speaks about. */
export type ProvenEntry = Pick<MessageLogEntry, 'messageId' | 'from' | 'to' | 'type' | 'intent' | 'conversationId' | 'causationId' | 'inReplyTo' | 'node' | 'peerNode'>;

/**
 * The ways `entry` differs from what its proof (`proofJson`, as the receiving link kept it)
 * says was sent on `bus`: empty when the proof is about this entry.
 */
export function proofBindingDifferences(proofJson: string, entry: ProvenEntry, bus: string): string[] {
  let p: { node?: unknown; subject?: unknown; line?: unknown };
  try {
    p = JSON.parse(proofJson) as typeof p;
  } catch {
    return ['the recorded proof is not JSON'];
  }
  const { node, subject, line } = p;
  if (typeof node !== 'string' || typeof subject !== 'string' || typeof line !== 'string') return ['the recorded proof is malformed'];
  const out: string[] = [];
  const same = (what: string, recorded: string | undefined, proven: string | undefined) => {
    if (recorded !== proven) out.push(`${what} is ${JSON.stringify(recorded ?? null)} but the proof says ${JSON.stringify(proven ?? null)}`);
  };
  same('peerNode', entry.peerNode, node);
  const subjects = subjectsOf(bus);
  if (entry.type === 'reply') {
    // The asker's reply row: an answer on this node's inbox to the message it replies to.
    const fields = line.split(' ');
    if (fields.length !== 3 || fields[1] !== 'r') return [...out, `the proof is not of a reply (line ${JSON.stringify(line.slice(0, 80))})`];
    same('inReplyTo', entry.inReplyTo, fields[2]);
    const prefix = entry.node === undefined ? undefined : `${subjects.inboxPrefix(entry.node)}.`;
    if (prefix === undefined || !subject.startsWith(prefix)) return [...out, `the proof's subject ${JSON.stringify(subject.slice(0, 200))} is not an inbox of node ${JSON.stringify(entry.node ?? null)}`];
    const token = subject.slice(prefix.length).split('__');
    let asked: string | undefined;
    try {
      if (token.length === 2 && token[0] === escapeToken(fields[2]!)) asked = unescapeToken(token[1]!);
    } catch {
      asked = undefined;
    }
    same('from (the agent that was asked)', entry.from, asked);
    return out;
  }
  let route;
  try {
    route = subjects.parseInbound(subject);
  } catch {
    return [...out, `the proof's subject ${JSON.stringify(subject.slice(0, 200))} is not a message subject of bus "${bus}"`];
  }
  same('from', entry.from, route.from);
  same('to', entry.to, route.to);
  same('type', entry.type, route.kind);
  let meta;
  try {
    meta = decodeMessage(Buffer.from(`${line}\n`, 'latin1'), 0, false);
  } catch {
    return [...out, `the proof's metadata line does not decode`];
  }
  same('messageId', entry.messageId, meta.id);
  same('intent', entry.intent, meta.intent);
  same('conversationId', entry.conversationId, meta.conversationId);
  same('causationId', entry.causationId, meta.causationId);
  same("the sending node named in the proof's line", node, meta.node);
  return out;
}

let last: Subjects | undefined;
/** One {@link Subjects} per bus at a time: a log is checked against one roster, row after row. */
function subjectsOf(bus: string): Subjects {
  if (last?.bus !== bus) last = new Subjects(bus);
  return last;
}
