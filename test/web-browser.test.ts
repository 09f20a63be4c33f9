// The approval page end to end in headless Chromium (Debian's `chromium`, driven by
// playwright-core). Without /usr/bin/chromium these tests say so and skip; with CI=true
// they fail instead.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { approvalServer, type ApprovalServerHandle } from '../src/web/index.js';
import type { Orchestrator } from '../src/index.js';
import { closeBuses, makeBus, rejectionOf } from './support/helpers.js';

const CHROMIUM = '/usr/bin/chromium';
const present = existsSync(CHROMIUM);
if (!present) {
  const why = `${CHROMIUM} is missing (apt-get install chromium): the approval page's browser tests cannot run`;
  if (process.env['CI'] === 'true') throw new Error(`${why}, and CI=true requires them`);
  console.warn(`skipping test/web-browser.test.ts: ${why}`);
}

let browser: BrowserContext;
let profile: string;

beforeAll(async () => {
  if (!present) return;
  profile = mkdtempSync(join(tmpdir(), 'switchboard-chromium-'));
  // A fresh profile directory (--user-data-dir) per run.
  browser = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}, 60_000);

afterAll(async () => {
  await browser?.close();
  if (profile !== undefined) rmSync(profile, { recursive: true, force: true });
  await closeBuses();
});

function paymentBus(): Orchestrator {
  const bus = makeBus({ policies: [{ from: 'purchase', to: 'payment', allow: ['delegate'], requireApproval: true }] });
  bus.register('payment', { handlers: { pay: (payload) => ({ paid: true, charged: payload }) } });
  return bus;
}

async function openPage(bus: Orchestrator): Promise<{ page: Page; server: ApprovalServerHandle; errors: string[] }> {
  const server = await approvalServer(bus, { operator: 'alice' });
  const page = await browser.newPage();
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => (m.type() === 'error' ? errors.push(m.text()) : undefined));
  page.on('dialog', (d) => errors.push(`dialog: ${d.message()}`));
  await page.goto(server.loginUrl);
  await page.locator('#connection', { hasText: 'live' }).waitFor();
  return { page, server, errors };
}

describe.skipIf(!present)('approval page in Chromium', () => {
  it('shows a held message as it arrives; Approve delivers it and the sender gets its reply', async () => {
    const bus = paymentBus();
    const purchase = bus.register('purchase');
    const { page, server, errors } = await openPage(bus);
    try {
      expect(page.url()).toBe(server.url); // the token left the address bar
      const job = purchase.delegate('payment', 'pay', { item: 'GPU hours', amount: 120, currency: 'EUR' }, { timeoutMs: 60_000 });
      const card = page.locator('article.card');
      await card.waitFor();
      await expect(card.locator('h3').textContent()).resolves.toBe('purchase → payment · delegate "pay"');
      await expect(card.locator('pre.payload').textContent()).resolves.toContain('"item": "GPU hours"');
      await expect(card.locator('dd.left').textContent()).resolves.toMatch(/\d+ (s|min \d\d s) left/);
      await expect(card.textContent()).resolves.toContain('purchase -> payment allow:delegate approval');
      await card.locator('button.approve').click();
      await expect(job).resolves.toEqual({ paid: true, charged: { item: 'GPU hours', amount: 120, currency: 'EUR' } });
      await page.locator('#status', { hasText: '✓ approved purchase → payment delegate "pay" as alice: approved: staged for delivery' }).waitFor();
      await page.locator('#pending', { hasText: 'nothing is waiting for you' }).waitFor();
      await page.locator('#decisions li', { hasText: 'approved by alice' }).waitFor();
      await page.locator('#log tbody tr', { hasText: 'approved by alice' }).first().waitFor();
      expect(bus.getMessageLog({ type: 'delegate' })[0]).toMatchObject({ approval: 'approved', decidedBy: 'alice' });
      expect(errors).toEqual([]);
    } finally {
      await page.close();
      await server.close();
    }
  }, 30_000);

  it('Reject sends the typed reason and the operator name typed on the page', async () => {
    const bus = paymentBus();
    const purchase = bus.register('purchase');
    const { page, server, errors } = await openPage(bus);
    try {
      const job = rejectionOf(purchase.delegate('payment', 'pay', { amount: 99_000 }));
      const card = page.locator('article.card');
      await card.waitFor();
      await page.locator('#operator').fill('bob');
      await card.locator('input.reason').fill('over the monthly budget');
      await card.locator('button.reject').click();
      const error = await job;
      expect(error.code).toBe('APPROVAL_REJECTED');
      expect(error.message).toBe('delegate to payment ("pay") was rejected by bob: over the monthly budget');
      await page.locator('#status', { hasText: '✗ rejected' }).waitFor();
      // Even from the signed-in page (the cookie goes along), a POST without the CSRF header is refused.
      const noCsrf = await page.evaluate(async () => (await fetch('/api/decide', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' })).status);
      expect(noCsrf).toBe(403);
      expect(errors.filter((e) => !e.includes('403'))).toEqual([]);
    } finally {
      await page.close();
      await server.close();
    }
  }, 30_000);

  it('renders markup in a payload as text: no script runs, no element is made', async () => {
    const bus = paymentBus();
    const purchase = bus.register('purchase');
    const { page, server, errors } = await openPage(bus);
    try {
      const evil = '<script>window.pwned=1</script><img src=x onerror=window.pwned=2>';
      const held = rejectionOf(purchase.delegate('payment', 'pay', { note: evil }));
      const card = page.locator('article.card');
      await card.waitFor();
      await expect(card.locator('pre.payload').textContent()).resolves.toContain(evil);
      expect(await page.locator('article.card img, article.card script, article.card b').count()).toBe(0);
      expect(await page.evaluate(() => (globalThis as unknown as { pwned?: number }).pwned)).toBeUndefined();
      bus.approvals.reject(bus.approvals.list()[0]!.id, { by: 'test' });
      await held;
      expect(errors).toEqual([]);
    } finally {
      await page.close();
      await server.close();
    }
  }, 30_000);

  it('without the token the page is refused (401) and shows nothing', async () => {
    const bus = paymentBus();
    const server = await approvalServer(bus, {});
    const page = await browser.newPage();
    try {
      const res = await page.goto(server.url);
      expect(res?.status()).toBe(401);
      expect(await page.locator('article.card, #pending').count()).toBe(0);
      // A page elsewhere cannot post a decision: no CSRF header, wrong origin.
      const status = await page.evaluate(async (url) => {
        const r = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' }).catch(() => undefined);
        return r?.status ?? 0;
      }, new URL('/api/decide', server.url).href);
      expect([401, 403]).toContain(status);
    } finally {
      await page.close();
      await server.close();
    }
  }, 30_000);
});
