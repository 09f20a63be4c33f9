/** The audit log: the interface, the SQLite default, and the no-op log for `audit: false`. */
export type {
  ApprovalDecision,
  ApprovalRecord,
  AttemptRecord,
  AuditDecision,
  AuditLog,
  AuditOutcome,
  AuditRecord,
  DigestRecord,
  MessageLogEntry,
  MessageLogQuery,
  OutcomeRecord,
  PeerDigestEntry,
  PeerDigestQuery,
  RefusalSummary,
  VerifyOptions,
  VerifyResult,
} from './types.js';
export { SqliteAuditLog, DEFAULT_QUERY_LIMIT, MAX_QUERY_LIMIT, DEFAULT_MEMORY_MAX_ROWS } from './sqlite.js';
export { STRING_CAP } from './records.js';
export type { ChainHead, SqliteAuditLogOptions, SqliteVerifyResult } from './sqlite.js';
export { NullAuditLog } from './null.js';
export { SCHEMA_VERSION } from './migrations.js';
export type { ChainAlgorithm } from './hash-chain.js';
