// A2A cost (issue 24): asks/s through a2aServer (a bus agent, :memory: audit, a policy rule,
// the caller's rate bucket off) beside a bare @a2a-js/sdk server doing the same work (the
// SDK's express handlers and an executor that publishes the same task, working status,
// artifact and completed status, no bus). Both are driven by the SDK's own client, blocking
// sendMessage, `--inflight` requests at a time, in one process; rounds alternate between the
// two so load drifts hit both. Prints each round, the medians, the ratio and the load.
//
//   npm run bench:a2a                      5 rounds of 2000 tasks each side
//   npm run bench:a2a -- --rounds=3 --tasks=500 --inflight=8
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { z } from 'zod';
import { TaskState } from '@a2a-js/sdk';
import type { Client } from '@a2a-js/sdk/client';
import { a2aServer } from '../src/a2a/index.js';
import { defineContracts, Orchestrator } from '../src/index.js';
import { bareSdkServer, dataPart, request, sdkClient } from '../test/support/a2a.js';

const arg = (name: string, fallback: number): number => {
  const found = process.argv.find((a) => a.startsWith(`--${name}=`));
  return found === undefined ? fallback : Number(found.split('=')[1]);
};
const ROUNDS = arg('rounds', 5);
const TASKS = arg('tasks', 2000);
const IN_FLIGHT = arg('inflight', 16);
const TOKEN = 'bench-token-0123456789abcdef';
/** About 120 bytes of JSON, like bench/run.ts's payload. */
const PAYLOAD = { task: 'summarize', url: 'https://example.com/reports/q3.pdf', words: 120, tags: ['finance', 'quarterly'] };

const contracts = defineContracts({
  echo: { type: 'ask', input: z.object({ task: z.string(), url: z.string(), words: z.number(), tags: z.array(z.string()) }), output: z.unknown() },
});

async function closedLoop(client: Client, total: number, inFlight: number): Promise<number> {
  let sent = 0;
  const lane = async () => {
    while (sent < total) {
      sent++;
      const result = await client.sendMessage(request('echo', [dataPart(PAYLOAD)]));
      if (!('status' in result) || result.status?.state !== TaskState.TASK_STATE_COMPLETED) throw new Error('a task did not complete');
    }
  };
  const started = performance.now();
  await Promise.all(Array.from({ length: inFlight }, lane));
  return (total / (performance.now() - started)) * 1000;
}

async function viaBus(): Promise<{ client: Client; close(): Promise<void> }> {
  const bus = new Orchestrator({ contracts, policies: [{ from: 'bench-client', to: 'echo-agent', allow: ['ask'], intents: ['echo'] }], limits: { rate: { perSecond: 1e9, burst: 1e9 } } });
  bus.register('echo-agent', { handlers: { echo: (payload: unknown) => payload } as never, concurrency: Infinity });
  const server = await a2aServer(bus, { agent: 'echo-agent', host: '127.0.0.1', port: 0, callers: { [TOKEN]: 'bench-client' } });
  const client = await sdkClient(server.url, TOKEN);
  return {
    client,
    async close() {
      await server.close();
      await bus.close();
    },
  };
}

async function bare(): Promise<{ client: Client; close(): Promise<void> }> {
  const server = await bareSdkServer(['echo'], (_skill, input) => input);
  server.seenAuth.length = 0;
  const client = await sdkClient(server.url);
  return { client, close: server.close };
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const sides = { bare: [] as number[], a2aServer: [] as number[] };
for (let round = 0; round < ROUNDS; round++) {
  for (const [name, make] of round % 2 === 0 ? ([['bare', bare], ['a2aServer', viaBus]] as const) : ([['a2aServer', viaBus], ['bare', bare]] as const)) {
    const side = await make();
    await closedLoop(side.client, Math.max(100, TASKS / 10), IN_FLIGHT); // warm-up
    const rate = await closedLoop(side.client, TASKS, IN_FLIGHT);
    sides[name].push(rate);
    await side.close();
    console.log(`round ${round + 1} ${name.padEnd(9)} ${rate.toFixed(0)} asks/s`);
  }
}
const load = readFileSync('/proc/loadavg', 'utf8').trim();
const ratio = median(sides.a2aServer) / median(sides.bare);
console.log(`median: bare @a2a-js/sdk ${median(sides.bare).toFixed(0)} asks/s, a2aServer ${median(sides.a2aServer).toFixed(0)} asks/s, ratio ${ratio.toFixed(2)} (target >= 0.8)`);
console.log(`tasks ${TASKS} per round, ${IN_FLIGHT} in flight, ${ROUNDS} rounds, Node ${process.version}, loadavg ${load}`);
