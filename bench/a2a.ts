// A2A cost: asks/s through a2aServer (a bus agent, :memory: audit, a policy rule, the
// caller's rate bucket roomy) beside a bare @a2a-js/sdk server doing the same work: the SDK's
// express handlers (its documented server) and an executor that publishes the same task,
// working status, artifact and completed status, no bus. A third side, `sdk-http`, is the
// same bare executor behind a2aServer's own node:http glue, so the bus's share and the HTTP
// layer's share can be told apart. All are driven by the SDK's own client, blocking
// sendMessage, `--inflight` requests at a time, in one process; the order of the sides
// rotates round by round so load drifts hit each. Prints each round, the medians, the
// ratios and the load.
//
//   npm run bench:a2a                      5 rounds of 2000 tasks each side
//   npm run bench:a2a -- --rounds=3 --tasks=500 --inflight=8
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { z } from 'zod';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { AgentCard, formatSSEEvent, SSE_HEADERS, TaskState } from '@a2a-js/sdk';
import type { Client } from '@a2a-js/sdk/client';
import { DefaultRequestHandler, defaultServerCallContextBuilder, InMemoryTaskStore, JsonRpcTransportHandler } from '@a2a-js/sdk/server';
import { a2aServer } from '../src/a2a/index.js';
import { defineContracts, Orchestrator } from '../src/index.js';
import { bareCard, bareExecutor, bareSdkServer, dataPart, request, sdkClient } from '../test/support/a2a.js';

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

/** The bare executor of the express side, served the way a2aServer serves (node:http, the SDK's JSON-RPC handler). */
async function sdkOnHttp(): Promise<{ client: Client; close(): Promise<void> }> {
  // The express side's executor and card: only the HTTP layer differs.
  const { executor } = bareExecutor();
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const card = bareCard(url, ['echo']);
  const transport = new JsonRpcTransportHandler(new DefaultRequestHandler(card, new InMemoryTaskStore(), executor));
  const cardBody = JSON.stringify(AgentCard.toJSON(card));
  server.on('request', async (req, res) => {
    if (req.method === 'GET') return void res.writeHead(200, { 'Content-Type': 'application/json' }).end(cardBody);
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const version = req.headers['a2a-version'];
    const context = defaultServerCallContextBuilder({ extensions: [], user: undefined, headers: req.headers, ...(typeof version === 'string' ? { requestedVersion: version } : {}) });
    const reply = await transport.handle(Buffer.concat(chunks).toString('utf8'), context);
    if (Symbol.asyncIterator in reply) {
      res.writeHead(200, SSE_HEADERS);
      for await (const event of reply) res.write(formatSSEEvent(event));
      return void res.end();
    }
    res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify(reply));
  });
  const client = await sdkClient(url);
  return {
    client,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** The median time of one task with nothing else in flight, in ms. */
async function p50(client: Client, total: number): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < total; i++) {
    const started = performance.now();
    await client.sendMessage(request('echo', [dataPart(PAYLOAD)]));
    times.push(performance.now() - started);
  }
  return median(times);
}

const makers = { bare, 'sdk-http': sdkOnHttp, a2aServer: viaBus } as const;
type Side = keyof typeof makers;
const order: Side[] = ['bare', 'sdk-http', 'a2aServer'];
const sides: Record<Side, number[]> = { bare: [], 'sdk-http': [], a2aServer: [] };
const latency: Record<Side, number[]> = { bare: [], 'sdk-http': [], a2aServer: [] };
for (let round = 0; round < ROUNDS; round++) {
  for (const name of [...order.slice(round % 3), ...order.slice(0, round % 3)]) {
    const side = await makers[name]();
    await closedLoop(side.client, Math.max(100, TASKS / 10), IN_FLIGHT); // warm-up
    const rate = await closedLoop(side.client, TASKS, IN_FLIGHT);
    sides[name].push(rate);
    latency[name].push(await p50(side.client, Math.max(50, TASKS / 10)));
    await side.close();
    console.log(`round ${round + 1} ${name.padEnd(9)} ${rate.toFixed(0)} asks/s, p50 alone ${latency[name].at(-1)!.toFixed(2)} ms`);
  }
}
const load = readFileSync('/proc/loadavg', 'utf8').trim();
const ratio = median(sides.a2aServer) / median(sides.bare);
console.log(`median: bare @a2a-js/sdk (express) ${median(sides.bare).toFixed(0)} asks/s, the same on node:http ${median(sides['sdk-http']).toFixed(0)} asks/s, a2aServer ${median(sides.a2aServer).toFixed(0)} asks/s`);
console.log(`a2aServer / bare SDK server: ${ratio.toFixed(2)} (target >= 0.8); a2aServer / SDK on node:http: ${(median(sides.a2aServer) / median(sides['sdk-http'])).toFixed(2)}`);
console.log(`p50 of one task alone: bare ${median(latency.bare).toFixed(2)} ms, node:http ${median(latency['sdk-http']).toFixed(2)} ms, a2aServer ${median(latency.a2aServer).toFixed(2)} ms`);
console.log(`tasks ${TASKS} per round, ${IN_FLIGHT} in flight, ${ROUNDS} rounds, Node ${process.version}, loadavg ${load}`);
