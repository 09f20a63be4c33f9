// agent-switchboard/mcp: the bus and the Model Context Protocol, both ways, on the official
// `@modelcontextprotocol/sdk` (an optional peer dependency used only here). See docs/llm-tools.md.
export { mcpServer, type McpServerOptions } from './server.js';
export { mcpHandlers, type McpHandlersOptions } from './handlers.js';
