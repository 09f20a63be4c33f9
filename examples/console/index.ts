// The approval console, for any app with an agent-switchboard Orchestrator.
export { ApprovalConsole, type ApprovalConsoleProps, type ExitReason } from './ApprovalConsole.js';
export { openConsole, type ConsoleHandle, type OpenConsoleOptions } from './open.js';
export type { ConsoleBus } from './hooks.js';
