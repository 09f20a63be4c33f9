// The approval page end to end in headless Chromium (Debian's `chromium`, driven by
// playwright-core). Without /usr/bin/chromium these tests say so and skip; with CI=true
// they fail instead.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
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

async function openPage(bus: Orchestrator, viewport = { width: 1280, height: 800 }): Promise<{ page: Page; server: ApprovalServerHandle; errors: string[] }> {
  const server = await approvalServer(bus, { operator: 'alice' });
  const page = await browser.newPage();
  await page.setViewportSize(viewport);
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
      await page.locator('dialog#confirm').waitFor();
      await page.locator('#confirm-yes').click();
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

  it('asks before approving: the confirm step shows the whole payload, the rule and the deadline; Cancel sends nothing', async () => {
    const bus = paymentBus();
    const purchase = bus.register('purchase');
    const { page, server, errors } = await openPage(bus);
    try {
      const long = 'x'.repeat(3000);
      const job = purchase.delegate('payment', 'pay', { item: 'GPU hours', amount: 120, memo: long }, { timeoutMs: 90_000 });
      const card = page.locator('article.card');
      await card.waitFor();
      await card.locator('button.approve').click();
      const dialog = page.locator('dialog#confirm');
      await dialog.waitFor();
      await expect(page.locator('#confirm-title').textContent()).resolves.toBe('Approve this delegate as alice?');
      const facts = (await page.locator('#confirm-facts').textContent()) ?? '';
      expect(facts).toContain('purchase -> payment allow:delegate approval');
      expect(facts).toMatch(/deadline.*\d+ (s|min \d\d s) left/);
      // The whole payload, not a preview.
      expect(JSON.parse((await page.locator('#confirm-payload').textContent()) ?? '')).toEqual({ item: 'GPU hours', amount: 120, memo: long });
      await page.locator('#confirm-no').click();
      await dialog.waitFor({ state: 'hidden' });
      await page.locator('#status', { hasText: 'not approved: nothing was sent' }).waitFor();
      expect(bus.approvals.list()).toHaveLength(1);
      await card.locator('button.approve').click();
      await page.locator('#confirm-yes').click();
      await expect(job).resolves.toMatchObject({ paid: true });
      expect(errors).toEqual([]);
    } finally {
      await page.close();
      await server.close();
    }
  }, 30_000);

  it("shows a card's payload readable and escaped: its line breaks as line breaks, a bidirectional or C1 character as text", async () => {
    const bus = paymentBus();
    const { page, server } = await openPage(bus);
    try {
      const job = bus.register('purchase').delegate('payment', 'pay', { to: 'ACME\u202e0001', note: 'a\u009bb', lines: 'one\ntwo' }, { timeoutMs: 90_000 });
      const outcome = job.then(() => 'delivered', (e: { code?: string }) => e.code);
      const card = page.locator('article.card');
      await card.waitFor();
      const shown = (await card.locator('pre.payload').textContent()) ?? '';
      expect(shown).not.toContain('\\x0a');
      expect(shown.split('\n')).toEqual(['{', '  "to": "ACME\\u202e0001",', '  "note": "a\\x9bb",', '  "lines": "one\\ntwo"', '}']);
      expect(shown).not.toMatch(/[\u0000-\u0009\u000b-\u001f\u0080-\u009f\u202e]/);
      bus.approvals.reject(bus.approvals.list()[0]!.id);
      expect(await outcome).toBe('APPROVAL_REJECTED');
    } finally {
      await page.close();
      await server.close();
    }
  }, 30_000);

  it('shows the payload of the confirm step escaped: a bidirectional or C1 character in a string cannot reorder what the operator approves', async () => {
    const bus = paymentBus();
    const { page, server } = await openPage(bus);
    try {
      const job = bus.register('purchase').delegate('payment', 'pay', { to: 'ACME\u202e0001', note: 'a\u009bb' }, { timeoutMs: 90_000 });
      const outcome = job.then(() => 'delivered', (e: { code?: string }) => e.code);
      const card = page.locator('article.card');
      await card.waitFor();
      await card.locator('button.approve').click();
      await page.locator('dialog#confirm').waitFor();
      const shown = (await page.locator('#confirm-payload').textContent()) ?? '';
      expect(shown).not.toMatch(/[\u0080-\u009f\u202e]/);
      expect(shown).toContain('ACME\\u202e0001');
      expect(shown).toContain('a\\x9bb');
      expect(shown.split('\n').length).toBeGreaterThan(2);
      await page.locator('#confirm-no').click();
      bus.approvals.reject(bus.approvals.list()[0]!.id);
      expect(await outcome).toBe('APPROVAL_REJECTED');
    } finally {
      await page.close();
      await server.close();
    }
  }, 30_000);

  for (const viewport of [
    { width: 1280, height: 800 },
    { width: 390, height: 844 },
  ]) {
    it(`shows every column of the audit table at ${viewport.width}x${viewport.height}: the table scrolls within its box, the page does not`, async () => {
      const bus = paymentBus();
      const purchase = bus.register('purchase');
      const { page, server, errors } = await openPage(bus, viewport);
      try {
        const job = purchase.delegate('payment', 'pay', { amount: 5 });
        await bus.flush();
        bus.approvals.approve(bus.approvals.list()[0]!.id, { by: 'a-rather-long-operator-name@example.com', note: 'PO-7781' });
        await job;
        await page.locator('#log tbody tr', { hasText: 'approved by a-rather-long-operator-name@example.com' }).first().waitFor();
        const layout = await page.evaluate(() => {
          // Runs in the page: its DOM, typed loosely here (the tests compile without the DOM library).
          type Box = { scrollWidth: number; clientWidth: number; scrollLeft: number; textContent: string | null; getBoundingClientRect(): { left: number; right: number } };
          const w = globalThis as unknown as { innerWidth: number; document: { getElementById(id: string): Box; querySelectorAll(q: string): ArrayLike<Box>; scrollingElement: Box } };
          const box = w.document.getElementById('log-box');
          const headers = w.document.querySelectorAll('#log thead th');
          const last = headers[headers.length - 1]!;
          const before = { scrollWidth: box.scrollWidth, clientWidth: box.clientWidth };
          box.scrollLeft = box.scrollWidth;
          const b = box.getBoundingClientRect();
          const l = last.getBoundingClientRect();
          return { ...before, pageOverflow: w.document.scrollingElement.scrollWidth - w.innerWidth, lastVisible: l.left >= b.left - 1 && l.right <= b.right + 1, lastText: last.textContent };
        });
        expect(layout.pageOverflow).toBeLessThanOrEqual(0); // nothing sticks out of the page
        expect(layout.lastText).toBe('approval');
        expect(layout.lastVisible).toBe(true); // the approval column is reachable, not clipped
        // At 1280 px the whole table fits; on a phone it scrolls inside its box.
        if (viewport.width >= 1280) expect(layout.scrollWidth).toBeLessThanOrEqual(layout.clientWidth);
        else expect(layout.scrollWidth).toBeGreaterThan(layout.clientWidth);
        expect(errors).toEqual([]);
      } finally {
        await page.close();
        await server.close();
      }
    }, 30_000);
  }

  it('says the bus has closed, lists nothing and stops reconnecting when the bus closes', async () => {
    const bus = paymentBus();
    const purchase = bus.register('purchase');
    const { page, server } = await openPage(bus);
    try {
      const job = rejectionOf(purchase.delegate('payment', 'pay', { amount: 5 }));
      await page.locator('article.card').waitFor();
      await bus.close();
      await job;
      await page.locator('#banner', { hasText: 'the bus has closed' }).waitFor();
      await expect(page.locator('#connection').textContent()).resolves.toBe('closed');
      expect(await page.locator('article.card').count()).toBe(0);
    } finally {
      await page.close();
      await server.close();
    }
  }, 30_000);

  it('says so when its server stops, instead of "reconnecting…" forever', async () => {
    const bus = paymentBus();
    const { page, server } = await openPage(bus);
    try {
      await server.close();
      await page.locator('#banner', { hasText: 'stopped' }).waitFor();
      await expect(page.locator('#connection').textContent()).resolves.toBe('closed');
    } finally {
      await page.close();
    }
  }, 30_000);

  it('runs the durable example of docs/approvals.md: hold, SIGKILL, restart, approve from the page, read the result', async () => {
    const root = fileURLToPath(new URL('..', import.meta.url));
    const work = mkdtempSync(join(tmpdir(), 'switchboard-durable-example-'));
    const children: ChildProcess[] = [];
    try {
      const text = readFileSync(join(root, 'docs/approvals.md'), 'utf8');
      const blocks = [...text.matchAll(/^```ts\n([\s\S]*?)^```/gm)].map((m) => m[1]!).filter((b) => b.includes('// durable-approval example'));
      expect(blocks).toHaveLength(1);
      const code = blocks[0]!
        .replace(/from 'agent-switchboard\/(\w+)'/g, (_, sub: string) => `from '${join(root, 'src', sub, 'index.ts')}'`)
        .replace(/from 'agent-switchboard'/g, `from '${join(root, 'src/index.ts')}'`);
      symlinkSync(join(root, 'node_modules'), join(work, 'node_modules'), 'dir');
      writeFileSync(join(work, 'package.json'), JSON.stringify({ type: 'module', private: true }));
      writeFileSync(join(work, 'durable.mts'), code);
      const start = (mode: string, until: RegExp) => {
        const proc = spawn(process.execPath, ['--import', 'tsx', 'durable.mts', mode, 'approvals.db'], { cwd: work, stdio: ['ignore', 'pipe', 'pipe'] });
        children.push(proc);
        let out = '';
        let err = '';
        proc.stderr.on('data', (c: Buffer) => (err += c.toString()));
        const matched = new Promise<RegExpExecArray>((resolve, reject) => {
          proc.stdout.on('data', (c: Buffer) => {
            out += c.toString();
            const m = until.exec(out);
            if (m !== null) resolve(m);
          });
          proc.on('exit', () => reject(new Error(`${mode} exited before printing ${until}: ${out}${err}`)));
        });
        return { proc, matched, output: () => out };
      };
      const hold = start('hold', /held (\S+):/);
      const [, id] = await hold.matched;
      const killed = new Promise((resolve) => hold.proc.on('exit', (_code, signal) => resolve(signal)));
      hold.proc.kill('SIGKILL');
      expect(await killed).toBe('SIGKILL');
      const serve = start('serve', /approve (\S+) at (\S+)\n/);
      const [, restoredId, url] = await serve.matched;
      expect(restoredId).toBe(id);
      const exited = new Promise<number | null>((resolve) => serve.proc.on('exit', (code) => resolve(code)));
      const page = await browser.newPage();
      try {
        await page.goto(url!);
        const card = page.locator('article.card', { hasText: 'restored' });
        await card.waitFor();
        await expect(card.locator('pre.payload').textContent()).resolves.toContain('"GPU hours"');
        await card.locator('button.approve').click();
        await page.locator('#confirm-yes').click();
        expect(await exited).toBe(0);
      } finally {
        await page.close();
      }
      expect(serve.output()).toContain('result: {"paid":true,"charged":{"item":"GPU hours","amount":120}}');
    } finally {
      for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
      rmSync(work, { recursive: true, force: true });
    }
  }, 60_000);
});
