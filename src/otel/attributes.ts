// Attribute and instrument names. `messaging.*` and `error.type` follow the OpenTelemetry
// messaging semantic conventions; `switchboard.*` are this library's own.

export const MESSAGING_SYSTEM = 'messaging.system';
export const MESSAGING_OPERATION_TYPE = 'messaging.operation.type';
export const MESSAGING_OPERATION_NAME = 'messaging.operation.name';
export const MESSAGING_DESTINATION_NAME = 'messaging.destination.name';
export const MESSAGING_MESSAGE_ID = 'messaging.message.id';
export const MESSAGING_CONVERSATION_ID = 'messaging.message.conversation_id';
export const ERROR_TYPE = 'error.type';

export const FROM = 'switchboard.message.from';
export const TO = 'switchboard.message.to';
export const INTENT = 'switchboard.message.intent';
export const DEPTH = 'switchboard.message.depth';
export const CAUSATION_ID = 'switchboard.message.causation_id';
export const AGENT_ID = 'switchboard.agent.id';
export const DECISION = 'switchboard.policy.decision';
export const RULE = 'switchboard.policy.rule';
export const POLICY_VERSION = 'switchboard.policy.version';
export const ERROR_CODE = 'switchboard.error.code';

/** The value of `messaging.system`. */
export const SYSTEM = 'agent-switchboard';

/** Instrument names. Durations are in seconds, as the semantic conventions ask. */
export const METRIC = {
  sent: 'switchboard.messages.sent',
  refused: 'switchboard.messages.refused',
  failed: 'switchboard.messages.failed',
  auditRows: 'switchboard.audit.rows',
  requestDuration: 'switchboard.request.duration',
  handlerDuration: 'switchboard.handler.duration',
  commitDuration: 'switchboard.audit.commit.duration',
  mailboxDepth: 'switchboard.mailbox.depth',
  approvalsHeld: 'switchboard.approvals.held',
} as const;
