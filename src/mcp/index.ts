// agent-switchboard/mcp: the bus and the Model Context Protocol, both ways, on the official
// `@modelcontextprotocol/sdk` (an optional peer dependency used only here). See docs/llm-tools.md.
export { mcpServer, type McpServerOptions } from './server.js';
export { mcpHandlers, type McpHandlersOptions } from './handlers.js';
export { contractJsonSchema, type BusView, type JsonSchemaObject, type ToolCatalogOptions, type ToolSpec } from '../tools/catalog.js';
export type { ToolRefusal } from '../tools/invoke.js';
