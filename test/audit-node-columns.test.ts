// The node columns of the audit log: written only on records of messages that crossed nodes,
// so every other record keeps the bytes (and so the hash) it had before they existed.
import { describe, expect, it } from 'vitest';
import { SqliteAuditLog } from '../src/audit/index.js';
import { encodeRow } from '../src/audit/hash-chain.js';
import { toRow } from '../src/audit/records.js';
import type { AttemptRecord } from '../src/audit/types.js';

const attempt: AttemptRecord = {
  kind: 'attempt',
  ts: 1,
  messageId: 'm1',
  from: 'a',
  to: 'b',
  type: 'ask',
  intent: 'echo',
  payloadHash: 'h',
  payloadBytes: 2,
  decision: 'allowed',
  policyVersion: 1,
  conversationId: 'm1',
};

describe('audit rows with node columns', () => {
  it('encodes a record without node fields exactly as before (22 columns, no trailing nulls)', () => {
    const row = toRow(attempt, 1);
    expect(row).toHaveLength(22);
    expect(encodeRow(row)).toBe(JSON.stringify([1, 'attempt', 1, 'm1', 'b', 'a', 'ask', 'echo', 'h', 2, 'allowed', null, null, 1, null, null, null, null, null, 'm1', null, null]));
  });

  it('appends node and peer node after an unset truncated column', () => {
    const row = toRow({ ...attempt, node: 'n1', peerNode: 'n2' }, 1);
    expect(row.slice(22)).toEqual([null, 'n1', 'n2']);
  });

  it('keeps truncated in its column when the node columns follow it', () => {
    const row = toRow({ ...attempt, reason: 'x'.repeat(2000), node: 'n1', peerNode: 'n2' }, 1);
    expect(row.slice(22)).toEqual([{ reason: 2000 }, 'n1', 'n2']);
  });

  it('stores, returns and verifies node and peer node beside rows without them', () => {
    const log = new SqliteAuditLog({ path: ':memory:' });
    log.append([attempt, { ...attempt, messageId: 'm2', conversationId: 'm2', node: 'n1', peerNode: 'n2' }, { kind: 'outcome', ts: 2, messageId: 'm2', to: 'b', from: 'a', conversationId: 'm2', outcome: 'failed', code: 'TRANSPORT_UNAVAILABLE', node: 'n1', peerNode: 'n2' }]);
    const [crossed, local] = log.query({});
    expect(crossed).toMatchObject({ messageId: 'm2', node: 'n1', peerNode: 'n2', outcome: 'failed', code: 'TRANSPORT_UNAVAILABLE' });
    expect(local!.node).toBeUndefined();
    expect(local!.peerNode).toBeUndefined();
    expect(log.verify()).toMatchObject({ ok: true, checked: 3 });
    log.close();
  });
});
