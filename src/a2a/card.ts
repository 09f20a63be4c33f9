// The agent card a2aServer publishes: one skill per ask or delegate contract, a bearer
// security scheme, and the skills' JSON Schemas in a declared extension. Built once from
// the contracts; the policy still decides each call.
import { AgentCard, type AgentSkill } from '@a2a-js/sdk';
import { z } from 'zod';
import type { ContractDef, Contracts } from '../contracts.js';
import { BusError } from '../errors.js';
import type { StandardSchemaV1 } from '../standard-schema.js';
import { contractJsonSchema, type JsonSchemaObject } from '../tools/catalog.js';

/** The extension whose params carry each skill's input and output JSON Schema, keyed by skill id. */
export const SCHEMA_EXTENSION_URI = 'urn:agent-switchboard:a2a:skill-schemas:v1';
/** The security scheme name the card declares (HTTP bearer). */
export const BEARER_SCHEME = 'bearer';
/** The protocol version served (the SDK's native one). */
export const PROTOCOL_VERSION = '1.0';

/** What a card override may set; everything else comes from the bus. */
export interface CardOverrides {
  /** @default the agent id */
  readonly name?: string;
  /** @default `Agent "<id>" on an agent-switchboard bus` */
  readonly description?: string;
  /** @default '1.0.0' */
  readonly version?: string;
  readonly provider?: { readonly organization: string; readonly url: string };
  readonly documentationUrl?: string;
  readonly iconUrl?: string;
}

/** A skill the server offers: the intent, the message type its contract names, and its schemas. */
export interface SkillSpec {
  readonly id: string;
  readonly type: 'ask' | 'delegate';
  readonly input: JsonSchemaObject | null;
  readonly output: JsonSchemaObject | null;
}

/** Skills from the contracts: every ask or delegate intent (or only those in `only`). */
export function skillsOf(contracts: Contracts, only: readonly string[] | undefined): SkillSpec[] {
  const entries: [string, ContractDef][] = Object.entries(contracts).filter(([, def]) => def.type === 'ask' || def.type === 'delegate');
  if (only !== undefined) {
    const known = new Set(entries.map(([intent]) => intent));
    const missing = only.filter((intent) => !known.has(intent));
    if (missing.length > 0) {
      throw new BusError('INVALID_ARGUMENT', `Invalid a2aServer options: skills ${missing.map((s) => JSON.stringify(s)).join(', ')} have no ask or delegate contract`);
    }
  }
  const wanted = only === undefined ? undefined : new Set(only);
  return entries
    .filter(([intent]) => wanted === undefined || wanted.has(intent))
    .map(([intent, def]) => ({ id: intent, type: def.type as 'ask' | 'delegate', input: schemaOf(def.input, 'input'), output: def.output === undefined ? null : schemaOf(def.output, 'output') }));
}

// A schema without a JSON Schema form (valibot, arktype) is published as null: the bus still
// checks it at each call, the card just cannot describe it.
function schemaOf(schema: StandardSchemaV1, io: 'input' | 'output'): JsonSchemaObject | null {
  if (schema['~standard'].vendor !== 'zod') return null;
  if (io === 'input') return contractJsonSchema(schema);
  const out = z.toJSONSchema(schema as unknown as z.ZodType, { target: 'draft-7', io: 'output', reused: 'inline', unrepresentable: 'any' }) as JsonSchemaObject;
  delete out['$schema'];
  return out;
}

/** The card: public, with the JSON-RPC interface at `rpcUrl`, a bearer scheme required for every call. */
export function buildCard(agentId: string, rpcUrl: string, skills: readonly SkillSpec[], overrides: CardOverrides): AgentCard {
  const schemaParams: Record<string, { type: string; input: JsonSchemaObject | null; output: JsonSchemaObject | null }> = {};
  for (const s of skills) schemaParams[s.id] = { type: s.type, input: s.input, output: s.output };
  const card: AgentCard = {
    name: overrides.name ?? agentId,
    description: overrides.description ?? `Agent "${agentId}" on an agent-switchboard bus`,
    version: overrides.version ?? '1.0.0',
    supportedInterfaces: [{ url: rpcUrl, protocolBinding: 'JSONRPC', tenant: '', protocolVersion: PROTOCOL_VERSION }],
    provider: overrides.provider === undefined ? undefined : { organization: overrides.provider.organization, url: overrides.provider.url },
    ...(overrides.documentationUrl !== undefined ? { documentationUrl: overrides.documentationUrl } : {}),
    ...(overrides.iconUrl !== undefined ? { iconUrl: overrides.iconUrl } : {}),
    capabilities: {
      streaming: true,
      pushNotifications: false,
      extendedAgentCard: false,
      extensions: [
        {
          uri: SCHEMA_EXTENSION_URI,
          description: 'JSON Schemas (draft-07) of each skill\'s input (message part) and output (artifact), keyed by skill id; null where the contract has none in JSON Schema form',
          required: false,
          params: schemaParams,
        },
      ],
    },
    securitySchemes: {
      [BEARER_SCHEME]: { scheme: { $case: 'httpAuthSecurityScheme', value: { scheme: 'Bearer', bearerFormat: 'opaque token', description: 'A token the operator gave this caller; it names the caller\'s agent id on the bus' } } },
    },
    securityRequirements: [{ schemes: { [BEARER_SCHEME]: { list: [] } } }],
    defaultInputModes: ['application/json', 'text/plain'],
    defaultOutputModes: ['application/json', 'text/plain'],
    skills: skills.map(skillOf),
    signatures: [],
  };
  return card;
}

function skillOf(s: SkillSpec): AgentSkill {
  return {
    id: s.id,
    name: s.id,
    description: `${s.type === 'ask' ? 'Ask' : 'Delegate'} "${s.id}": name it in message.metadata.skill; the input is one data part (or one text part for a string)`,
    tags: [s.type],
    examples: [],
    inputModes: ['application/json', 'text/plain'],
    outputModes: ['application/json', 'text/plain'],
    securityRequirements: [],
  };
}

/** The card as JSON on the wire (protobuf JSON names, as the SDK's client reads it). */
export function cardJson(card: AgentCard): unknown {
  return AgentCard.toJSON(card);
}
