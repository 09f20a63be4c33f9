// The reverse of mcpServer(): an MCP server's tools as one agent's handlers, so other agents
// reach them by intent through the policy, the limits and the audit log like any agent.
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import { BusError } from '../errors.js';
import { parseOptions } from '../options-schema.js';
import type { Handler } from '../types.js';

/** Options of {@link mcpHandlers}. */
export interface McpHandlersOptions {
  /** Only these tools. @default every tool the server lists */
  readonly tools?: readonly string[];
  /** Put before each tool name to make its intent (`github.` makes `github.create_issue`). @default '' */
  readonly prefix?: string;
  /** More tools than this (or more list pages than this) is an INVALID_ARGUMENT error. @default 256 */
  readonly maxTools?: number;
}

const optionsSchema = z.strictObject({
  tools: z.array(z.string()).optional(),
  prefix: z.string().optional(),
  maxTools: z.number().int().min(1).optional(),
});

/**
 * Lists the tools of a connected MCP client and returns one handler per tool, by intent
 * (the tool's name, after `prefix`). Register them as an agent's handlers:
 * `bus.register('github', { handlers: await mcpHandlers(client) })`. A handler calls the
 * tool with the message's payload as its arguments (an object; `null`/absent is `{}`),
 * passes `ctx.signal` so a deadline or cancel aborts the call, and returns the tool's
 * `structuredContent`, else its text (parts joined by newlines), else its content list.
 * A tool result with `isError` throws its text, so the asker gets HANDLER_FAILED with it.
 *
 * @example
 * const handlers = await mcpHandlers(client, { prefix: 'fs.' });
 * bus.register('files', { handlers, capabilities: ['files'] });
 */
export async function mcpHandlers(client: Client, options: McpHandlersOptions = {}): Promise<Record<string, Handler>> {
  const o = parseOptions(optionsSchema, options, 'mcpHandlers');
  const prefix = o.prefix ?? '';
  const maxTools = o.maxTools ?? 256;
  const wanted = o.tools === undefined ? undefined : new Set(o.tools);
  const names: string[] = [];
  let cursor: string | undefined;
  for (let page = 0; ; page++) {
    if (page >= maxTools) throw new BusError('INVALID_ARGUMENT', `the MCP server listed more than ${maxTools} pages of tools (maxTools)`);
    const listed = await client.listTools(cursor === undefined ? undefined : { cursor });
    for (const tool of listed.tools) if (wanted === undefined || wanted.has(tool.name)) names.push(tool.name);
    if (names.length > maxTools) throw new BusError('INVALID_ARGUMENT', `the MCP server lists more than ${maxTools} tools (maxTools): choose some with options.tools`);
    cursor = listed.nextCursor;
    if (cursor === undefined) break;
  }
  if (wanted !== undefined) {
    const missing = [...wanted].filter((name) => !names.includes(name));
    if (missing.length > 0) throw new BusError('INVALID_ARGUMENT', `the MCP server has no tool ${missing.map((n) => JSON.stringify(n)).join(', ')}`);
  }
  const handlers: Record<string, Handler> = Object.create(null);
  for (const name of names) handlers[prefix + name] = toolHandler(client, name);
  return handlers;
}

function toolHandler(client: Client, name: string): Handler {
  return async (payload, ctx) => {
    if (payload !== undefined && payload !== null && (typeof payload !== 'object' || Array.isArray(payload))) {
      throw new Error(`MCP tool "${name}" takes an object of arguments, got ${Array.isArray(payload) ? 'an array' : typeof payload}`);
    }
    const result = (await client.callTool({ name, arguments: (payload ?? {}) as Record<string, unknown> }, undefined, { signal: ctx.signal })) as CallToolResult;
    if (result.isError === true) throw new Error(textOf(result) || `MCP tool "${name}" failed`);
    if (result.structuredContent !== undefined) return result.structuredContent;
    const text = textOf(result);
    return result.content.every((part) => part.type === 'text') ? text : result.content;
  };
}

function textOf(result: CallToolResult): string {
  return result.content
    .filter((part): part is { type: 'text'; text: string } => part.type === 'text')
    .map((part) => part.text)
    .join('\n');
}
