// agent-switchboard/ai: tools for the Vercel AI SDK, driven end to end by its mock model.
import { generateText, stepCountIs, type ToolSet } from 'ai';
import { MockLanguageModelV4 } from 'ai/test';
import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { aiTools, ToolRefusalError } from '../src/ai/index.js';
import { defineContracts, Orchestrator, type PolicyRule } from '../src/index.js';

const contracts = defineContracts({
  calculate: {
    type: 'ask',
    input: z.object({ a: z.number(), b: z.number(), op: z.enum(['+', '-', '*', '/']) }).describe('Two numbers and an operator.'),
    output: z.object({ result: z.number() }),
  },
  summarize: { type: 'delegate', input: z.object({ text: z.string().max(1000) }), output: z.string() },
  lookup: { type: 'ask', input: z.string(), output: z.string() },
  found: { type: 'notify', input: z.object({ url: z.string() }) },
});

const POLICIES: PolicyRule[] = [
  { from: 'planner', to: 'calculator', allow: ['ask'], intents: ['calculate'] },
  { from: 'planner', to: 'writer', allow: ['delegate'], intents: ['summarize'] },
  { from: 'planner', to: 'librarian', allow: ['ask'], intents: ['lookup'] },
];

const buses: Orchestrator<typeof contracts>[] = [];
afterEach(async () => {
  for (const bus of buses.splice(0)) await bus.close();
});

function setup() {
  const bus = new Orchestrator({ policies: POLICIES, contracts });
  buses.push(bus);
  const calls: unknown[] = [];
  bus.register('calculator', {
    capabilities: ['calculation'],
    handlers: {
      calculate: ({ a, b, op }) => {
        calls.push({ a, b, op });
        return { result: op === '+' ? a + b : op === '-' ? a - b : op === '*' ? a * b : a / b };
      },
    },
  });
  bus.register('writer', { handlers: { summarize: ({ text }) => text.slice(0, 5) } });
  bus.register('librarian', { handlers: { lookup: (q) => `book about ${q}` } });
  bus.register('stranger', { handlers: { calculate: () => ({ result: 0 }) } });
  const planner = bus.register('planner');
  return { bus, planner, calls };
}

const usage = { inputTokens: { total: 1, noCache: 1, cacheRead: undefined, cacheWrite: undefined }, outputTokens: { total: 1, text: 1, reasoning: undefined } };

/** A mock model that calls `toolName` with `input` first, then answers with what the tool gave it. */
function scriptedModel(toolName: string, input: unknown) {
  return new MockLanguageModelV4({
    doGenerate: async ({ prompt }) => {
      const last = prompt[prompt.length - 1];
      if (last?.role === 'tool') {
        const part = last.content[0]!;
        return { content: [{ type: 'text', text: `tool said: ${JSON.stringify("output" in part ? part.output : part)}` }], finishReason: { unified: 'stop' as const, raw: undefined }, usage, warnings: [] };
      }
      return {
        content: [{ type: 'tool-call', toolCallId: 'call-1', toolName, input: JSON.stringify(input) }],
        finishReason: { unified: 'tool-calls' as const, raw: undefined },
        usage,
        warnings: [],
      };
    },
  });
}

async function drive(tools: ToolSet, toolName: string, input: unknown) {
  const model = scriptedModel(toolName, input);
  const result = await generateText({ model, tools, prompt: 'go', stopWhen: stepCountIs(3) });
  return { result, model };
}

