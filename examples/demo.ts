// A live tour of agent-switchboard: `npm run demo` (`npm run demo -- --help` lists the flags; add `--auto` to skip the question,
// `--interactive [--operator NAME]` to decide in the terminal approval console
// (agent-switchboard/console), or `--web` to decide on the approval web page
// (agent-switchboard/web)).
//
// research delegates a summary to writer; writer asks research to clarify and asks
// reviewer to review, reporting progress; research broadcasts what it found; supervisor
// waits too little for a slow reviewer (TIMEOUT) and is refused by the vault's rule
// (POLICY_DENIED); purchase's payment waits for a human. Then the audit log and its check.
//
// Everything runs on the embedded defaults: the audit log is a SQLite database in memory.
import { realpathSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { Orchestrator, SqliteAuditLog, isBusError, type AuditLog, type PendingApproval, type PolicyRule } from '../src/index.js';
import type { Telemetry } from '../src/otel/index.js';
import { openApprovalConsole, type ApprovalConsoleHandle } from '../src/console/index.js';
import { approvalServer, type ApprovalServerHandle } from '../src/web/index.js';
import { promptOperator, scriptedOperator } from './demo/operator.js';
import { makeStyle, Transcript } from './demo/transcript.js';

/** The seed policy set, plus the two rules this workflow needs (marked). */
export const POLICIES: PolicyRule[] = [
  { from: 'research', to: 'writer', allow: ['delegate', 'notify'] },
  { from: 'writer', to: 'research', allow: ['ask'], intents: ['clarify'] },
  { from: 'supervisor', to: '*', allow: ['ask', 'notify'] },
  { from: 'purchase', to: 'payment', allow: ['delegate'], requireApproval: true },
  { from: '*', to: 'vault', deny: ['notify'] },
  { from: 'writer', to: 'reviewer', allow: ['ask'], intents: ['review'] }, // demo
  { from: 'research', to: '*', allow: ['notify'], intents: ['found'] }, // demo
];

export interface DemoOptions {
  /** Where each transcript line goes. */
  out: (line: string) => void;
  /** Decide approvals with a scripted operator instead of asking on the terminal. */
  auto: boolean;
  /** ANSI colours. @default false */
  color?: boolean;
  /**
   * Open the approval console (ink) on the terminal and let a person decide: the feed, the
   * notifications and the message queue replace the event lines of the transcript, and
   * purchase sends a second payment so there is something to choose between.
   * Needs stdin and stdout to be TTYs. @default false
   */
  interactive?: boolean;
  /** Who decides (recorded as `decidedBy`). @default 'demo-operator' when scripted, else $USER */
  operator?: string;
  /**
   * Serve the approval web page (agent-switchboard/web) and let a person decide there:
   * `onWeb` gets its handle (print `loginUrl`); purchase sends two payments and the tour
   * goes on once both are settled. @default false
   */
  web?: boolean;
  /** Port of the web page. @default 0 (a free one) */
  webPort?: number;
  /** Called with the web page's handle once it listens. */
  onWeb?: (server: ApprovalServerHandle) => void;
  /** The bus's telemetry (`npm run example:otel` prints the tour's spans). @default none */
  telemetry?: Telemetry;
}

export async function runDemo(options: DemoOptions): Promise<void> {
  const { out, auto } = options;
  const t = new Transcript(out, makeStyle(options.color ?? false));

  // The default audit log (SQLite in memory), kept readable after bus.close() so that the
  // table can show what closing did to payments left undecided.
  const log = new SqliteAuditLog();
  const bus = new Orchestrator({ policies: POLICIES, audit: keptOpen(log), ...(options.telemetry !== undefined ? { telemetry: options.telemetry } : {}) });
  const person = options.interactive === true || options.web === true;
  const operatorName = options.operator ?? (auto && !person ? 'demo-operator' : process.env['USER'] || 'you');
  // The console shows the bus's events itself; the transcript keeps the agents' own words.
  const ui: ApprovalConsoleHandle | undefined = options.interactive ? openApprovalConsole(bus, { operator: operatorName }) : undefined;
  if (ui === undefined) t.watch(bus.events);
  const web = options.web === true ? await approvalServer(bus, { operator: operatorName, port: options.webPort ?? 0 }) : undefined;
  if (web !== undefined) options.onWeb?.(web);
  let undecided: Promise<unknown> | undefined;
  let busClosed = false;

  // The approval queue: the operator is told about held messages through an event.
  const held: PendingApproval[] = [];
  let onHeld: (() => void) | undefined;
  bus.events.on('approval:requested', ({ approval }) => {
    held.push(approval);
    onHeld?.();
  });
  const nextApproval = (): Promise<PendingApproval> =>
    held.length > 0 ? Promise.resolve(held.shift()!) : new Promise((resolve) => (onHeld = () => ((onHeld = undefined), resolve(held.shift()!))));

  // ---- The agents: each gets a handle; none holds a reference to another. ----
  const research = bus.register('research', {
    handlers: {
      clarify: async (payload, ctx) => {
        const left = (ctx.message.deadline ?? 0) - Date.now();
        t.say('research', `asked ${JSON.stringify(payload)} at depth ${ctx.message.depth}, same conversation, ${(left / 1000).toFixed(1)} s of the delegate's deadline left`);
        await sleep(40);
        return { audience: 'platform engineers', length: 'under 100 words' };
      },
    },
  });

  bus.register('writer', {
    handlers: {
      summarize: async (payload, ctx) => {
        ctx.progress(0.1, 'reading the sources');
        await sleep(30);
        // ctx.ask sends as writer inside the chain: same conversation, depth + 1, and a
        // deadline no later than what remains of research's delegate.
        const brief = await ctx.ask('research', 'clarify', { q: 'Who is the audience, how long?' });
        t.say('writer', `research answered ${JSON.stringify(brief)}`);
        ctx.progress(0.5, 'draft written');
        const draft = `Switchboard routes every agent message through one policy-checked, audited bus (${JSON.stringify(payload)}).`;
        const review = await ctx.ask('reviewer', 'review', { draft });
        ctx.progress(1, 'review passed');
        return { summary: draft, review };
      },
      found: (payload) => t.say('writer', `noted ${JSON.stringify(payload)}`),
    },
  });

  bus.register('reviewer', {
    handlers: {
      review: async () => {
        await sleep(60);
        return { verdict: 'approve', notes: ['clear', 'short enough'] };
      },
      // Too slow for a 200 ms deadline; it stops when ctx.signal aborts.
      status: async (_payload, ctx) => {
        try {
          await sleep(2_000, undefined, { signal: ctx.signal });
          return { ok: true };
        } catch {
          const why = ctx.signal.reason as { code?: string } | undefined;
          t.say('reviewer', `status check abandoned: ctx.signal aborted (${why?.code ?? 'aborted'})`);
          throw new Error('abandoned');
        }
      },
      found: (payload) => t.say('reviewer', `noted ${JSON.stringify(payload)}`),
    },
  });

  const supervisor = bus.register('supervisor', { handlers: { '*': () => undefined } }); // sees every notify it is sent
  bus.register('vault', { handlers: { '*': () => ({ ok: true }) } });
  const purchase = bus.register('purchase');
  bus.register('payment', {
    handlers: { pay: (payload) => ({ paid: true, receipt: 'rcpt-0001', charged: payload }) },
  });

  try {
    out(t.style.bold('agent-switchboard demo: research → writer → reviewer, on the embedded defaults (audit log in :memory:)'));
    out(t.style.dim(`${POLICIES.length} policy rules, everything else denied; agents: ${bus.agents().map((a) => a.id).join(', ')}`));

    // ---- 1. A delegate with progress, an ask inside it, and a reply. ----
    t.heading('1. delegate with progress (and an ask inside it)');
    const job = research.delegate('writer', 'summarize', { topic: 'agent-switchboard', sources: 3 });
    job.onProgress(({ fraction, note }) => t.say('research', `progress ${Math.round(fraction * 100)}%${note !== undefined ? ` ${note}` : ''}`));
    const result = await job;
    t.say('research', `summary ready: ${JSON.stringify(result)}`);

    // ---- 2. A broadcast notify and its receipt. ----
    t.heading('2. notify (broadcast) and its receipt');
    const receipt = await research.notify('found', { url: 'https://example.com/report' });
    t.say('research', `receipt delivered=[${receipt.delivered.join(', ')}] denied=[${receipt.denied.join(', ')}] pending=[${receipt.pending.join(', ')}] failed=[${receipt.failed.join(', ')}]`);

    // ---- 3. An ask that is too slow for its deadline. ----
    t.heading('3. timeout: an ask with timeoutMs 200 to a slow agent');
    try {
      await supervisor.ask('reviewer', 'status', { q: 'Anything stuck?' }, { timeoutMs: 200 });
    } catch (e) {
      if (!isBusError(e)) throw e;
      t.say('supervisor', `${e.code} after ${e.timeoutMs} ms: ${e.message}`);
    }
    await bus.onIdle(); // until reviewer's handler has seen its signal abort and returned

    // ---- 4. A message the policy refuses, with the rule that refused it. ----
    t.heading('4. refused: supervisor → * allows notify, but * → vault denies it');
    const why = bus.explain({ from: 'supervisor', to: 'vault', type: 'notify', intent: 'rotate-keys' });
    t.say('explain', `${why.decision}: ${why.reason}`);
    const refused = await supervisor.notify('rotate-keys', { now: true }, { to: ['vault'] });
    t.say('supervisor', `receipt denied=[${refused.denied.join(', ')}] delivered=[${refused.delivered.join(', ')}]`);

    // ---- 5. A delegate held for a human. ----
    t.heading('5. approval: purchase → payment needs a human');
    const report = (job: Promise<unknown>) =>
      job.then(
        (paid) => t.say('purchase', `paid: ${JSON.stringify(paid)}`),
        (e: unknown) => {
          if (!isBusError(e)) throw e;
          t.say('purchase', `${e.code}: ${e.message}`);
        },
      );
    if (web !== undefined) {
      // A person decides on the web page; the tour goes on once both payments are settled.
      const jobs = [
        purchase.delegate('payment', 'pay', { item: 'GPU hours', amount: 120, currency: 'EUR' }, { timeoutMs: 300_000 }),
        purchase.delegate('payment', 'pay', { item: 'conference tickets', amount: 900, currency: 'EUR' }, { timeoutMs: 300_000 }),
      ];
      // The sign-in link, not the bare address: that one answers 401 to a browser without the token.
      t.say('operator', `${operatorName}: two payments wait for you on ${web.loginUrl} (5 minutes before they expire)`);
      undecided = Promise.all(jobs.map(report));
      await undecided;
    } else if (ui !== undefined) {
      // A person decides in the console; the tour goes on once both payments are settled
      // (approved, denied or expired) or the console is closed (q, Ctrl-C).
      const jobs = [
        purchase.delegate('payment', 'pay', { item: 'GPU hours', amount: 120, currency: 'EUR' }, { timeoutMs: 120_000 }),
        purchase.delegate('payment', 'pay', { item: 'conference tickets', amount: 900, currency: 'EUR' }, { timeoutMs: 120_000 }),
      ];
      t.say('operator', `${operatorName}: two payments wait for you. a approves (after showing it in full), d denies with a reason, m opens the queue, ? lists the keys (q leaves them undecided)`);
      undecided = Promise.all(jobs.map(report));
      const how = await Promise.race([undecided.then(() => 'settled' as const), ui.exited]);
      ui.finish();
      await ui.exited;
      if (how === 'quit' && bus.approvals.list().length > 0) {
        // Their outcomes come before the audit table, which then records them.
        t.say('operator', 'console closed with payments undecided: closing the bus cancels them');
        await bus.close();
        busClosed = true;
        await undecided;
      }
    } else {
      const payment = purchase.delegate('payment', 'pay', { item: 'GPU hours', amount: 120, currency: 'EUR' }, { timeoutMs: 60_000 });
      const approval = await nextApproval();
      const say = (text: string) => t.say('operator', text);
      const operator = auto ? scriptedOperator(say, operatorName) : promptOperator(say, operatorName);
      const decision = await operator.decide(approval);
      if (decision.approve) bus.approvals.approve(approval.id, { by: decision.by, note: 'demo' });
      else bus.approvals.reject(approval.id, { by: decision.by, ...(decision.reason !== undefined ? { reason: decision.reason } : {}) });
      await report(payment);
    }

    // ---- The audit log: one entry per message and recipient, with its latest outcome. ----
    t.heading('audit log (bus.getMessageLog, oldest first)');
    t.table((busClosed ? log.query({ limit: 50 }) : bus.getMessageLog({ limit: 50 })).reverse());
    const verified = busClosed ? log.verify() : bus.verifyAuditLog();
    t.plain();
    t.plain(`verifyAuditLog(): { ok: ${verified.ok}, checked: ${verified.checked}${verified.firstBad !== undefined ? `, firstBad: ${verified.firstBad}` : ''} }`);
  } finally {
    ui?.close();
    await web?.close();
    await bus.close();
    await undecided; // payments left undecided end with CLOSED when the bus closes
    log.close();
  }
}

/** The log as the bus sees it, except that bus.close() leaves it open (the demo closes it last). */
function keptOpen(log: AuditLog): AuditLog {
  return { append: (records) => log.append(records), query: (filter) => log.query(filter), verify: () => log.verify(), close: () => undefined };
}

function isMain(): boolean {
  const entry = process.argv[1];
  if (entry === undefined) return false;
  try {
    return realpathSync(entry) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

const USAGE = `Usage: npm run demo -- [--auto | --interactive [--operator NAME] | --web [--port N] [--operator NAME]]

  (none)         on a terminal, ask once whether to approve the payment; elsewhere as --auto
  --auto         a scripted operator decides
  --interactive  decide in the terminal approval console (agent-switchboard/console)
  --web          decide on the approval web page (agent-switchboard/web); prints its sign-in link
  --port N       the web page's port (default: a free one)
  --operator N   the operator's name in the console or on the page`;

/** The first argument the demo does not know (a flag's value is known), or undefined. */
function unknownArgument(args: readonly string[]): string | undefined {
  const flags = new Set(['--auto', '--interactive', '--web', '--help', '-h']);
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--operator' || args[i] === '--port') i++;
    else if (!flags.has(args[i]!)) return args[i];
  }
  return undefined;
}

if (isMain()) {
  const args = process.argv.slice(2);
  if (args.includes('--help') || args.includes('-h')) {
    console.log(USAGE);
    process.exit(0);
  }
  const unknown = unknownArgument(args);
  if (unknown !== undefined) {
    // A typo such as --atuo must not run the tour in another mode than the one asked for.
    console.error(`unknown argument ${JSON.stringify(unknown)}\n\n${USAGE}`);
    process.exit(2);
  }
  const terminal = process.stdin.isTTY === true && process.stdout.isTTY === true;
  const interactive = args.includes('--interactive') && terminal;
  if (args.includes('--interactive') && !terminal) {
    console.log('--interactive needs a terminal (stdin and stdout TTYs): falling back to the scripted operator, no input is read');
  }
  const at = args.indexOf('--operator');
  const operator = at >= 0 ? args[at + 1] : undefined;
  if (at >= 0 && (operator === undefined || operator.startsWith('--'))) {
    console.error('--operator needs a name, e.g. --operator alice');
    process.exit(2);
  }
  const webMode = args.includes('--web');
  const portAt = args.indexOf('--port');
  const webPort = portAt >= 0 ? Number(args[portAt + 1]) : 0;
  if (portAt >= 0 && !(Number.isInteger(webPort) && webPort >= 0 && webPort <= 65535)) {
    console.error('--port needs a port number, e.g. --port 8080');
    process.exit(2);
  }
  const auto = !interactive && !webMode && (args.includes('--auto') || !terminal);
  const onWeb = (server: ApprovalServerHandle) => {
    console.log(`approval page: ${server.url}`);
    console.log(`token:         ${server.token}`);
    console.log(`open (signs you in): ${server.loginUrl}`);
  };
  const color = process.stdout.isTTY === true && !process.env['NO_COLOR'];
  runDemo({ out: (line) => console.log(line), auto, color, interactive: interactive && !webMode, web: webMode, webPort, onWeb, ...(operator !== undefined ? { operator } : {}) }).catch((error: unknown) => {
    console.error(error);
    process.exitCode = 1;
  });
}
