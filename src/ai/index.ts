// agent-switchboard/ai: what an agent may do on the bus, as tools for the Vercel AI SDK
// (`ai` v5+, an optional peer dependency used only here). See docs/llm-tools.md.
import { jsonSchema, tool, type Tool, type ToolSet } from 'ai';
import type { Agent } from '../agent.js';
import type { Contracts } from '../contracts.js';
import { z } from 'zod';
import { parseOptions } from '../options-schema.js';
import { catalogOptionKeys, toolCatalog, type ToolCatalogOptions, type ToolSpec } from '../tools/catalog.js';
import { invokeTool, refusalText, type ToolRefusal } from '../tools/invoke.js';

/** Options of {@link aiTools}. */
export interface AiToolsOptions<C extends Contracts = Contracts> extends ToolCatalogOptions {
  readonly contracts: C;
  /** Deadline of each ask or delegate a tool makes. @default the bus's `timeouts.askMs` / `delegateMs` */
  readonly timeoutMs?: number;
}

const optionsSchema = z.strictObject({ ...catalogOptionKeys, timeoutMs: z.number().int().positive().max(2_147_483_647).optional() });

/**
 * The error a refused tool call throws. The AI SDK shows the model its message,
 * `CODE: reason` (as an `error-text` tool result); `code` and `reason` are here for the app.
 * It carries no cause and no stack of the bus.
 */
export class ToolRefusalError extends Error {
  override readonly name = 'ToolRefusalError';
  readonly code: ToolRefusal['code'];
  readonly reason: string;

  constructor(refusal: ToolRefusal) {
    super(refusalText(refusal));
    this.code = refusal.code;
    this.reason = refusal.reason;
    this.stack = `${this.name}: ${this.message}`;
  }

  /** `CODE: reason`, what the model reads: ai 7 writes a tool error as `String(error)`. */
  override toString(): string {
    return this.message;
  }
}

/**
 * Tools for the AI SDK, one per recipient and contract intent the policy lets `agent` ask
 * or delegate to (`types` adds notify). Each tool's input schema is the contract's JSON
 * Schema; calling it sends as `agent` through the bus (checked, audited, delivered like any
 * send) and returns the reply. A refusal (policy, limits, contract, handler failure,
 * timeout) is thrown as a {@link ToolRefusalError}, which the model reads as a tool error
 * `CODE: reason`.
 *
 * The list is a snapshot of the policy when it is built; the bus still decides each call.
 *
 * @example
 * const tools = aiTools(planner, { bus, contracts });
 * const { text } = await generateText({ model, tools, stopWhen: stepCountIs(5), prompt });
 */
export function aiTools<C extends Contracts>(agent: Agent<C>, options: AiToolsOptions<C>): ToolSet {
  const { timeoutMs, ...catalog } = parseOptions(optionsSchema, options, 'aiTools');
  const specs = toolCatalog(agent, catalog as ToolCatalogOptions);
  const tools: Record<string, Tool> = {};
  for (const spec of specs) tools[spec.name] = toAiTool(agent, spec, timeoutMs);
  return tools;
}

function toAiTool(agent: Agent<any>, spec: ToolSpec, timeoutMs: number | undefined): Tool {
  // No explicit type arguments: their number changed between ai 5 and 7 (a context type).
  return tool({
    description: spec.description,
    // No `validate`: the bus checks the payload against the contract, so a bad one is
    // audited and comes back to the model as INVALID_PAYLOAD with the paths that failed.
    inputSchema: jsonSchema<unknown>(spec.inputSchema),
    execute: async (input: unknown, { abortSignal }: { abortSignal?: AbortSignal | undefined }) => {
      const outcome = await invokeTool(agent, spec, input, { signal: abortSignal, timeoutMs });
      if (!outcome.ok) throw new ToolRefusalError(outcome.refusal);
      return outcome.value;
    },
  });
}
