// Finding a calculator by capability (seed 004): `npx tsx examples/calculator-discovery.ts`.
//
// Agents register with `capabilities`. The app's orchestrator agent calls
// discover('calculation'), which lists only the capable agents its policy lets it ask or
// delegate to: the legacy calculator also has the capability but no rule reaches it, so it
// is not discovered (and asking it directly is POLICY_DENIED). The orchestrator asks the
// calculator to `calculate` { a: 5, b: 3, op: '+' }, has a formatter format the result,
// and shows that a division by zero comes back as HANDLER_FAILED.
//
// Embedded defaults: the audit log is a SQLite database in memory.
// Inside this repository the import is '../src/index.js'; in your app it is 'agent-switchboard'.
import { pathToFileURL } from 'node:url';
import { Orchestrator, isBusError, type PolicyRule } from '../src/index.js';

export const APP = 'agent.app.orchestrator';
export const CALCULATOR = 'agent.calculator.calculation';
export const LEGACY = 'agent.calculator.legacy';
export const FORMATTER = 'agent.formatter';

/** The app may ask the calculator to calculate and the formatter to format; nothing else. */
export const POLICIES: PolicyRule[] = [
  { from: APP, to: CALCULATOR, allow: ['ask'], intents: ['calculate'] },
  { from: APP, to: FORMATTER, allow: ['ask'], intents: ['format'] },
];

type Op = '+' | '-' | '*' | '/';

export interface DiscoveryResult {
  /** Every registered agent with the capability, reachable or not. */
  capable: string[];
  /** What discover('calculation') returned: the ones the app may ask. */
  discovered: string[];
  result: number;
  formatted: string;
  /** The code asking the legacy calculator directly was refused with. */
  legacyRefused: string | undefined;
  /** The code of the division by zero. */
  divisionByZero: string | undefined;
}

export async function run(out: (line: string) => void = console.log): Promise<DiscoveryResult> {
  const bus = new Orchestrator({ policies: POLICIES }); // audit: ':memory:' by default
  const say = (who: string, text: string) => out(`  ${who.padEnd(28)} ${text}`);

  const calculate = (payload: unknown) => {
    const { a, b, op } = payload as { a: number; b: number; op: Op };
    if (op === '/' && b === 0) throw new Error('Division by zero');
    const result = op === '+' ? a + b : op === '-' ? a - b : op === '*' ? a * b : a / b;
    return { result };
  };
  bus.register(CALCULATOR, { capabilities: ['calculation'], handlers: { calculate } });
  bus.register(LEGACY, { capabilities: ['calculation'], handlers: { calculate } });
  bus.register(FORMATTER, {
    capabilities: ['formatting'],
    handlers: {
      format: (payload) => {
        const { a, b, op, result } = payload as { a: number; b: number; op: Op; result: number };
        return `${a} ${op} ${b} = ${result}`;
      },
    },
  });
  const app = bus.register(APP);

  try {
    out('calculator-discovery: find a calculator by capability, then ask it (seed 004)');
    const capable = bus.agents().filter((a) => a.capabilities.includes('calculation')).map((a) => a.id);
    say(APP, `agents with "calculation": ${capable.join(', ')}`);

    const discovered = app.discover('calculation');
    say(APP, `discover('calculation') → [${discovered.join(', ')}]`);
    const why = bus.explain({ from: APP, to: LEGACY, type: 'ask', intent: 'calculate' });
    say(APP, `${LEGACY} not discovered: ${why.decision}, ${why.reason}`);

    const calculator = discovered[0];
    if (calculator === undefined) throw new Error('no reachable calculator');
    const request = { a: 5, b: 3, op: '+' as Op };
    const { result } = (await app.ask(calculator, 'calculate', request, { timeoutMs: 300 })) as { result: number };
    say(calculator, `calculate ${JSON.stringify(request)} → ${result}`);

    const formatter = app.discover('formatting')[0] ?? FORMATTER;
    const formatted = (await app.ask(formatter, 'format', { ...request, result }, { timeoutMs: 300 })) as string;
    say(formatter, `format → "${formatted}"`);

    // Skipping discovery does not help: the legacy calculator is still out of reach.
    let legacyRefused: string | undefined;
    try {
      await app.ask(LEGACY, 'calculate', request);
    } catch (e) {
      if (!isBusError(e)) throw e;
      legacyRefused = e.code;
      say(APP, `asking ${LEGACY} directly: ${e.code}`);
    }

    // The calculator's own failure reaches the asker as HANDLER_FAILED, with its message.
    let divisionByZero: string | undefined;
    try {
      await app.ask(calculator, 'calculate', { a: 5, b: 0, op: '/' }, { timeoutMs: 300 });
    } catch (e) {
      if (!isBusError(e)) throw e;
      divisionByZero = e.code;
      say(calculator, `calculate 5 / 0: ${e.code} (${e.message})`);
    }

    out('audit (oldest first):');
    for (const e of bus.getMessageLog({ limit: 20 }).reverse()) {
      out(`  ${e.from} → ${e.to} ${e.type} ${e.intent}: ${e.decision}${e.outcome ? `, ${e.outcome}` : ''}${e.code ? ` (${e.code})` : ''}`);
    }
    out(`result: ${formatted} (from ${calculator}, found by capability)`);
    return { capable, discovered, result, formatted, legacyRefused, divisionByZero };
  } finally {
    await bus.close();
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) await run();
