// Runs every scenario example end to end (real timers) and checks what it reports.
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { run as a2aExample, MAX_QTY } from '../examples/a2a.js';
import { run as calculatorDiscovery, CALCULATOR, LEGACY } from '../examples/calculator-discovery.js';
import { run as fraudAlert } from '../examples/fraud-alert.js';
import { run as managerSubtasks } from '../examples/manager-subtasks.js';
import { run as purchaseApproval, OPERATOR } from '../examples/purchase-approval.js';
import { run as researchPipeline } from '../examples/research-pipeline.js';

/** Runs an example, collecting its transcript, and checks it is quick. */
async function collect<R>(run: (out: (line: string) => void) => Promise<R>): Promise<{ result: R; transcript: string }> {
  const lines: string[] = [];
  const started = performance.now();
  const result = await run((line) => lines.push(line));
  expect(performance.now() - started).toBeLessThan(2_000);
  return { result, transcript: lines.join('\n') };
}

describe('examples', () => {
  it('research-pipeline: delegate with progress, a clarify ask, a refused delegate back, a supervisor', async () => {
    const { result, transcript } = await collect(researchPipeline);
    expect(result.draft).toContain('platform engineers');
    expect(result.progress).toEqual([0.2, 0.6, 1]);
    expect(result.refused).toBe('POLICY_DENIED');
    expect(result.status).toEqual({ research: 'waiting for the draft', writer: 'drafting' });
    expect(result.summaryDeliveredTo.sort()).toEqual(['research', 'writer']);
    expect(transcript).toContain('writer → research ask clarify: allowed, replied');
    expect(transcript).toContain('writer → research delegate fact-check: denied (POLICY_DENIED)');
    expect(transcript).toContain('supervisor → writer ask status: allowed, replied');
  });

  it('fraud-alert: delivered to 3 teams, denied to marketing, malformed alert refused', async () => {
    const { result, transcript } = await collect(fraudAlert);
    expect([...result.receipt.delivered].sort()).toEqual(['compliance', 'customer-service', 'risk']);
    expect(result.receipt.denied).toEqual(['marketing']);
    expect(result.receipt.failed).toEqual([]);
    expect(result.reactions).toHaveLength(3);
    expect(result.reactions.some((r) => r.startsWith('marketing'))).toBe(false);
    expect(result.reactions).toContain('risk: freezing acc-7731 (score 0.97)');
    expect(result.invalid).toBe('INVALID_PAYLOAD');
    expect(transcript).toContain('fraud-detector → marketing notify fraud_alert: denied (POLICY_DENIED)');
    expect(transcript).toContain('result: alert delivered to 3, denied to 1');
  });

  it('manager-subtasks: assembles 2 of 3 parts, one TIMEOUT, offload refused', async () => {
    const { result, transcript } = await collect(managerSubtasks);
    expect(Object.keys(result.parts).sort()).toEqual(['worker-a', 'worker-b']);
    expect(result.missing).toEqual({ 'worker-c': 'TIMEOUT' });
    expect(result.report).toContain('forecast: (missing: TIMEOUT)');
    expect(result.offloadRefused).toBe('POLICY_DENIED');
    expect(transcript).toMatch(/manager +worker-b 67% churn 2\/3/);
    expect(transcript).toContain('worker-c gave up: TIMEOUT after 200 ms');
    expect(transcript).toMatch(/worker-c +stopping "forecast" after \d+\/10 steps \(TIMEOUT\)/);
    expect(transcript).toContain('manager → worker-c delegate subtask: allowed, expired (TIMEOUT)');
    expect(transcript).toContain('result: assembled 2 of 3 parts; missing worker-c (TIMEOUT)');
  });

  it('purchase-approval: one approved by finance-operator, one APPROVAL_REJECTED with its reason', async () => {
    const { result, transcript } = await collect(purchaseApproval);
    expect(result.purchases).toEqual([
      { item: 'GPU hours', amount: 120, status: 'paid' },
      { item: 'new server rack', amount: 18_500, status: 'APPROVAL_REJECTED', reason: '18500 EUR is over the 1000 EUR limit' },
    ]);
    expect(result.decisions.map((d) => [d.decision, d.by])).toEqual([
      ['approved', OPERATOR],
      ['rejected', OPERATOR],
    ]);
    expect(result.refundRefused).toBe('POLICY_DENIED');
    const delegates = result.audit.filter((e) => e.type === 'delegate').reverse();
    expect(delegates).toMatchObject([
      { decision: 'pending', approval: 'approved', decidedBy: OPERATOR, outcome: 'replied' },
      { decision: 'pending', approval: 'rejected', decidedBy: OPERATOR, outcome: 'failed', code: 'APPROVAL_REJECTED' },
    ]);
    expect(transcript).toContain('decision=pending approval=approved decidedBy=finance-operator outcome=replied');
  });

  it('calculator-discovery: discovers only the reachable calculator, 5 + 3 = 8', async () => {
    const { result, transcript } = await collect(calculatorDiscovery);
    expect(result.capable.sort()).toEqual([CALCULATOR, LEGACY].sort());
    expect(result.discovered).toEqual([CALCULATOR]);
    expect(result.result).toBe(8);
    expect(result.formatted).toBe('5 + 3 = 8');
    expect(result.legacyRefused).toBe('POLICY_DENIED');
    expect(result.divisionByZero).toBe('HANDLER_FAILED');
    expect(transcript).toContain(`discover('calculation') → [${CALCULATOR}]`);
  });
  it('a2a: one bus calls another over A2A; the supplier approves the small order, rejects the large one, the shop denies its intern', async () => {
    const { result, transcript } = await collect(a2aExample);
    expect(result.quote).toEqual({ sku: 'bolt-m8', eur: 21 });
    expect(result.small).toEqual({ orderId: 'SO-bolt-m8-4' });
    expect(result.large).toMatch(new RegExp(`^HANDLER_FAILED: .*TASK_STATE_REJECTED: APPROVAL_REJECTED: .*over the ${MAX_QTY}-unit limit`));
    expect(result.intern).toMatch(/^POLICY_DENIED: /);
    expect(result.supplierLog.map((e) => [e.from, e.intent, e.decision, e.approval, e.outcome])).toEqual([
      ['shop-co', 'order', 'pending', 'rejected', 'failed'],
      ['shop-co', 'order', 'pending', 'approved', 'replied'],
      ['shop-co', 'quote', 'allowed', undefined, 'replied'],
    ]);
    expect(result.shopLog.find((e) => e.from === 'intern')).toMatchObject({ decision: 'denied', code: 'POLICY_DENIED' });
    expect(transcript.indexOf('held for approval')).toBeLessThan(transcript.indexOf('approved by an operator'));
  });
});

describe('examples/hello.ts, run as docs/getting-started.md says (npx tsx examples/hello.ts)', () => {
  it('prints the answer, the refusal of an intent no rule allows, the audit log and its verification', () => {
    const hello = fileURLToPath(new URL('../examples/hello.ts', import.meta.url));
    const out = execFileSync(process.execPath, ['--import', 'tsx', hello], { encoding: 'utf8', timeout: 30_000 });
    expect(out).toContain("answer: 'platform engineers, under 100 words'");
    expect(out).toContain('refused: POLICY_DENIED: research may not ask writer ("publish")');
    expect(out.trim().split('\n').slice(-4)).toEqual([
      'audit: research -> writer ask clarify: allowed, replied',
      'audit: writer -> research reply clarify: allowed, delivered',
      'audit: research -> writer ask publish: denied (POLICY_DENIED)',
      'verify: { ok: true, checked: 3 }',
    ]);
  }, 30_000);
});
