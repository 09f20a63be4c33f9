// agent-switchboard/mcp, checked with the MCP SDK's own client over InMemoryTransport.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { mcpHandlers, mcpServer } from '../src/mcp/index.js';
import { contractJsonSchema } from '../src/tools/catalog.js';
import { defineContracts, Orchestrator, type PolicyRule } from '../src/index.js';
import { rejectionOf } from './support/helpers.js';

const contracts = defineContracts({
  calculate: { type: 'ask', input: z.object({ a: z.number(), b: z.number() }), output: z.object({ sum: z.number() }) },
  translate: { type: 'delegate', input: z.object({ text: z.string(), to: z.enum(['fr', 'de']) }), output: z.string() },
});

const closers: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

async function connect(server: { connect(t: InMemoryTransport): Promise<void> }): Promise<Client> {
  const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
  const client = new Client({ name: 'test-client', version: '1.0.0' });
  await Promise.all([server.connect(serverSide), client.connect(clientSide)]);
  closers.push(() => client.close());
  return client;
}

function textOf(result: unknown): string {
  return (result as CallToolResult).content.map((p) => (p.type === 'text' ? p.text : '')).join('');
}

describe('mcpServer()', () => {
  const policies: PolicyRule[] = [
    { from: 'assistant', to: 'calculator', allow: ['ask'], intents: ['calculate'] },
    { from: 'assistant', to: 'translator', allow: ['delegate'], requireApproval: true },
  ];

  function setup() {
    const bus = new Orchestrator({ policies, contracts });
    closers.push(() => bus.close());
    const seen: unknown[] = [];
    bus.register('calculator', { handlers: { calculate: ({ a, b }) => (seen.push({ a, b }), { sum: a + b }) } });
    bus.register('translator', { handlers: { translate: ({ text }) => `«${text}»` } });
    bus.register('other', { handlers: { calculate: () => ({ sum: 0 }) } });
    const assistant = bus.register('assistant');
    return { bus, assistant, seen };
  }

  it("lists the agent's permitted intents as tools with their contract's input schema", async () => {
    const { bus, assistant } = setup();
    const client = await connect(mcpServer(assistant, { bus, contracts }));
    const { tools } = await client.listTools();
    expect(tools.map((t) => t.name).sort()).toEqual(['ask_calculator_calculate', 'delegate_translator_translate']);
    const calculate = tools.find((t) => t.name === 'ask_calculator_calculate')!;
    expect(calculate.inputSchema).toEqual(contractJsonSchema(contracts.calculate.input));
    expect(tools.find((t) => t.name === 'delegate_translator_translate')!.description).toContain('A human must approve it');
    expect(client.getServerVersion()).toMatchObject({ name: 'agent-switchboard:assistant' });
  });

  it('runs a tool call through the bus to the handler and audits it', async () => {
    const { bus, assistant, seen } = setup();
    const client = await connect(mcpServer(assistant, { bus, contracts }));
    const result = await client.callTool({ name: 'ask_calculator_calculate', arguments: { a: 2, b: 40 } });
    expect(result.isError).toBeFalsy();
    expect(result.structuredContent).toEqual({ sum: 42 });
    expect(textOf(result)).toBe('{"sum":42}');
    expect(seen).toEqual([{ a: 2, b: 40 }]);
    expect(bus.getMessageLog({ agentId: 'calculator' }).find((e) => e.type === 'ask')).toMatchObject({
      from: 'assistant',
      intent: 'calculate',
      decision: 'allowed',
      outcome: 'replied',
    });
  });

  it('returns a refused call as isError with "CODE: reason" once the policy revokes it', async () => {
    const { bus, assistant, seen } = setup();
    const client = await connect(mcpServer(assistant, { bus, contracts }));
    await client.listTools();
    bus.setPolicies([]);
    const result = await client.callTool({ name: 'ask_calculator_calculate', arguments: { a: 1, b: 1 } });
    expect(result.isError).toBe(true);
    expect(textOf(result)).toMatch(/^POLICY_DENIED: /);
    expect(textOf(result)).not.toContain('.ts:');
    expect(seen).toEqual([]);
    expect(bus.getMessageLog({ agentId: 'calculator' })[0]).toMatchObject({ decision: 'denied', code: 'POLICY_DENIED' });
    expect((await client.listTools()).tools).toEqual([]);
  });

  it('returns arguments that break the contract as INVALID_PAYLOAD, and an unknown tool as INVALID_ARGUMENT', async () => {
    const { bus, assistant } = setup();
    const client = await connect(mcpServer(assistant, { bus, contracts }));
    const bad = await client.callTool({ name: 'ask_calculator_calculate', arguments: { a: 'x', b: 1 } });
    expect(bad.isError).toBe(true);
    expect(textOf(bad)).toMatch(/^INVALID_PAYLOAD: .*\ba\b/);
    const unknown = await client.callTool({ name: 'ask_other_calculate', arguments: { a: 1, b: 1 } });
    expect(unknown.isError).toBe(true);
    expect(textOf(unknown)).toMatch(/^INVALID_ARGUMENT: no tool named "ask_other_calculate"/);
  });

  it('holds a tool call that needs approval until a human approves it', async () => {
    const { bus, assistant } = setup();
    const client = await connect(mcpServer(assistant, { bus, contracts }));
    const call = client.callTool({ name: 'delegate_translator_translate', arguments: { text: 'hello', to: 'fr' } });
    await expect.poll(() => bus.approvals.list().length).toBe(1);
    bus.approvals.approve(bus.approvals.list()[0]!.id, { by: 'operator' });
    expect(textOf(await call)).toBe('«hello»');
  });
});

