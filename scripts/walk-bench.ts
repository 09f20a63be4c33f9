// Worst payloads against the codec's bounded walk: how long encodePayload() takes to accept
// or refuse each one. A measurement script, not a test: `npm run walk-bench`.
// Each case is built once (building is the sender's cost, not the bus's), then the walk is
// timed: the best of 5 runs and the median, in ms, on whatever machine runs this.
import { performance } from 'node:perf_hooks';
import { encodePayload } from '../src/codec.js';

const MiB = 1024 * 1024;

interface Case {
  readonly what: string;
  readonly limit: number;
  readonly build: () => unknown;
}

function nested(depth: number): unknown {
  let v: unknown = 0;
  for (let i = 0; i < depth; i++) v = [v];
  return v;
}

function wide(keys: number, value: unknown): Record<string, unknown> {
  const o: Record<string, unknown> = {};
  for (let i = 0; i < keys; i++) o[`k${i}`] = value;
  return o;
}

const cases: Case[] = [
  { what: '100,000 references to one 1 MiB string', limit: 102_400, build: () => new Array<string>(100_000).fill('x'.repeat(MiB)) },
  { what: '100,000 references to one 1 MiB string (limit 100 MiB)', limit: 100 * MiB, build: () => new Array<string>(100_000).fill('x'.repeat(MiB)) },
  { what: '100 references to one 1 MiB non-ASCII string (limit 400 MiB, accepted)', limit: 400 * MiB, build: () => new Array<string>(100).fill('é'.repeat(MiB)) },
  { what: 'a dense array of 10^7 zeros', limit: 102_400, build: () => new Array<number>(10_000_000).fill(0) },
  { what: 'a dense array of 10^7 zeros (limit 100 MiB)', limit: 100 * MiB, build: () => new Array<number>(10_000_000).fill(0) },
  { what: 'a sparse array of length 2^32−1', limit: 102_400, build: () => new Array(2 ** 32 - 1) },
  { what: 'an array of 10^6 holes but one element', limit: 100 * MiB, build: () => { const a = new Array(1_000_000); a[999_999] = 1; return a; } },
  { what: 'nesting 255 deep (accepted)', limit: 102_400, build: () => nested(255) },
  { what: '2^40 leaves through shared arrays', limit: 102_400, build: () => { let v: unknown = 'x'; for (let i = 0; i < 40; i++) v = [v, v]; return v; } },
  { what: '2^40 leaves through shared arrays (limit 100 MiB)', limit: 100 * MiB, build: () => { let v: unknown = 'x'; for (let i = 0; i < 40; i++) v = [v, v]; return v; } },
  { what: 'a wide object of 10^6 keys', limit: 102_400, build: () => wide(1_000_000, 0) },
  { what: 'one object of 10^4 keys referenced 10^4 times (limit 100 MiB)', limit: 100 * MiB, build: () => new Array(10_000).fill(wide(10_000, 0)) },
  { what: 'one object of 10^5 undefined-valued keys referenced 10^4 times', limit: 102_400, build: () => new Array(10_000).fill(wide(100_000, undefined)) },
  { what: 'one key of 10 MiB', limit: 102_400, build: () => ({ ['k'.repeat(10 * MiB)]: 1 }) },
  { what: '10^6 distinct small strings (limit 100 MiB)', limit: 100 * MiB, build: () => Array.from({ length: 1_000_000 }, (_, i) => `s${i}`) },
  { what: '10^6 distinct small strings', limit: 102_400, build: () => Array.from({ length: 1_000_000 }, (_, i) => `s${i}`) },
  { what: '1,000 distinct 16 KiB strings of equal length (limit 100 MiB, accepted)', limit: 100 * MiB, build: () => Array.from({ length: 1_000 }, (_, i) => `${'x'.repeat(16_384)}${i}`.slice(-16_390)) },
];

function outcome(payload: unknown, limit: number): string {
  try {
    return `accepted, ${encodePayload(payload, limit).bytes} bytes`;
  } catch (error) {
    return (error as { code?: string }).code ?? String(error);
  }
}

const rows: string[] = [];
for (const c of cases) {
  const payload = c.build();
  const times: number[] = [];
  let result = '';
  for (let run = 0; run < 5; run++) {
    const start = performance.now();
    result = outcome(payload, c.limit);
    times.push(performance.now() - start);
  }
  times.sort((a, b) => a - b);
  const row = `| ${c.what} | ${result} in ${times[0]!.toFixed(2)} ms (median ${times[2]!.toFixed(2)} ms) | limit ${c.limit} bytes |`;
  rows.push(row);
  console.log(row);
}
