// agent-switchboard/operator: the operator's desk, for an approval console of your own
// (chat, a ticket system). The terminal console (/console) and the web page (/web) are
// built on it. See docs/approvals.md.
export { ApprovalDesk, type ApprovalDeskOptions, type OperatorBus, type DecisionRequest, type DeskAnswer, type DecidedItem } from './desk.js';
