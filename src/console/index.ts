// agent-switchboard/console: the terminal approval console (ink and react are optional peers).
export { openApprovalConsole, type ApprovalConsoleHandle, type ApprovalConsoleOptions } from './open.js';
export { ApprovalConsole, type ApprovalConsoleProps, type ExitReason } from './approval-console.js';
