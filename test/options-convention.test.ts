// One options convention for every factory: a strict schema read once, one wording for the
// refusal (`Invalid <factory> options: …` naming each bad key), and a close() that returns
// a promise.
import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { a2aAgent, a2aServer } from '../src/a2a/index.js';
import { aiTools } from '../src/ai/index.js';
import { openApprovalConsole } from '../src/console/index.js';
import { BusError, defineContracts, Orchestrator, SqliteAuditLog } from '../src/index.js';
import { mcpHandlers, mcpServer } from '../src/mcp/index.js';
import { fleetApprovals, natsTransport } from '../src/nats/index.js';
import { ApprovalDesk } from '../src/operator/index.js';
import { openTelemetry } from '../src/otel/index.js';
import { parseOptions } from '../src/options-schema.js';
import { approvalServer } from '../src/web/index.js';

const contracts = defineContracts({ add: { type: 'ask', input: z.object({ a: z.number() }), output: z.number() } });
const buses: Orchestrator[] = [];
afterEach(async () => {
  await Promise.all(buses.splice(0).map((b) => b.close()));
});
function bus(): Orchestrator {
  const b = new Orchestrator({ audit: false, contracts });
  buses.push(b);
  return b;
}

async function refusal(make: () => unknown): Promise<BusError> {
  try {
    await make();
  } catch (e) {
    return e as BusError;
  }
  throw new Error('expected a refusal');
}

describe('every factory', () => {
  const misspelled: Array<[string, () => unknown]> = [
    ['Orchestrator', () => new Orchestrator({ audit: false, limts: {} } as never)],
    ['SqliteAuditLog', () => new SqliteAuditLog({ pth: ':memory:' } as never)],
    ['natsTransport', () => natsTransport({ servers: 'nats://127.0.0.1:1', bus: 'b', leaseMS: 1 } as never)],
    ['fleetApprovals', () => fleetApprovals({ transport: { attach() {}, send() {} }, operatorSeed: 'SU…', timeOutMs: 5 } as never)],
    ['approvalServer', () => approvalServer(bus(), { prot: 80 } as never)],
    ['openApprovalConsole', () => openApprovalConsole(bus(), { operater: 'alice' } as never)],
    ['ApprovalDesk', () => new ApprovalDesk(bus(), { remmber: 3 } as never)],
    ['aiTools', () => aiTools(bus().register('a'), { bus: bus(), contracts, timeoutMS: 5 } as never)],
    ['mcpServer', () => mcpServer(bus().register('a'), { bus: bus(), contracts, serverinfo: {} } as never)],
    ['mcpHandlers', () => mcpHandlers({} as never, { prefx: 'x.' } as never)],
    ['a2aServer', () => a2aServer(bus(), { agent: 'front', host: '127.0.0.1', port: 0, callers: {}, maxbodybytes: 1 } as never)],
    ['a2aAgent', () => a2aAgent({ card: 'http://127.0.0.1:1/.well-known/agent-card.json', header: {} } as never)],
    ['openTelemetry', () => openTelemetry({ tracerprovider: {} } as never)],
  ];

  it.each(misspelled)('%s refuses a misspelled key with INVALID_ARGUMENT in the one wording', async (factory, make) => {
    const e = await refusal(make);
    expect(e).toBeInstanceOf(BusError);
    expect(e.code).toBe('INVALID_ARGUMENT');
    expect(e.message).toMatch(new RegExp(`^Invalid ${factory} options: unknown key "\\w+"$`));
  });

  it('names every bad key of one call, nested ones by their path', async () => {
    const e = await refusal(() => new Orchestrator({ audit: false, limits: { maxDepth: -1 }, timeouts: { askMs: 'soon' } } as never));
    expect(e.message).toMatch(/^Invalid Orchestrator options: limits\.maxDepth: .+; timeouts\.askMs: .+$/);
  });
});

describe('parseOptions()', () => {
  it('refuses options whose getter throws with INVALID_ARGUMENT, never the thrown value', () => {
    const hostile = Object.defineProperty({}, 'port', { enumerable: true, get: () => { throw new Error('gotcha'); } });
    const e = (() => {
      try {
        parseOptions(z.strictObject({ port: z.number().optional() }), hostile, 'approvalServer');
      } catch (error) {
        return error as BusError;
      }
      throw new Error('expected a refusal');
    })();
    expect([e.code, e.message]).toEqual(['INVALID_ARGUMENT', 'Invalid approvalServer options: cannot read them: gotcha']);
  });

  it('returns a copy: later changes to the caller object change nothing', () => {
    const input = { port: 1 };
    const parsed = parseOptions(z.strictObject({ port: z.number() }), input, 'x');
    input.port = 2;
    expect(parsed.port).toBe(1);
  });
});

describe('close()', () => {
  it('returns a promise on every handle', async () => {
    const b = bus();
    const desk = new ApprovalDesk(b);
    const web = await approvalServer(b);
    const closes = [desk.close(), web.close(), b.close()];
    for (const c of closes) expect(c).toBeInstanceOf(Promise);
    await Promise.all(closes);
  });
});
