// `npm run example:nodes` runs as the docs say: fleet init, a nats-server with the generated
// auth.conf, the claims bucket, two processes of one signed, sealed bus, verified logs.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { natsBin, skip } from './context.js';

if (skip !== '') console.warn(`[nats] nodes-example.test.ts skipped: ${skip}`);

describe.skipIf(skip !== '')('the nodes example', () => {
  it('carries a delegate with progress and a call back across processes, and shows a refusal by the receiving node', async () => {
    const main = join(import.meta.dirname, '..', '..', 'examples', 'nodes', 'main.ts');
    const env: NodeJS.ProcessEnv = { ...process.env, NATS_SERVER: natsBin };
    delete env.NATS_URL;
    const proc = spawn(process.execPath, ['--import', 'tsx', main], { env, stdio: ['ignore', 'pipe', 'pipe'] });
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
    expect(out).toMatch(/claims bucket of bus "example" ready/);
    // Each log holds the other node's proofs (asks, the delegate, the notify; the call back).
    expect(out).toMatch(/research-1\.db --roster[\s\S]*ok: [1-9]\d* peer proofs? verified against the roster of bus "example"/);
    expect(out).toMatch(/writers-1\.db --roster[\s\S]*ok: [1-9]\d* peer proofs? verified against the roster of bus "example"/);
    expect(code, out).toBe(0);
  }, 90_000);
});
