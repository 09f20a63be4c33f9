// Research → writer with a supervisor (seed 002): `npx tsx examples/research-pipeline.ts`.
//
// research delegates a draft to writer and follows its progress; writer asks research to
// clarify (the only thing writer may send it); supervisor checks on both with an ask and
// broadcasts a summary. Writer also tries to hand a fact-check back to research as a
// delegate: no rule allows that, so the bus refuses it (POLICY_DENIED) and the draft goes on.
//
// Embedded defaults: the audit log is a SQLite database in memory.
// Inside this repository the import is '../src/index.js'; in your app it is 'agent-switchboard'.
import { setTimeout as sleep } from 'node:timers/promises';
import { pathToFileURL } from 'node:url';
import { Orchestrator, isBusError, type PolicyRule } from '../src/index.js';

/** Exactly what this workflow needs; everything else is denied. */
export const POLICIES: PolicyRule[] = [
  { from: 'research', to: 'writer', allow: ['delegate', 'notify'] },
  { from: 'writer', to: 'research', allow: ['ask'], intents: ['clarify'] },
  { from: 'supervisor', to: '*', allow: ['ask', 'notify'] },
];

export interface PipelineResult {
  draft: string;
  /** The progress fractions research saw, in order. */
  progress: number[];
  /** What the writer → research delegate was refused with. */
  refused: string | undefined;
  /** What supervisor heard back when it asked for status. */
  status: { research: string; writer: string };
  /** Who got supervisor's broadcast summary. */
  summaryDeliveredTo: string[];
}

export async function run(out: (line: string) => void = console.log): Promise<PipelineResult> {
  const bus = new Orchestrator({ policies: POLICIES }); // audit: ':memory:' by default
  const say = (who: string, text: string) => out(`  ${who.padEnd(10)} ${text}`);

  let writerStage = 'idle';
  let researchStage = 'idle';
  let refused: string | undefined;

  const research = bus.register('research', {
    handlers: {
      clarify: (payload) => {
        say('research', `clarify? ${JSON.stringify(payload)}`);
        return { audience: 'platform engineers', words: 120 };
      },
      status: () => researchStage,
      summary: (payload) => say('research', `got summary ${JSON.stringify(payload)}`),
    },
  });

  // concurrency 2: writer can answer supervisor's status ask while it drafts.
  bus.register('writer', {
    concurrency: 2,
    handlers: {
      draft: async (payload, ctx) => {
        const { topic } = payload as { topic: string };
        writerStage = 'outlining';
        ctx.progress(0.2, 'outlining');
        await sleep(10);
        // ctx.ask sends as writer inside the chain (same conversation, depth + 1).
        const brief = (await ctx.ask('research', 'clarify', { q: 'Who is it for, and how long?' })) as { audience: string; words: number };
        say('writer', `research says: ${brief.audience}, ${brief.words} words`);

        // Not allowed: writer may only *ask* research to *clarify*.
        try {
          await ctx.delegate('research', 'fact-check', { claims: 3 });
        } catch (e) {
          if (!isBusError(e)) throw e;
          refused = e.code;
          say('writer', `delegate fact-check back to research refused: ${e.code}`);
        }

        writerStage = 'drafting';
        ctx.progress(0.6, 'drafting');
        await sleep(40); // supervisor checks in about now
        writerStage = 'done';
        ctx.progress(1, 'done');
        return { draft: `${topic}: one audited bus for ${brief.audience} (${brief.words} words).` };
      },
      status: () => writerStage,
      summary: (payload) => say('writer', `got summary ${JSON.stringify(payload)}`),
    },
  });

  const supervisor = bus.register('supervisor');

  try {
    out('research-pipeline: research → writer, supervised (seed 002)');
    out(`policies: ${POLICIES.length} rules, everything else denied`);

    researchStage = 'waiting for the draft';
    const progress: number[] = [];
    let midway!: () => void;
    const drafting = new Promise<void>((resolve) => (midway = resolve));
    const job = research.delegate('writer', 'draft', { topic: 'agent-switchboard' }, { timeoutMs: 1_000 });
    job.onProgress(({ fraction, note }) => {
      progress.push(fraction);
      say('research', `progress ${Math.round(fraction * 100)}% ${note ?? ''}`);
      if (fraction >= 0.5) midway();
    });

    // The supervisor checks on both while the draft is being written.
    await drafting;
    const [r, w] = await Promise.all([
      supervisor.ask('research', 'status', {}, { timeoutMs: 300 }),
      supervisor.ask('writer', 'status', {}, { timeoutMs: 300 }),
    ]);
    const status = { research: String(r), writer: String(w) };
    say('supervisor', `status: research=${status.research}, writer=${status.writer}`);

    const { draft } = (await job) as { draft: string };
    researchStage = 'published';
    say('research', `draft: ${draft}`);

    const receipt = await supervisor.notify('summary', { done: true, chars: draft.length });
    say('supervisor', `summary broadcast: delivered=[${receipt.delivered.join(', ')}] denied=[${receipt.denied.join(', ')}]`);
    await bus.onIdle();

    out('audit (oldest first):');
    for (const e of bus.getMessageLog({ limit: 20 }).reverse()) {
      out(`  ${e.from} → ${e.to} ${e.type} ${e.intent}: ${e.decision}${e.outcome ? `, ${e.outcome}` : ''}${e.code ? ` (${e.code})` : ''}`);
    }
    out(`result: draft of ${draft.length} chars, writer's delegate back ${refused ?? 'not refused'}`);
    return { draft, progress, refused, status, summaryDeliveredTo: [...receipt.delivered] };
  } finally {
    await bus.close();
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) await run();
