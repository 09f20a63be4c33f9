// Runs the adapter examples end to end (mock model, in-memory MCP client, in-memory span exporter): no network, no key.
import { describe, expect, it } from 'vitest';
import { run as aiToolsExample } from '../examples/ai-tools.js';
import { run as mcpExample } from '../examples/mcp.js';
import { run as otelExample, runDemoWorkflow } from '../examples/otel.js';

async function collect<R>(run: (out: (line: string) => void) => Promise<R>): Promise<{ result: R; transcript: string }> {
  const lines: string[] = [];
  const result = await run((line) => lines.push(line));
  return { result, transcript: lines.join('\n') };
}

describe('adapter examples', () => {
  it('ai-tools: the model calls the calculator, and the rejected refund reaches it as a tool error', async () => {
    const { result, transcript } = await collect(aiToolsExample);
    expect(result.tools).toEqual(['ask_calculator_calculate', 'delegate_payments_refund']);
    expect(result.seen[0]).toEqual({ tool: 'ask_calculator_calculate', output: { result: 59.97 } });
    expect(result.seen[1]!.error).toMatch(/^APPROVAL_REJECTED: .*over the 50 limit/);
    expect(result.answer).toContain('I could not refund order A-1001');
    expect(transcript).toContain('support → payments delegate refund: pending, failed (APPROVAL_REJECTED)');
    expect(transcript).not.toContain('legacy-calculator');
  });

  it('mcp: a revoked tool call comes back as isError POLICY_DENIED; an MCP server answers through the bus', async () => {
    const { result, transcript } = await collect(mcpExample);
    expect(result.tools).toEqual(['ask_inventory_lookup']);
    expect(result.allowed.structuredContent).toEqual({ sku: 'KB-42', stock: 7 });
    expect(result.refused.isError).toBe(true);
    expect(result.refused.content[0]).toMatchObject({ type: 'text', text: expect.stringMatching(/^POLICY_DENIED: /) });
    expect(result.fileText).toBe('Shop handbook v2');
    expect(result.internRefused).toBe('POLICY_DENIED');
    expect(transcript).toContain('analyst → files ask read_file: allowed, replied');
    expect(transcript).toContain('intern → files ask read_file: denied (POLICY_DENIED)');
  });

  it('otel: prints the chain research→writer→editor as one trace, and the refused send with its code', async () => {
    const { result, transcript } = await collect(otelExample);
    expect(result).toHaveLength(5);
    expect(transcript).toContain('        process editor [CONSUMER] writer→editor review');
    expect(transcript).toMatch(/ask editor \[PRODUCER\] research→editor review ERROR POLICY_DENIED/);
  });

  it('otel (npm run example:otel): prints the demo workflow as traces: the delegate with its nested asks, the notify fan-out, the TIMEOUT, the refusal, the approved payment', async () => {
    const { result, transcript } = await collect(runDemoWorkflow);
    const lines = transcript.split('\n');
    const at = (pattern: RegExp) => lines.findIndex((l) => pattern.test(l));
    const delegate = at(/^  delegate writer \[PRODUCER\] research→writer summarize /);
    expect(delegate).toBeGreaterThan(0);
    expect(lines[delegate + 1]).toMatch(/^    process writer \[CONSUMER\]/);
    expect(lines[delegate + 2]).toMatch(/^      ask research \[PRODUCER\] writer→research clarify/);
    expect(lines[delegate + 3]).toMatch(/^        process research \[CONSUMER\]/);
    expect(transcript).toMatch(/^  ask reviewer \[PRODUCER\] supervisor→reviewer status ERROR TIMEOUT/m);
    expect(transcript).toMatch(/^  notify vault \[PRODUCER\] supervisor→vault rotate-keys \(vault refused: POLICY_DENIED\)/m);
    expect(transcript).toMatch(/^  delegate payment \[PRODUCER\] purchase→payment pay \(held for approval\)/m);
    const traceOf = (s: (typeof result)[number]) => s.spanContext().traceId;
    const summarize = result.find((s) => s.name === 'delegate writer')!;
    expect(result.filter((s) => traceOf(s) === traceOf(summarize)).map((s) => s.name).sort()).toEqual(['ask research', 'ask reviewer', 'delegate writer', 'process research', 'process reviewer', 'process writer']);
  });
});
