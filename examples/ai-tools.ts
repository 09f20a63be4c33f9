// An LLM agent on the bus with the Vercel AI SDK: `npm run example:ai-tools`.
//
// The "support" agent is driven by a model. aiTools() turns what the policy lets it ask or
// delegate into AI SDK tools, each with its contract's JSON Schema: it may ask the
// calculator, and delegate refunds to payments (held for a human). The legacy calculator
// has no rule, so no tool is offered for it. The model here is the AI SDK's mock model
// scripted to call two tools, so the example runs without network or API key; swap in a
// real one (`openai('gpt-4.1')`, …) and nothing else changes.
//
// The refund is rejected by the operator: the refusal reaches the model as a tool error
// "APPROVAL_REJECTED: …" that it reads and answers with. Every call is in the audit log.
// Inside this repository the imports are '../src/…'; in your app 'agent-switchboard' and 'agent-switchboard/ai'.
import { pathToFileURL } from 'node:url';
import { generateText, stepCountIs } from 'ai';
import { MockLanguageModelV4 } from 'ai/test';
import { z } from 'zod';
import { aiTools } from '../src/ai/index.js';
import { defineContracts, Orchestrator, type PolicyRule } from '../src/index.js';

export const contracts = defineContracts({
  calculate: {
    type: 'ask',
    input: z.object({ a: z.number(), b: z.number(), op: z.enum(['+', '-', '*', '/']) }).describe('Arithmetic on two numbers.'),
    output: z.object({ result: z.number() }),
  },
  refund: { type: 'delegate', input: z.object({ order: z.string(), amount: z.number().positive() }), output: z.object({ refunded: z.number() }) },
});

export const POLICIES: PolicyRule[] = [
  { from: 'support', to: 'calculator', allow: ['ask'], intents: ['calculate'] },
  { from: 'support', to: 'payments', allow: ['delegate'], intents: ['refund'], requireApproval: true },
];

export interface AiToolsResult {
  tools: string[];
  /** What the model saw for each tool call: the output or the error text. */
  seen: { tool: string; output: unknown; error?: string }[];
  answer: string;
}

/** A stand-in for a real model: calls the calculator, then asks for a refund, then answers. */
function scriptedModel(): MockLanguageModelV4 {
  const usage = { inputTokens: { total: 10, noCache: 10, cacheRead: undefined, cacheWrite: undefined }, outputTokens: { total: 10, text: 10, reasoning: undefined } };
  return new MockLanguageModelV4({
    doGenerate: async ({ prompt }) => {
      const toolMessages = prompt.filter((m) => m.role === 'tool');
      if (toolMessages.length === 0) {
        const input = JSON.stringify({ a: 3, b: 19.99, op: '*' });
        return { content: [{ type: 'tool-call', toolCallId: 't1', toolName: 'ask_calculator_calculate', input }], finishReason: { unified: 'tool-calls' as const, raw: undefined }, usage, warnings: [] };
      }
      if (toolMessages.length === 1) {
        const total = (toolMessages[0]!.content[0] as unknown as { output: { value: { result: number } } }).output.value.result;
        const input = JSON.stringify({ order: 'A-1001', amount: total });
        return { content: [{ type: 'tool-call', toolCallId: 't2', toolName: 'delegate_payments_refund', input }], finishReason: { unified: 'tool-calls' as const, raw: undefined }, usage, warnings: [] };
      }
      const last = toolMessages[1]!.content[0] as { output: { type: string; value: unknown } };
      const text =
        last.output.type === 'error-text'
          ? `I could not refund order A-1001: the request was refused (${String(last.output.value)}).`
          : `Refunded ${JSON.stringify(last.output.value)}.`;
      return { content: [{ type: 'text', text }], finishReason: { unified: 'stop' as const, raw: undefined }, usage, warnings: [] };
    },
  });
}

export async function run(out: (line: string) => void = console.log): Promise<AiToolsResult> {
  const bus = new Orchestrator({ policies: POLICIES, contracts });
  const calculate = ({ a, b, op }: { a: number; b: number; op: string }) => ({
    result: Math.round((op === '+' ? a + b : op === '-' ? a - b : op === '*' ? a * b : a / b) * 100) / 100,
  });
  bus.register('calculator', { capabilities: ['calculation'], handlers: { calculate } });
  bus.register('legacy-calculator', { capabilities: ['calculation'], handlers: { calculate } });
  bus.register('payments', { handlers: { refund: ({ amount }) => ({ refunded: amount }) } });
  const support = bus.register('support');

  // The operator rejects refunds over 50.
  bus.events.on('approval:requested', ({ approval }) => {
    const { amount } = approval.envelope.payload as { amount: number };
    out(`  operator: refund of ${amount} held for approval`);
    if (amount > 50) bus.approvals.reject(approval.id, { by: 'operator', reason: `${amount} is over the 50 limit` });
    else bus.approvals.approve(approval.id, { by: 'operator' });
  });

  try {
    out('ai-tools: an AI SDK model calls bus agents as tools');
    const tools = aiTools(support, { bus, contracts });
    out(`  tools offered to the model: ${Object.keys(tools).join(', ')}`);
    const result = await generateText({ model: scriptedModel(), tools, prompt: 'Refund order A-1001: 3 items at 19.99.', stopWhen: stepCountIs(5) });
    const seen: AiToolsResult['seen'] = [];
    for (const step of result.steps) {
      for (const part of step.content) {
        if (part.type === 'tool-result') seen.push({ tool: part.toolName, output: part.output });
        if (part.type === 'tool-error') seen.push({ tool: part.toolName, output: null, error: (part.error as Error).message });
      }
    }
    for (const s of seen) out(`  model saw ${s.tool}: ${s.error !== undefined ? `error "${s.error}"` : JSON.stringify(s.output)}`);
    out(`  model: ${result.text}`);
    out('audit (oldest first):');
    for (const e of bus.getMessageLog({ limit: 20 }).reverse()) {
      out(`  ${e.from} → ${e.to} ${e.type} ${e.intent}: ${e.decision}${e.outcome ? `, ${e.outcome}` : ''}${e.code ? ` (${e.code})` : ''}`);
    }
    return { tools: Object.keys(tools), seen, answer: result.text };
  } finally {
    await bus.close();
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) await run();
