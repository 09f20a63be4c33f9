// A purchase that needs a human's approval (seed 002): `npx tsx examples/purchase-approval.ts`.
//
// purchase may delegate `pay` to payment, but only with a human's approval
// (requireApproval). A scripted finance operator listens for `approval:requested`, checks
// the amount, approves the small purchase and rejects the one over its limit with a
// reason (the sender gets APPROVAL_REJECTED). A refund ask is refused outright: no rule
// allows it. At the end, the audit rows show decision 'pending', the approval and who
// decided. Nothing waits for input.
//
// Embedded defaults: the audit log is a SQLite database in memory.
// Inside this repository the import is '../src/index.js'; in your app it is 'agent-switchboard'.
import { pathToFileURL } from 'node:url';
import { Orchestrator, isBusError, type MessageLogEntry, type PolicyRule } from '../src/index.js';

/** purchase → payment `pay`, held for a human; everything else is denied. */
export const POLICIES: PolicyRule[] = [{ from: 'purchase', to: 'payment', allow: ['delegate'], intents: ['pay'], requireApproval: true }];

/** The operator approves up to this amount on its own. */
export const LIMIT_EUR = 1_000;
export const OPERATOR = 'finance-operator';

export interface PurchaseOutcome {
  item: string;
  amount: number;
  /** 'paid', or the error code the purchase failed with. */
  status: string;
  reason?: string;
}

export interface PurchaseResult {
  purchases: PurchaseOutcome[];
  /** The operator's decisions, as `approval:decided` reported them. */
  decisions: { messageId: string; decision: string; by?: string; reason?: string }[];
  /** Audit entries for payment's messages (newest first). */
  audit: MessageLogEntry[];
  refundRefused: string | undefined;
}

export async function run(out: (line: string) => void = console.log): Promise<PurchaseResult> {
  const bus = new Orchestrator({ policies: POLICIES }); // audit: ':memory:' by default
  const say = (who: string, text: string) => out(`  ${who.padEnd(16)} ${text}`);

  bus.register('payment', {
    handlers: {
      pay: (payload) => {
        const { item, amount } = payload as { item: string; amount: number };
        say('payment', `charging ${amount} EUR for ${item}`);
        return { paid: true, receipt: `rcpt-${item.replace(/\W+/g, '-')}` };
      },
    },
  });
  const purchase = bus.register('purchase');

  // The scripted operator: told about each held message by an event, decides a moment later.
  bus.events.on('approval:requested', ({ approval }) => {
    const { item, amount } = approval.envelope.payload as { item: string; amount: number };
    say(OPERATOR, `review: ${approval.envelope.from} wants to pay ${amount} EUR for ${item} (rule '${approval.rule}')`);
    setTimeout(() => {
      if (amount <= LIMIT_EUR) bus.approvals.approve(approval.id, { by: OPERATOR, note: `within the ${LIMIT_EUR} EUR limit` });
      else bus.approvals.reject(approval.id, { by: OPERATOR, reason: `${amount} EUR is over the ${LIMIT_EUR} EUR limit` });
    }, 10);
  });
  const decisions: PurchaseResult['decisions'] = [];
  bus.events.on('approval:decided', ({ approval, decision, by, reason }) => {
    decisions.push({ messageId: approval.id, decision, ...(by !== undefined ? { by } : {}), ...(reason !== undefined ? { reason } : {}) });
    say(OPERATOR, `${decision}${reason !== undefined ? `: ${reason}` : ''}`);
  });

  try {
    out('purchase-approval: purchase → payment, held for a human (seed 002)');
    const why = bus.explain({ from: 'purchase', to: 'payment', type: 'delegate', intent: 'pay' });
    say('explain', `${why.decision}: ${why.reason}`);

    const buy = async (item: string, amount: number): Promise<PurchaseOutcome> => {
      try {
        const result = (await purchase.delegate('payment', 'pay', { item, amount, currency: 'EUR' }, { timeoutMs: 500 })) as { receipt: string };
        say('purchase', `${item}: paid, ${result.receipt}`);
        return { item, amount, status: 'paid' };
      } catch (e) {
        if (!isBusError(e)) throw e;
        say('purchase', `${item}: ${e.code}${e.reason !== undefined ? ` (${e.reason})` : ''}`);
        return { item, amount, status: e.code, ...(e.reason !== undefined ? { reason: String(e.reason) } : {}) };
      }
    };
    const purchases = [await buy('GPU hours', 120), await buy('new server rack', 18_500)];

    // Only delegate `pay` is allowed: asking payment for a refund is refused, not held.
    let refundRefused: string | undefined;
    try {
      await purchase.ask('payment', 'refund', { receipt: 'rcpt-GPU-hours' });
    } catch (e) {
      if (!isBusError(e)) throw e;
      refundRefused = e.code;
      say('purchase', `refund ask refused: ${e.code}`);
    }

    const audit = bus.getMessageLog({ agentId: 'payment' });
    out('audit (oldest first):');
    for (const e of [...audit].reverse()) {
      out(`  ${e.from} → ${e.to} ${e.type} ${e.intent}: decision=${e.decision}${e.approval ? ` approval=${e.approval}` : ''}${e.decidedBy ? ` decidedBy=${e.decidedBy}` : ''}${e.outcome ? ` outcome=${e.outcome}` : ''}${e.code ? ` (${e.code})` : ''}`);
    }
    out(`result: ${purchases.map((p) => `${p.item} ${p.status}`).join('; ')}`);
    return { purchases, decisions, audit, refundRefused };
  } finally {
    await bus.close();
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) await run();
