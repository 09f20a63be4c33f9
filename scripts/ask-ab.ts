// One cross-node ask at a time, this checkout against another (SWITCHBOARD_SRC=/path/to/other/src),
// both loaded in this process and measured in alternating blocks, beside bare NATS
// request/reply in the same blocks: on a shared machine the load drifts between runs of
// separate processes by more than the difference looked for; blocks a second apart do not.
//
//   SWITCHBOARD_SRC=../main/src npx tsx scripts/ask-ab.ts --audit=memory --blocks=20 --per-block=200
//   (--audit=off|memory|file|file-inline)
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { benchServer, natsRequestReply } from '../bench/nats-baseline.js';
import { untilEchoAnswers } from '../bench/node-pair.js';

type Index = typeof import('../src/index.js');
type Nats = typeof import('../src/nats/index.js');

const args = process.argv.slice(2);
const flag = (name: string) => args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
const audit = flag('audit') ?? 'memory';
const blocks = Number(flag('blocks') ?? 20);
const perBlock = Number(flag('per-block') ?? 200);
const other = process.env.SWITCHBOARD_SRC;
if (other === undefined) {
  console.error('SWITCHBOARD_SRC=/path/to/other/checkout/src is required');
  process.exit(2);
}

const PAYLOAD = { task: 'summarize', url: 'https://example.com/reports/q3.pdf', words: 120, tags: ['finance', 'quarterly'] };

async function load(src: string): Promise<{ index: Index; nats: Nats }> {
  const index = (await import(pathToFileURL(resolve(src, 'index.ts')).href)) as Index;
  const nats = (await import(pathToFileURL(resolve(src, 'nats/index.ts')).href)) as Nats;
  return { index, nats };
}

async function pair(mod: { index: Index; nats: Nats }, url: string, bus: string, dir: string): Promise<{ ask(): Promise<unknown>; close(): Promise<void> }> {
  const node = async (id: string) =>
    new mod.index.Orchestrator({
      node: id,
      transport: await mod.nats.natsTransport({ servers: url, bus, insecure: true }),
      policies: [{ from: 'client', to: 'echo', allow: ['ask'] }],
      limits: { rate: false },
      audit: audit === 'off' ? false : audit === 'memory' ? { path: ':memory:' } : { path: join(dir, `${bus}-${id}.db`), worker: audit === 'file' },
    });
  const a = await node('bench-a');
  const b = await node('bench-b');
  b.register('echo', { handlers: { echo: (p) => p } });
  await b.ready();
  const client = a.register('client');
  await a.ready();
  await untilEchoAnswers(client);
  return {
    ask: () => client.ask('echo', 'echo', PAYLOAD),
    close: async () => {
      await a.close();
      await b.close();
    },
  };
}

const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;

const server = await benchServer(args);
const dir = mkdtempSync(join(tmpdir(), 'switchboard-ask-ab-'));
const here = await load(resolve(import.meta.dirname, '../src'));
const there = await load(other);
const sides = {
  bare: await natsRequestReply(server.url),
  this: await pair(here, server.url, 'abthis', dir),
  other: await pair(there, server.url, 'abother', dir),
} as const;
const times: Record<keyof typeof sides, number[]> = { bare: [], this: [], other: [] };
const ratios: Record<'this' | 'other', number[]> = { this: [], other: [] };
const startLoad = loadavg()[0]!;
for (const side of Object.keys(sides) as (keyof typeof sides)[]) for (let i = 0; i < 300; i++) await (side === 'bare' ? sides.bare.ask(PAYLOAD) : sides[side].ask());
for (let block = 0; block < blocks; block++) {
  // The order rotates, so no side always follows another.
  const order = (['bare', 'this', 'other'] as const).map((_, i, all) => all[(i + block) % all.length]!);
  const blockMedian: Partial<Record<keyof typeof sides, number>> = {};
  for (const side of order) {
    const t: number[] = [];
    for (let i = 0; i < perBlock; i++) {
      const s = performance.now();
      await (side === 'bare' ? sides.bare.ask(PAYLOAD) : sides[side].ask());
      t.push(performance.now() - s);
    }
    times[side].push(...t);
    blockMedian[side] = median(t);
  }
  ratios.this.push(blockMedian.this! / blockMedian.bare!);
  ratios.other.push(blockMedian.other! / blockMedian.bare!);
}
for (const side of Object.values(sides)) await side.close();
await server.stop();
rmSync(dir, { recursive: true, force: true });
console.log(`audit ${audit}; ${blocks} blocks of ${perBlock} asks per side, one at a time; load average ${startLoad.toFixed(2)} → ${loadavg()[0]!.toFixed(2)}`);
console.log(`  bare NATS p50 ${(median(times.bare) * 1000).toFixed(0)} µs`);
for (const side of ['this', 'other'] as const) {
  const r = ratios[side];
  console.log(`  ${side === 'this' ? 'this checkout' : `SWITCHBOARD_SRC`} p50 ${(median(times[side]) * 1000).toFixed(0)} µs = ${(median(times[side]) / median(times.bare)).toFixed(2)}× bare; per block ${median(r).toFixed(2)}× (${Math.min(...r).toFixed(2)}–${Math.max(...r).toFixed(2)})`);
}
