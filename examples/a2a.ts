// Two buses talking A2A, with policy on both: `npm run example:a2a`.
//
// The supplier's bus serves its `catalog` agent over A2A (a2aServer): the shop's token is
// the caller `shop-co` there, which may ask `quote` and delegate `order`, but every order
// waits for the supplier's operator (requireApproval), who approves small ones and rejects
// the rest. The shop's bus registers the remote catalog as its agent `supplier`
// (a2aAgent): its buyer may ask and delegate to it; its intern may not. Each bus decides
// and audits its side. Both servers are on 127.0.0.1 with a random port; nothing waits
// for input. Inside this repository the imports are '../src/…'; in your app
// 'agent-switchboard' and 'agent-switchboard/a2a'.
import { randomBytes } from 'node:crypto';
import { pathToFileURL } from 'node:url';
import { z } from 'zod';
import { a2aAgent, a2aServer } from '../src/a2a/index.js';
import { defineContracts, isBusError, Orchestrator, type MessageLogEntry } from '../src/index.js';

const contracts = defineContracts({
  quote: { type: 'ask', input: z.object({ sku: z.string() }), output: z.object({ sku: z.string(), eur: z.number() }) },
  order: { type: 'delegate', input: z.object({ sku: z.string(), qty: z.number().int().positive() }), output: z.object({ orderId: z.string() }) },
});

/** The supplier's operator approves orders up to this many units. */
export const MAX_QTY = 10;

export interface A2aExampleResult {
  quote: unknown;
  small: unknown;
  large: string | undefined;
  intern: string | undefined;
  supplierLog: MessageLogEntry[];
  shopLog: MessageLogEntry[];
}

export async function run(out: (line: string) => void = console.log): Promise<A2aExampleResult> {
  const shopToken = randomBytes(24).toString('base64url');
  const supplierBus = new Orchestrator({
    contracts,
    policies: [
      { from: 'shop-co', to: 'catalog', allow: ['ask'], intents: ['quote'] },
      { from: 'shop-co', to: 'catalog', allow: ['delegate'], intents: ['order'], requireApproval: true },
    ],
  });
  const shopBus = new Orchestrator({ policies: [{ from: 'buyer', to: 'supplier', allow: ['ask', 'delegate'] }] });
  supplierBus.register('catalog', {
    handlers: {
      quote: ({ sku }) => ({ sku, eur: sku.length * 3 }),
      order: ({ sku, qty }, ctx) => {
        ctx.progress(0.5, `packing ${qty} × ${sku}`);
        return { orderId: `SO-${sku}-${qty}` };
      },
    },
  });
  // The supplier's operator, scripted: small orders pass, large ones are rejected with a reason.
  supplierBus.events.on('approval:requested', ({ approval }) => {
    const { qty } = approval.envelope.payload as { qty: number };
    if (qty <= MAX_QTY) void supplierBus.approvals.approve(approval.id, { by: 'supplier-ops' });
    else supplierBus.approvals.reject(approval.id, { by: 'supplier-ops', reason: `${qty} units is over the ${MAX_QTY}-unit limit for a new customer` });
  });
  const server = await a2aServer(supplierBus, { agent: 'catalog', host: '127.0.0.1', port: 0, callers: { [shopToken]: 'shop-co' }, card: { name: 'Supplier catalog' } });
  try {
    out(`supplier serves "catalog" at ${server.url}/.well-known/agent-card.json`);
    const remote = await a2aAgent({ card: `${server.url}/.well-known/agent-card.json`, headers: { authorization: `Bearer ${shopToken}` } });
    out(`shop registers it as "supplier" with intents ${Object.keys(remote.handlers).sort().join(', ')}`);
    shopBus.register('supplier', remote);
    const buyer = shopBus.register('buyer');
    const intern = shopBus.register('intern');

    const quote = await buyer.ask('supplier', 'quote', { sku: 'bolt-m8' });
    out(`buyer asks quote: ${JSON.stringify(quote)}`);
    const small = await buyer.delegate('supplier', 'order', { sku: 'bolt-m8', qty: 4 }).onProgress((p) => out(`  progress ${p.fraction}: ${p.note ?? ''}`));
    out(`buyer orders 4: ${JSON.stringify(small)}`);
    const large = await codeOf(buyer.delegate('supplier', 'order', { sku: 'bolt-m8', qty: 500 }));
    out(`buyer orders 500: ${large}`);
    const internRefused = await codeOf(intern.ask('supplier', 'quote', { sku: 'bolt-m8' }));
    out(`intern asks quote: ${internRefused} (refused by the shop's own policy; nothing crossed)`);

    const supplierLog = supplierBus.getMessageLog({ agentId: 'catalog' }).filter((e) => e.type !== 'reply');
    const shopLog = shopBus.getMessageLog({ agentId: 'supplier' }).filter((e) => e.type !== 'reply');
    out('supplier audit (oldest first):');
    for (const e of [...supplierLog].reverse()) out(`  ${row(e)}`);
    out('shop audit (oldest first):');
    for (const e of [...shopLog].reverse()) out(`  ${row(e)}`);
    return { quote, small, large, intern: internRefused, supplierLog, shopLog };
  } finally {
    await server.close();
    await shopBus.close();
    await supplierBus.close();
  }
}

async function codeOf(promise: Promise<unknown>): Promise<string | undefined> {
  try {
    await promise;
    return undefined;
  } catch (error) {
    if (!isBusError(error)) throw error;
    return `${error.code}: ${error.message}`;
  }
}

function row(e: MessageLogEntry): string {
  return `${e.from} → ${e.to} ${e.type} ${e.intent}: ${e.decision}${e.approval ? ` approval=${e.approval}` : ''}${e.decidedBy ? ` by ${e.decidedBy}` : ''}${e.outcome ? `, ${e.outcome}` : ''}${e.code ? ` (${e.code})` : ''}`;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) await run();
