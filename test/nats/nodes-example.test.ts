// `npm run example:nodes` runs as the docs say: two processes, one bus, against the suite's server.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { natsUrl, skip } from './context.js';

if (skip !== '') console.warn(`[nats] nodes-example.test.ts skipped: ${skip}`);

describe.skipIf(skip !== '')('the nodes example', () => {
  it('carries a delegate with progress and a call back across processes, and shows a refusal by the receiving node', async () => {
    const main = join(import.meta.dirname, '..', '..', 'examples', 'nodes', 'main.ts');
    const proc = spawn(process.execPath, ['--import', 'tsx', main], { env: { ...process.env, NATS_URL: natsUrl }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    proc.stdout!.on('data', (c: Buffer) => (out += c.toString()));
    proc.stderr!.on('data', (c: Buffer) => (out += c.toString()));
    const code = await new Promise<number | null>((resolve) => proc.once('exit', resolve));
    expect(out).toContain('agents on the bus:');
    expect(out).toMatch(/writer@writers-1/);
    expect(out).toContain('progress 0.5 outlined');
    expect(out).toContain('for platform engineers');
    expect(out).toMatch(/delivered to \[ 'writer' \]/);
    expect(out).toContain('refused by the receiving node: POLICY_DENIED');
    expect(out).toContain('verify → ok');
    expect(code, out).toBe(0);
  }, 60_000);
});
