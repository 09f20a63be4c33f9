// The public surface of agent-switchboard, for users of the bus. Extension points live on
// their subpaths: /transport (transport authors), /otel (telemetry), /operator (a console
// of your own), /tools (an LLM adapter of your own). Everything else under src/ is internal.
export { Orchestrator, type RegisterOptions, type Explanation } from './orchestrator.js';
export { Agent } from './agent.js';
export type { OrchestratorOptions, AuditOptions, InboundPerNode } from './options.js';
export type { Envelope, MessageType, Priority, RuleType } from './envelope.js';
export type { HandlerContext, HandlerFor, HandlerMap, NotifyOptions, NotifyReceipt, SendInput, SendOptions, Sender, Job, Progress, AgentInfo, Handler } from './types.js';
export { BusError, ErrorCode, isBusError, type BusErrorDetails } from './errors.js';
export type { Attempt, BusEventName, BusEvents, BusEventSource, BusListener } from './events.js';
export { defineContracts, type ContractDef, type StandardSchemaV1, type Contracts, type InputOf, type OutputOf, type PayloadOf, type IntentsOf } from './contracts.js';
export { parseRules, ruleLabel, lintRules, type PolicyRule, type PolicyDecision, type PolicyLint } from './policy.js';
export type { RateSpec } from './limits.js';
export type { Approvals, ApprovalResult, ApproveOptions, RejectOptions, PendingApproval } from './approvals.js';
export type { Clock } from './clock.js';
export { AGENT_ID_PATTERN, isAgentId } from './ids.js';
export { escapeText } from './escape-text.js';
export { SqliteAuditLog } from './audit/sqlite.js';
export type {
  AuditLog,
  AuditRecord,
  AttemptRecord,
  OutcomeRecord,
  ApprovalRecord,
  DigestRecord,
  PeerDigestEntry,
  PeerDigestQuery,
  AuditDecision,
  AuditOutcome,
  ApprovalDecision,
  MessageLogEntry,
  MessageLogQuery,
  RefusalSummary,
  VerifyResult,
  VerifyOptions,
  ChainHead,
} from './audit/types.js';
