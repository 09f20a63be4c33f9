// A fraud alert broadcast (seed 000): `npx tsx examples/fraud-alert.ts`.
//
// fraud-detector broadcasts a typed `fraud_alert` (a zod contract via defineContracts).
// risk, compliance and customer-service may receive it and each reacts; marketing would
// like to, but no rule lets the alert reach it, so the receipt lists it as denied. A
// payload that breaks the contract (as an LLM might produce) is refused with INVALID_PAYLOAD.
//
// Embedded defaults: the audit log is a SQLite database in memory.
// Inside this repository the import is '../src/index.js'; in your app it is 'agent-switchboard'.
import { pathToFileURL } from 'node:url';
import { z } from 'zod';
import { Orchestrator, defineContracts, isBusError, type NotifyReceipt, type PolicyRule } from '../src/index.js';

/** The typed intent: senders and handlers get `FraudAlert`, checked at run time too. */
export const contracts = defineContracts({
  fraud_alert: {
    type: 'notify',
    input: z.object({
      accountId: z.string(),
      txId: z.string(),
      amount: z.number().positive(),
      currency: z.string().length(3),
      score: z.number().min(0).max(1),
      reason: z.string(),
    }),
  },
});
export type FraudAlert = z.infer<typeof contracts.fraud_alert.input>;

/** The alert may reach exactly these three teams; everything else is denied. */
export const POLICIES: PolicyRule[] = [
  { from: 'fraud-detector', to: 'risk', allow: ['notify'], intents: ['fraud_alert'] },
  { from: 'fraud-detector', to: 'compliance', allow: ['notify'], intents: ['fraud_alert'] },
  { from: 'fraud-detector', to: 'customer-service', allow: ['notify'], intents: ['fraud_alert'] },
];

export interface FraudAlertResult {
  receipt: NotifyReceipt;
  /** One line per agent that reacted, in the order they did. */
  reactions: string[];
  /** The code the malformed alert was refused with. */
  invalid: string | undefined;
}

export async function run(out: (line: string) => void = console.log): Promise<FraudAlertResult> {
  const bus = new Orchestrator({ contracts, policies: POLICIES }); // audit: ':memory:' by default
  const reactions: string[] = [];
  const react = (who: string, text: string) => {
    reactions.push(`${who}: ${text}`);
    out(`  ${who.padEnd(16)} ${text}`);
  };

  // The handlers' `alert` is typed as FraudAlert: no casts.
  bus.register('risk', {
    handlers: {
      fraud_alert: (alert) => react('risk', `${alert.score >= 0.9 ? 'freezing' : 'watching'} ${alert.accountId} (score ${alert.score})`),
    },
  });
  bus.register('compliance', {
    handlers: {
      fraud_alert: (alert) => react('compliance', `opened case for ${alert.txId}: ${alert.amount} ${alert.currency}, ${alert.reason}`),
    },
  });
  bus.register('customer-service', {
    handlers: {
      fraud_alert: (alert) => react('customer-service', `texting the owner of ${alert.accountId} to confirm ${alert.txId}`),
    },
  });
  bus.register('marketing', {
    handlers: { fraud_alert: (alert) => react('marketing', `would love to know about ${alert.accountId}`) },
  });
  const detector = bus.register('fraud-detector');

  try {
    out('fraud-alert: fraud-detector broadcasts a typed fraud_alert (seed 000)');

    const alert: FraudAlert = { accountId: 'acc-7731', txId: 'tx-90412', amount: 4_980, currency: 'EUR', score: 0.97, reason: 'card used in two countries within 5 minutes' };
    // No `to`: a broadcast to every other agent; each recipient still needs a rule.
    // Typed: detector.notify('fraud_alrt', alert) or { ...alert, amount: 'a lot' } do not compile.
    const receipt = await detector.notify('fraud_alert', alert, { priority: 'critical' });
    await bus.onIdle(); // let the recipients' handlers run
    out(`  receipt          delivered=[${receipt.delivered.join(', ')}] denied=[${receipt.denied.join(', ')}] failed=[${receipt.failed.join(', ')}]`);

    // The contract is checked at run time too: a model's JSON with a string amount is refused.
    let invalid: string | undefined;
    const fromModel = JSON.parse('{"accountId":"acc-7731","txId":"tx-90413","amount":"a lot","currency":"EUR","score":0.5,"reason":"?"}') as FraudAlert;
    try {
      await detector.notify('fraud_alert', fromModel, { to: ['risk'] });
    } catch (e) {
      if (!isBusError(e)) throw e;
      invalid = e.code;
      out(`  fraud-detector   malformed alert refused: ${e.code}`);
    }

    out('audit (oldest first):');
    for (const e of bus.getMessageLog({ limit: 10 }).reverse()) {
      out(`  ${e.from} → ${e.to} ${e.type} ${e.intent}: ${e.decision}${e.outcome ? `, ${e.outcome}` : ''}${e.code ? ` (${e.code})` : ''}`);
    }
    out(`result: alert delivered to ${receipt.delivered.length}, denied to ${receipt.denied.length}`);
    return { receipt, reactions, invalid };
  } finally {
    await bus.close();
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) await run();
