import type { AuditLog, AuditRecord, ChainHead, MessageLogEntry, MessageLogQuery, VerifyResult } from './types.js';

/**
 * The {@link AuditLog} for `audit: false`: records nothing, finds nothing, and its (empty)
 * chain always verifies. Nothing is tamper-evident with it; use it only where no record is
 * wanted (tests of unrelated behaviour, throwaway scripts).
 */
export class NullAuditLog implements AuditLog {
  /** Accepts and drops the records. */
  append(_records: readonly AuditRecord[]): void {}

  /** Always empty. */
  query(_filter?: MessageLogQuery): MessageLogEntry[] {
    return [];
  }

  /** Always `{ ok: true, checked: 0 }`. */
  verify(): VerifyResult {
    return { ok: true, checked: 0 };
  }

  /** Always the empty chain's head, `{ seq: 0, hash: '0' × 64 }`. */
  head(): ChainHead {
    return { seq: 0, hash: '0'.repeat(64) };
  }

  close(): void {}
}
