import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it, vi } from 'vitest';
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

describe('examples/demo.ts runDemo({ web: true })', () => {
  it('serves the approval page; payments approved and rejected there settle the tour, and the audit table names the operator', async () => {
    const { csrfFor } = await import('../src/web/auth.js');
    const lines: string[] = [];
    let ready!: (server: import('../src/web/index.js').ApprovalServerHandle) => void;
    const served = new Promise<import('../src/web/index.js').ApprovalServerHandle>((resolve) => (ready = resolve));
    const tour = runDemo({ out: (line) => lines.push(line), auto: false, web: true, operator: 'carol', onWeb: (server) => ready(server) });
    const server = await served;
    expect(server.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/);
    const headers = { authorization: `Bearer ${server.token}`, 'content-type': 'application/json', 'x-switchboard-csrf': csrfFor(server.token) };
    let pending: { id: string; envelope: { payload: { amount: number } } }[] = [];
    await vi.waitFor(
      async () => {
        pending = ((await (await fetch(new URL('/api/state', server.url), { headers })).json()) as { pending: typeof pending }).pending;
        expect(pending).toHaveLength(2);
      },
      { timeout: 10_000, interval: 50 },
    );
    const [small, big] = pending;
    // The link the tour prints where the payments wait is the one that signs a browser in.
    expect(lines.join('\n')).toContain(`two payments wait for you on ${server.loginUrl} `);
    const decide = (body: unknown) => fetch(new URL('/api/decide', server.url), { method: 'POST', headers, body: JSON.stringify(body) });
    expect((await decide({ id: small!.id, decision: 'approve', by: 'carol' })).status).toBe(200);
    expect((await decide({ id: big!.id, decision: 'reject', by: 'carol', reason: 'too expensive' })).status).toBe(200);
    await tour;
    const transcript = lines.join('\n');
    expect(transcript).toMatch(/purchase: paid: \{"paid":true/);
    expect(transcript).toContain('APPROVAL_REJECTED');
    expect(transcript).toContain('too expensive');
    expect(transcript).toMatch(/purchase\s+payment\s+delegate\s+pay\s+pending\s+replied\s+approved by carol/);
    expect(transcript).toMatch(/verifyAuditLog\(\): \{ ok: true/);
  }, 30_000);
});

describe('examples/demo.ts on the command line', () => {
  const demo = fileURLToPath(new URL('../examples/demo.ts', import.meta.url));
  const run = (...args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', demo, ...args], { encoding: 'utf8', timeout: 30_000 });

  it('refuses an unknown argument with exit code 2, naming it, before the tour starts', () => {
    const { status, stdout, stderr } = run('--atuo');
    expect(status).toBe(2);
    expect(stderr).toContain('unknown argument "--atuo"');
    expect(stderr).toContain('Usage: npm run demo --');
    expect(stdout).toBe('');
  }, 30_000);

  it('prints its usage for --help and exits 0', () => {
    const { status, stdout } = run('--help');
    expect(status).toBe(0);
    expect(stdout).toMatch(/^Usage: npm run demo -- /);
    expect(stdout).toContain('--web');
  }, 30_000);
});
