import { describe, expect, it } from 'vitest';
import { runDemo } from '../examples/demo.js';

describe('examples/demo.ts runDemo()', () => {
  it('tours ask, delegate with progress, notify, timeout, policy denial and approval, then verifies the audit log', async () => {
    const lines: string[] = [];
    await runDemo({ out: (line) => lines.push(line), auto: true });
    const transcript = lines.join('\n');

    // An ask inside the delegate, answered.
    expect(transcript).toMatch(/research → writer\s+delegate summarize\s+✓ delivered/);
    expect(transcript).toMatch(/writer → research\s+ask clarify\s+✓ delivered/);
    expect(transcript).toMatch(/research → writer\s+reply clarify\s+↩ replied/);
    expect(transcript).toMatch(/writer: research answered \{"audience"/);
    // Progress reached the delegator, and the delegate was answered.
    expect(transcript).toMatch(/research: progress 50% draft written/);
    expect(transcript).toMatch(/writer → research\s+reply summarize\s+↩ replied/);
    // The broadcast's receipt.
    expect(transcript).toContain('receipt delivered=[writer, reviewer, supervisor] denied=[vault] pending=[] failed=[purchase, payment]');
    // The slow ask timed out.
    expect(transcript).toMatch(/supervisor → reviewer\s+ask status\s+⌛ expired TIMEOUT/);
    expect(transcript).toContain('supervisor: TIMEOUT after 200 ms');
    // The vault's rule refused the notify, and the rule is named.
    expect(transcript).toMatch(/supervisor → vault\s+notify rotate-keys\s+✗ refused POLICY_DENIED\s+rule '\* -> vault deny:notify'/);
    // The held payment was approved by the scripted operator, and then paid.
    expect(transcript).toMatch(/purchase → payment\s+delegate pay\s+⏸ held for approval/);
    expect(transcript).toContain('auto-deciding');
    expect(transcript).toMatch(/purchase → payment\s+delegate pay\s+✓ approved by demo-operator/);
    expect(transcript).toMatch(/purchase: paid: \{"paid":true/);
    // The audit table and its verification.
    expect(transcript).toMatch(/purchase\s+payment\s+delegate\s+pay\s+pending\s+replied\s+approved by demo-operator/);
    expect(transcript).toMatch(/verifyAuditLog\(\): \{ ok: true, checked: \d+ \}/);
    // No colours when not asked for.
    expect(transcript).not.toContain('\x1b[');
  });
});
