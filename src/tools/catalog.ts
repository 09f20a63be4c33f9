// What an agent may do on the bus, as a list of tool specifications an LLM adapter can
// publish: one per (recipient, intent) pair the policy does not deny, with the contract's
// input schema as the tool's JSON Schema. Shared by agent-switchboard/ai and /mcp; it reads
// the bus only through public API (explain, agents) and depends on nothing but zod.
import { z } from 'zod';
import type { Agent } from '../agent.js';
import type { ContractDef, Contracts } from '../contracts.js';
import { RULE_TYPES, type RuleType } from '../envelope.js';
import { BusError } from '../errors.js';
import { fn, objectWith } from '../options-schema.js';
import type { Explanation } from '../orchestrator.js';
import type { AgentInfo } from '../types.js';
import type { StandardSchemaV1 } from '../standard-schema.js';

/** The part of the orchestrator the catalog reads: the policy's answer and the agent list. */
export interface BusView {
  explain(request: { from: string; to: string; type: RuleType; intent: string }): Explanation;
  agents(): readonly AgentInfo[];
}

/** A JSON Schema object (draft-07), as published to a model. */
export type JsonSchemaObject = { [key: string]: unknown };

/** Options shared by the adapters: which sends become tools. */
export interface ToolCatalogOptions {
  /** The orchestrator the agent is registered on (its `explain` and `agents` are read). */
  readonly bus: BusView;
  /** The contracts the bus was built with: every tool's input schema comes from one. */
  readonly contracts: Contracts;
  /** Message types offered as tools. @default ['ask', 'delegate'] */
  readonly types?: readonly RuleType[];
  /** Only these intents. @default every contract intent of an offered type */
  readonly intents?: readonly string[];
  /** Only these recipients. @default every other registered agent */
  readonly targets?: readonly string[];
  /** Only recipients `agent.discover(capability)` returns. */
  readonly capability?: string;
  /** Tool name for a pair; must match `^[A-Za-z0-9_-]{1,64}$` and be unique. @default `${type}_${to}_${intent}`, other characters as `_` */
  readonly name?: (tool: { type: RuleType; to: string; intent: string }) => string;
  /** More tools than this is an INVALID_ARGUMENT error (narrow with `targets`/`intents`). @default 128 */
  readonly maxTools?: number;
}

/**
 * The keys of {@link ToolCatalogOptions}, for the strict schema of each adapter's options
 * (`z.strictObject({ ...catalogOptionKeys, timeoutMs: … })`).
 * @internal
 */
export const catalogOptionKeys = {
  bus: objectWith<BusView>('the Orchestrator the agent is registered on', 'explain', 'agents'),
  contracts: z.custom<Contracts>((v) => typeof v === 'object' && v !== null, 'must be the contracts the bus was built with'),
  types: z.array(z.enum(RULE_TYPES)).optional(),
  intents: z.array(z.string()).optional(),
  targets: z.array(z.string()).optional(),
  capability: z.string().optional(),
  name: fn<(tool: { type: RuleType; to: string; intent: string }) => string>().optional(),
  maxTools: z.number().int().min(1).optional(),
};

/** One tool: a send of `type`/`intent` to `to` that the policy allows or holds for approval. */
export interface ToolSpec {
  readonly name: string;
  readonly description: string;
  readonly type: RuleType;
  readonly to: string;
  readonly intent: string;
  /** The contract's input JSON Schema (wrapped as `{ payload }` when it is not an object). */
  readonly inputSchema: JsonSchemaObject;
  /** True when the model's arguments are `{ payload }` and only `payload` is sent. */
  readonly wrapped: boolean;
  /** True when the policy holds this send for a human decision. */
  readonly approval: boolean;
}

const TOOL_NAME = /^[A-Za-z0-9_-]{1,64}$/;

/**
 * The JSON Schema a model sees for a contract's input: zod 4's own conversion, draft-07,
 * input side (what the sender passes), shared parts inlined, unrepresentable parts open.
 */
export function contractJsonSchema(input: z.ZodType | StandardSchemaV1): JsonSchemaObject {
  // Tools need a JSON Schema: zod 4 writes one; other Standard Schema libraries are refused
  // by name rather than offered to a model with a schema that says nothing.
  if (input['~standard'].vendor !== 'zod') {
    throw new BusError('INVALID_ARGUMENT', `tool input schemas come from zod 4 contracts; this contract's schema is from "${input['~standard'].vendor}", which gives no JSON Schema here`);
  }
  const schema = z.toJSONSchema(input as z.ZodType, { target: 'draft-7', io: 'input', reused: 'inline', unrepresentable: 'any' }) as JsonSchemaObject;
  delete schema['$schema'];
  return schema;
}