describe('mcpHandlers()', () => {
  /** An MCP server of its own (the SDK's high-level API) with two tools. */
  function toolServer(): McpServer {
    const server = new McpServer({ name: 'math', version: '1.0.0' });
    server.registerTool('add', { description: 'Adds', inputSchema: { a: z.number(), b: z.number() } }, ({ a, b }) => ({
      content: [{ type: 'text', text: String(a + b) }],
    }));
    server.registerTool('divide', { inputSchema: { a: z.number(), b: z.number() } }, ({ a, b }) =>
      b === 0 ? { content: [{ type: 'text', text: 'division by zero' }], isError: true } : { content: [{ type: 'text', text: String(a / b) }], structuredContent: { quotient: a / b } },
    );
    return server;
  }

  async function setup() {
    const client = await connect(toolServer());
    const bus = new Orchestrator({ policies: [{ from: 'analyst', to: 'math', allow: ['ask'] }] });
    closers.push(() => bus.close());
    bus.register('math', { handlers: await mcpHandlers(client, { prefix: 'math.' }), capabilities: ['math'] });
    return { bus, analyst: bus.register('analyst'), intruder: bus.register('intruder') };
  }

  it("makes an MCP server's tools an agent's handlers that other agents reach through the bus", async () => {
    const { bus, analyst } = await setup();
    expect(analyst.discover('math')).toEqual(['math']);
    expect(await analyst.ask('math', 'math.add', { a: 2, b: 3 })).toBe('5');
    expect(await analyst.ask('math', 'math.divide', { a: 9, b: 3 })).toEqual({ quotient: 3 });
    expect(bus.getMessageLog({ agentId: 'math' }).filter((e) => e.type === 'ask').map((e) => [e.intent, e.outcome])).toEqual([
      ['math.divide', 'replied'],
      ['math.add', 'replied'],
    ]);
  });

  it('refuses an agent the policy does not allow, audited, without calling the tool', async () => {
    const { bus, intruder } = await setup();
    const error = await rejectionOf(intruder.ask('math', 'math.add', { a: 1, b: 1 }));
    expect(error.code).toBe('POLICY_DENIED');
    expect(bus.getMessageLog({ agentId: 'intruder' })[0]).toMatchObject({ decision: 'denied', code: 'POLICY_DENIED' });
  });

  it("turns the tool's isError result into HANDLER_FAILED with its text", async () => {
    const { analyst } = await setup();
    const error = await rejectionOf(analyst.ask('math', 'math.divide', { a: 1, b: 0 }));
    expect(error.code).toBe('HANDLER_FAILED');
    expect(error.message).toContain('division by zero');
  });

  it('refuses a non-object payload as HANDLER_FAILED naming what it got', async () => {
    const { analyst } = await setup();
    const error = await rejectionOf(analyst.ask('math', 'math.add', [1, 2]));
    expect(error.code).toBe('HANDLER_FAILED');
    expect(error.message).toContain('takes an object of arguments, got an array');
  });

  it('keeps only the tools asked for, and refuses a tool the server does not have', async () => {
    const client = await connect(toolServer());
    expect(Object.keys(await mcpHandlers(client, { tools: ['add'] }))).toEqual(['add']);
    await expect(mcpHandlers(client, { tools: ['nope'] })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(mcpHandlers(client, { maxTools: 1 })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });
});
