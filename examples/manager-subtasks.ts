// A manager delegating subtasks in parallel (seed 000): `npx tsx examples/manager-subtasks.ts`.
//
// manager splits a report into three subtasks and delegates them at once (Promise.all),
// following each job's progress. worker-c is too slow for the 200 ms deadline: its job
// rejects with TIMEOUT, worker-c's handler sees ctx.signal abort and stops, and the manager
// assembles a partial report from the two that finished. worker-c also tries to offload
// its subtask to worker-a; workers may not delegate to each other, so that is refused.
//
// Embedded defaults: the audit log is a SQLite database in memory.
// Inside this repository the import is '../src/index.js'; in your app it is 'agent-switchboard'.
import { setTimeout as sleep } from 'node:timers/promises';
import { pathToFileURL } from 'node:url';
import { Orchestrator, isBusError, type HandlerContext, type PolicyRule } from '../src/index.js';

const WORKERS = ['worker-a', 'worker-b', 'worker-c'] as const;

/** The manager may delegate `subtask` to each worker, and nothing else is allowed. */
export const POLICIES: PolicyRule[] = WORKERS.map((w) => ({ from: 'manager', to: w, allow: ['delegate'], intents: ['subtask'] }));

export interface ManagerResult {
  /** The parts that came back, by worker. */
  parts: Record<string, string>;
  /** Workers whose job failed, with the error code. */
  missing: Record<string, string>;
  report: string;
  /** The code worker-c's offload attempt was refused with. */
  offloadRefused: string | undefined;
}

export async function run(out: (line: string) => void = console.log): Promise<ManagerResult> {
  const bus = new Orchestrator({ policies: POLICIES }); // audit: ':memory:' by default
  const say = (who: string, text: string) => out(`  ${who.padEnd(9)} ${text}`);
  let offloadRefused: string | undefined;

  /** A worker that takes `steps` steps of `stepMs` each, reporting progress, and stops when told. */
  const worker = (steps: number, stepMs: number) => async (payload: unknown, ctx: HandlerContext) => {
    const { section } = payload as { section: string };
    for (let i = 1; i <= steps; i++) {
      await sleep(stepMs, undefined, { signal: ctx.signal }).catch(() => undefined);
      if (ctx.signal.aborted) {
        const why = (ctx.signal.reason as { code?: string } | undefined)?.code ?? 'aborted';
        say(ctx.agentId, `stopping "${section}" after ${i - 1}/${steps} steps (${why})`);
        throw new Error(`stopped: ${why}`);
      }
      ctx.progress(i / steps, `${section} ${i}/${steps}`);
    }
    return { part: `${section}: ${steps} findings` };
  };

  bus.register('worker-a', { handlers: { subtask: worker(2, 20) } });
  bus.register('worker-b', { handlers: { subtask: worker(3, 20) } });
  bus.register('worker-c', {
    handlers: {
      subtask: async (payload, ctx) => {
        // Tries to pass the work on; the policy has no worker → worker rule.
        try {
          await ctx.delegate('worker-a', 'subtask', payload);
        } catch (e) {
          if (!isBusError(e)) throw e;
          offloadRefused = e.code;
          say('worker-c', `offloading to worker-a refused: ${e.code}`);
        }
        return worker(10, 50)(payload, ctx); // 500 ms of work: too slow for 200 ms
      },
    },
  });
  const manager = bus.register('manager');

  try {
    out('manager-subtasks: three subtasks in parallel, one too slow (seed 000)');
    const sections: Record<(typeof WORKERS)[number], string> = { 'worker-a': 'revenue', 'worker-b': 'churn', 'worker-c': 'forecast' };

    const parts: Record<string, string> = {};
    const missing: Record<string, string> = {};
    await Promise.all(
      WORKERS.map((w) => {
        const job = manager.delegate(w, 'subtask', { section: sections[w] }, { timeoutMs: 200 });
        job.onProgress(({ fraction, note }) => say('manager', `${w} ${Math.round(fraction * 100)}% ${note ?? ''}`));
        // Handle each job's failure here, so one TIMEOUT does not sink the others.
        return job.then(
          (result) => {
            parts[w] = (result as { part: string }).part;
            say('manager', `${w} done: ${parts[w]}`);
          },
          (e: unknown) => {
            if (!isBusError(e)) throw e;
            missing[w] = e.code;
            say('manager', `${w} gave up: ${e.code} after ${e.timeoutMs ?? '?'} ms`);
          },
        );
      }),
    );
    await bus.onIdle(); // worker-c has seen its signal abort and returned

    const report = [...WORKERS.map((w) => (parts[w] !== undefined ? `- ${parts[w]}` : `- ${sections[w]}: (missing: ${missing[w]})`))].join('\n');
    out('report:');
    for (const line of report.split('\n')) out(`  ${line}`);

    out('audit (oldest first):');
    for (const e of bus.getMessageLog({ limit: 20 }).reverse()) {
      out(`  ${e.from} → ${e.to} ${e.type} ${e.intent}: ${e.decision}${e.outcome ? `, ${e.outcome}` : ''}${e.code ? ` (${e.code})` : ''}`);
    }
    out(`result: assembled ${Object.keys(parts).length} of ${WORKERS.length} parts; missing ${Object.entries(missing).map(([w, c]) => `${w} (${c})`).join(', ') || 'none'}`);
    return { parts, missing, report, offloadRefused };
  } finally {
    await bus.close();
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) await run();
