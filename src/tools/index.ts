// agent-switchboard/tools: what /ai and /mcp share, for an LLM adapter of your own: a
// contract's JSON Schema, and the shapes of a tool catalog and of a refused call.
export { contractJsonSchema, type BusView, type JsonSchemaObject, type ToolCatalogOptions, type ToolSpec } from './catalog.js';
export type { ToolRefusal } from './invoke.js';
