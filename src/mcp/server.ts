// An MCP server whose tools are what one agent may do on the bus: each call is a send as
// that agent, checked, audited and delivered by the bus, and a refusal is a tool result
// with `isError: true` whose text is `CODE: reason`.
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { CallToolRequestSchema, ListToolsRequestSchema, type CallToolResult, type Tool } from '@modelcontextprotocol/sdk/types.js';
import type { Agent } from '../agent.js';
import type { Contracts } from '../contracts.js';
import { z } from 'zod';
import { parseOptions } from '../options-schema.js';
import { catalogOptionKeys, toolCatalog, type ToolCatalogOptions, type ToolSpec } from '../tools/catalog.js';
import { invokeTool, refusalText } from '../tools/invoke.js';

/** Options of {@link mcpServer}. */
export interface McpServerOptions<C extends Contracts = Contracts> extends ToolCatalogOptions {
  readonly contracts: C;
  /** Name and version in the MCP handshake. @default `{ name: 'agent-switchboard:<agent id>', version: '1.0.0' }` */
  readonly serverInfo?: { readonly name: string; readonly version: string };
  /** Deadline of each ask or delegate a tool makes. @default the bus's `timeouts.askMs` / `delegateMs` */
  readonly timeoutMs?: number;
}

const optionsSchema = z.strictObject({
  ...catalogOptionKeys,
  serverInfo: z.strictObject({ name: z.string().min(1), version: z.string().min(1) }).optional(),
  timeoutMs: z.number().int().positive().max(2_147_483_647).optional(),
});

/**
 * An MCP server exposing what `agent` may ask or delegate (`types` adds notify) as tools,
 * one per recipient and contract intent the policy does not deny, with the contract's
 * input JSON Schema. The list is read from the policy at each `tools/list`, and every call
 * goes through the bus as `agent`: a refusal is returned as `isError: true` with the text
 * `CODE: reason`. Connect it to any transport of the MCP SDK.
 *
 * @example
 * const server = mcpServer(assistant, { bus, contracts });
 * await server.connect(new StdioServerTransport());
 */
export function mcpServer<C extends Contracts>(agent: Agent<C>, options: McpServerOptions<C>): Server {
  const { timeoutMs, serverInfo, ...catalog } = parseOptions(optionsSchema, options, 'mcpServer');
  const catalogOptions = catalog as ToolCatalogOptions;
  let listed = byName(toolCatalog(agent, catalogOptions));

  const server = new Server(
    { name: serverInfo?.name ?? `agent-switchboard:${agent.id}`, version: serverInfo?.version ?? '1.0.0' },
    { capabilities: { tools: {} } },
  );
  server.setRequestHandler(ListToolsRequestSchema, () => {
    listed = byName(toolCatalog(agent, catalogOptions));
    return { tools: [...listed.values()].map(toMcpTool) };
  });
  server.setRequestHandler(CallToolRequestSchema, async (request, extra): Promise<CallToolResult> => {
    const { name, arguments: args } = request.params;
    // A tool listed earlier stays callable: the bus, not the list, decides (and audits) a revoked one.
    const spec = listed.get(name) ?? byName(toolCatalog(agent, catalogOptions)).get(name);
    if (spec === undefined) return errorResult(`INVALID_ARGUMENT: no tool named ${JSON.stringify(name.slice(0, 64))}`);
    const outcome = await invokeTool(agent, spec, args ?? {}, { signal: extra.signal, timeoutMs });
    if (!outcome.ok) return errorResult(refusalText(outcome.refusal));
    return toResult(outcome.value);
  });
  return server;
}

function byName(specs: ToolSpec[]): Map<string, ToolSpec> {
  return new Map(specs.map((s) => [s.name, s]));
}

function toMcpTool(spec: ToolSpec): Tool {
  return { name: spec.name, description: spec.description, inputSchema: spec.inputSchema as Tool['inputSchema'] };
}

function errorResult(text: string): CallToolResult {
  return { content: [{ type: 'text', text }], isError: true };
}

function toResult(value: unknown): CallToolResult {
  const text = typeof value === 'string' ? value : JSON.stringify(value);
  const structured = typeof value === 'object' && value !== null && !Array.isArray(value);
  return { content: [{ type: 'text', text }], ...(structured ? { structuredContent: value as Record<string, unknown> } : {}) };
}