describe('aiTools()', () => {
  it('offers one tool per recipient and intent the policy allows, and none it denies', () => {
    const { bus, planner } = setup();
    const tools = aiTools(planner, { bus, contracts });
    expect(Object.keys(tools).sort()).toEqual(['ask_calculator_calculate', 'ask_librarian_lookup', 'delegate_writer_summarize']);
    expect(tools['ask_calculator_calculate']!.description).toContain('capabilities: calculation');
    expect(tools['ask_calculator_calculate']!.description).toContain('Two numbers and an operator.');
  });

  it("gives each tool its contract's input JSON Schema", () => {
    const { bus, planner } = setup();
    const tools = aiTools(planner, { bus, contracts });
    const expected = z.toJSONSchema(contracts.calculate.input, { target: 'draft-7', io: 'input' }) as Record<string, unknown>;
    delete expected['$schema'];
    expect(tools['ask_calculator_calculate']!.inputSchema).toMatchObject({ jsonSchema: expected });
    // A non-object contract travels as { payload }.
    expect(tools['ask_librarian_lookup']!.inputSchema).toMatchObject({
      jsonSchema: { type: 'object', properties: { payload: { type: 'string' } }, required: ['payload'] },
    });
  });

  it('narrows tools with capability, targets, intents and types', () => {
    const { bus, planner } = setup();
    expect(Object.keys(aiTools(planner, { bus, contracts, capability: 'calculation' }))).toEqual(['ask_calculator_calculate']);
    expect(Object.keys(aiTools(planner, { bus, contracts, targets: ['writer'] }))).toEqual(['delegate_writer_summarize']);
    expect(Object.keys(aiTools(planner, { bus, contracts, types: ['ask'], intents: ['lookup'] }))).toEqual(['ask_librarian_lookup']);
    expect(() => aiTools(planner, { bus, contracts, maxTools: 2 })).toThrow(/more than 2 \(maxTools\)/);
  });

  it('drives a tool call from the mock model through the bus to the handler, audited, and back to the model', async () => {
    const { bus, planner, calls } = setup();
    const { result, model } = await drive(aiTools(planner, { bus, contracts }), 'ask_calculator_calculate', { a: 5, b: 3, op: '+' });
    expect(calls).toEqual([{ a: 5, b: 3, op: '+' }]);
    expect(result.steps[0]!.toolResults[0]).toMatchObject({ toolName: 'ask_calculator_calculate', output: { result: 8 } });
    expect(result.text).toBe('tool said: {"type":"json","value":{"result":8}}');
    expect(model.doGenerateCalls).toHaveLength(2);
    const entry = bus.getMessageLog({ agentId: 'calculator' }).find((e) => e.type === 'ask');
    expect(entry).toMatchObject({ from: 'planner', to: 'calculator', type: 'ask', intent: 'calculate', decision: 'allowed', outcome: 'replied' });
  });

  it('unwraps { payload } for a non-object contract and runs a delegate to its result', async () => {
    const { bus, planner } = setup();
    const tools = aiTools(planner, { bus, contracts });
    const lookup = await drive(tools, 'ask_librarian_lookup', { payload: 'owls' });
    expect(lookup.result.steps[0]!.toolResults[0]!.output).toBe('book about owls');
    const summary = await drive(tools, 'delegate_writer_summarize', { text: 'hello world' });
    expect(summary.result.steps[0]!.toolResults[0]!.output).toBe('hello');
  });

  it('returns a denied call to the model as a tool error with code and reason, no stack, and audits it', async () => {
    const { bus, planner, calls } = setup();
    const tools = aiTools(planner, { bus, contracts });
    bus.setPolicies(POLICIES.filter((r) => r.to !== 'calculator')); // revoked after the tools were built
    const { result, model } = await drive(tools, 'ask_calculator_calculate', { a: 1, b: 2, op: '+' });
    expect(calls).toEqual([]);
    const error = result.steps[0]!.content.find((p) => p.type === 'tool-error');
    expect(error).toBeDefined();
    expect((error as { error: unknown }).error).toBeInstanceOf(ToolRefusalError);
    expect((error as { error: ToolRefusalError }).error.code).toBe('POLICY_DENIED');
    // What the model reads on its next turn.
    const toolMessage = model.doGenerateCalls[1]!.prompt.find((m) => m.role === 'tool')!;
    const output = (toolMessage.content[0] as { output: { type: string; value: string } }).output;
    expect(output.type).toBe('error-text');
    expect(output.value).toMatch(/^POLICY_DENIED: /);
    expect(output.value).not.toMatch(/\bat .*\.(ts|js):\d+/);
    expect(bus.getMessageLog({ agentId: 'calculator' })[0]).toMatchObject({ from: 'planner', decision: 'denied', code: 'POLICY_DENIED' });
  });

  it('returns input that breaks the contract to the model as INVALID_PAYLOAD naming the path', async () => {
    const { bus, planner, calls } = setup();
    const { model } = await drive(aiTools(planner, { bus, contracts }), 'ask_calculator_calculate', { a: 'five', b: 3, op: '+' });
    expect(calls).toEqual([]);
    const toolMessage = model.doGenerateCalls[1]!.prompt.find((m) => m.role === 'tool')!;
    const output = (toolMessage.content[0] as { output: { value: string } }).output;
    expect(output.value).toMatch(/^INVALID_PAYLOAD: .*\ba\b/);
  });

  it('returns a handler failure as HANDLER_FAILED with its message', async () => {
    const { bus, planner } = setup();
    bus.register('fragile', { handlers: { calculate: () => { throw new Error('out of paper'); } } });
    bus.setPolicies([...POLICIES, { from: 'planner', to: 'fragile', allow: ['ask'] }]);
    const { model } = await drive(aiTools(planner, { bus, contracts, targets: ['fragile'] }), 'ask_fragile_calculate', { a: 1, b: 1, op: '+' });
    const toolMessage = model.doGenerateCalls[1]!.prompt.find((m) => m.role === 'tool')!;
    expect((toolMessage.content[0] as { output: { value: string } }).output.value).toMatch(/^HANDLER_FAILED: .*out of paper/);
  });

  it('refuses options without a bus or contracts with INVALID_ARGUMENT', () => {
    const { planner } = setup();
    expect(() => aiTools(planner, { contracts } as never)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    expect(() => aiTools(planner, { bus: buses[0]! } as never)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
  });
});
