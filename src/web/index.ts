// agent-switchboard/web: the approval web page (node:http only, no framework).
export { approvalServer, type ApprovalServerHandle, type ApprovalServerOptions, type WebBus } from './server.js';