/**
 * The tools an agent may call: one per registered recipient and contract intent whose send
 * the current policy allows (or holds for approval). A snapshot: the bus still decides each
 * call, so a rule revoked later makes the call come back as a refusal.
 */
export function toolCatalog(agent: Agent<any>, options: ToolCatalogOptions): ToolSpec[] {
  const { bus, contracts } = options;
  const types = new Set(options.types ?? ['ask', 'delegate']);
  const maxTools = options.maxTools ?? 128;
  const from = agent.id;
  const reachable = options.capability === undefined ? undefined : new Set(agent.discover(options.capability));
  const wantedTargets = options.targets === undefined ? undefined : new Set(options.targets);
  const wantedIntents = options.intents === undefined ? undefined : new Set(options.intents);

  const intents: [string, ContractDef][] = Object.entries(contracts).filter(
    ([intent, def]) => types.has(def.type) && (wantedIntents === undefined || wantedIntents.has(intent)),
  );
  const schemas = new Map<string, { schema: JsonSchemaObject; wrapped: boolean; note: string | undefined }>();
  const specs: ToolSpec[] = [];
  const names = new Set<string>();
  for (const peer of bus.agents()) {
    const to = peer.id;
    if (to === from || (wantedTargets !== undefined && !wantedTargets.has(to)) || (reachable !== undefined && !reachable.has(to))) continue;
    for (const [intent, def] of intents) {
      const decision = bus.explain({ from, to, type: def.type, intent }).decision;
      if (decision === 'deny') continue;
      let shape = schemas.get(intent);
      if (shape === undefined) schemas.set(intent, (shape = toolSchema(def.input)));
      const name = toolName(options.name, def.type, to, intent, names);
      names.add(name);
      specs.push({
        name,
        description: describeTool(def.type, peer, intent, decision === 'approval', shape.note),
        type: def.type,
        to,
        intent,
        inputSchema: shape.schema,
        wrapped: shape.wrapped,
        approval: decision === 'approval',
      });
      if (specs.length > maxTools) {
        throw new BusError('INVALID_ARGUMENT', `${from} may reach more than ${maxTools} (maxTools) recipient and intent pairs: narrow them with targets, intents or capability`);
      }
    }
  }
  return specs;
}

function toolSchema(input: z.ZodType | StandardSchemaV1): { schema: JsonSchemaObject; wrapped: boolean; note: string | undefined } {
  const schema = contractJsonSchema(input);
  const note = typeof schema['description'] === 'string' ? schema['description'] : undefined;
  // Models take an object of arguments: any other payload travels as { payload }.
  if (schema['type'] === 'object') return { schema, wrapped: false, note };
  return { schema: { type: 'object', properties: { payload: schema }, required: ['payload'], additionalProperties: false }, wrapped: true, note };
}

function toolName(custom: ToolCatalogOptions['name'], type: RuleType, to: string, intent: string, taken: ReadonlySet<string>): string {
  if (custom !== undefined) {
    const name = custom({ type, to, intent });
    if (typeof name !== 'string' || !TOOL_NAME.test(name)) {
      throw new BusError('INVALID_ARGUMENT', `tool name for ${type} ${intent} to ${to} must match ${TOOL_NAME}, got ${JSON.stringify(name)}`);
    }
    if (taken.has(name)) throw new BusError('INVALID_ARGUMENT', `tool name "${name}" is used twice`);
    return name;
  }
  const base = `${type}_${to}_${intent}`.replace(/[^A-Za-z0-9_-]/g, '_').slice(0, 60);
  let name = base;
  for (let n = 2; taken.has(name); n++) name = `${base}_${n}`;
  return name;
}

function describeTool(type: RuleType, peer: AgentInfo, intent: string, approval: boolean, note: string | undefined): string {
  const who = `agent "${peer.id}"${peer.capabilities.length > 0 ? ` (capabilities: ${peer.capabilities.join(', ')})` : ''}`;
  const what =
    type === 'ask'
      ? `Ask ${who} "${intent}" and get its reply.`
      : type === 'delegate'
        ? `Delegate "${intent}" to ${who} and get the result when it is done.`
        : `Notify ${who} of "${intent}" (no reply).`;
  const parts = [what];
  if (note !== undefined) parts.push(note);
  if (approval) parts.push('A human must approve it before it is delivered.');
  parts.push('A refusal comes back as an error "CODE: reason".');
  return parts.join(' ');
}
