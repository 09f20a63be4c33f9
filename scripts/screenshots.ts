// `npm run screenshots`: the PNGs in docs/ of both approval consoles, made from the real
// components over a real bus. The terminal one is the ink frame (ANSI colours turned into
// HTML) shown in Chromium; the web one is the page itself. Needs /usr/bin/chromium.
process.env['FORCE_COLOR'] = '3'; // ink colours even though stdout is not a terminal

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createElement as h } from 'react';
import { chromium } from 'playwright-core';

const { render } = await import('ink-testing-library');
const { Orchestrator } = await import('../src/index.js');
const { ApprovalConsole } = await import('../src/console/index.js');
const { approvalServer } = await import('../src/web/index.js');

const until = async (check: () => boolean): Promise<void> => {
  for (let i = 0; i < 200 && !check(); i++) await new Promise((resolve) => setTimeout(resolve, 10));
  if (!check()) throw new Error('the scene never came about');
};

function scene() {
  const bus = new Orchestrator({
    policies: [
      { from: 'purchase', to: 'payment', allow: ['delegate'], requireApproval: true },
      { from: 'research', to: 'writer', allow: ['ask'] },
      { from: '*', to: 'vault', deny: ['notify'] },
      { from: 'supervisor', to: '*', allow: ['notify'] },
    ],
  });
  bus.register('payment', { handlers: { pay: (payload) => ({ paid: true, charged: payload }) } });
  bus.register('writer', { handlers: { clarify: () => 'for platform engineers' } });
  bus.register('vault', { handlers: { '*': () => undefined } });
  const purchase = bus.register('purchase');
  const research = bus.register('research');
  const supervisor = bus.register('supervisor');
  return { bus, purchase, research, supervisor };
}

/** ANSI SGR colours to HTML spans; everything else escaped. */
function ansiToHtml(text: string): string {
  const colors = ['#1d1f21', '#cc6666', '#b5bd68', '#f0c674', '#81a2be', '#b294bb', '#8abeb7', '#c5c8c6'];
  const escape = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
  let fg: string | undefined, bg: string | undefined, bold = false, dim = false, inverse = false;
  let out = '';
  for (const part of text.split(/(\u001B\[[0-9;]*m)/)) {
    const m = /^\u001B\[([0-9;]*)m$/.exec(part);
    if (m === null) {
      if (part === '') continue;
      const [f, b] = inverse ? [bg ?? '#1d1f21', fg ?? '#c5c8c6'] : [fg, bg];
      const style = [f && `color:${f}`, b && `background:${b}`, bold && 'font-weight:bold', dim && 'opacity:.6'].filter(Boolean).join(';');
      out += style ? `<span style="${style}">${escape(part)}</span>` : escape(part);
      continue;
    }
    for (const code of (m[1] || '0').split(';').map(Number)) {
      if (code === 0) (fg = bg = undefined), (bold = dim = inverse = false);
      else if (code === 1) bold = true;
      else if (code === 2) dim = true;
      else if (code === 22) bold = dim = false;
      else if (code === 7) inverse = true;
      else if (code === 27) inverse = false;
      else if (code >= 30 && code <= 37) fg = colors[code - 30];
      else if (code >= 90 && code <= 97) fg = colors[code - 90];
      else if (code === 39) fg = undefined;
      else if (code >= 40 && code <= 47) bg = colors[code - 40];
      else if (code === 49) bg = undefined;
    }
  }
  return out;
}

const profile = mkdtempSync(join(tmpdir(), 'switchboard-shots-'));
const browser = await chromium.launchPersistentContext(profile, {
  executablePath: '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  viewport: { width: 1280, height: 800 },
});

try {
  // ---- The terminal console at 80×24: a payment shown in full, asking for confirmation. ----
  {
    const { bus, purchase, research, supervisor } = scene();
    const ui = render(h(ApprovalConsole, { bus, operator: 'alice', columns: 80, rows: 24 }));
    await research.ask('writer', 'clarify', { q: 'Who is the audience?' });
    await supervisor.notify('rotate-keys', { now: true }, { to: ['vault'] });
    const jobs = [
      purchase.delegate('payment', 'pay', { item: 'conference tickets', amount: 900, currency: 'EUR', attendees: ['ana', 'bo'] }, { timeoutMs: 120_000 }),
      purchase.delegate('payment', 'pay', { item: 'GPU hours', amount: 120, currency: 'EUR' }, { timeoutMs: 120_000 }),
    ];
    await until(() => (ui.lastFrame() ?? '').includes('2 pending'));
    ui.stdin.write('a');
    await until(() => (ui.lastFrame() ?? '').includes('Approve this delegate'));
    const page = await browser.newPage();
    await page.setContent(
      `<!doctype html><body style="margin:0;background:#1d1f21"><pre id="t" style="display:inline-block;margin:0;padding:14px 18px;background:#1d1f21;color:#c5c8c6;font:15px/1.3 'DejaVu Sans Mono',monospace">${ansiToHtml(ui.lastFrame() ?? '')}</pre></body>`,
    );
    await page.locator('#t').screenshot({ path: 'docs/console.png' });
    await page.close();
    ui.unmount();
    for (const a of bus.approvals.list()) bus.approvals.reject(a.id, { by: 'screenshot' });
    await Promise.allSettled(jobs);
    await bus.close();
  }

  // ---- The web page: two held payments, one decided, the audit log tail. ----
  {
    const { bus, purchase, research } = scene();
    const server = await approvalServer(bus, { operator: 'alice' });
    await research.ask('writer', 'clarify', { q: 'Who is the audience?' });
    const first = purchase.delegate('payment', 'pay', { item: 'GPU hours', amount: 120, currency: 'EUR' }, { timeoutMs: 120_000 });
    await bus.flush();
    bus.approvals.approve(bus.approvals.list()[0]!.id, { by: 'bob', note: 'PO-7781' });
    await first;
    const jobs = [
      purchase.delegate('payment', 'pay', { item: 'conference tickets', amount: 900, currency: 'EUR' }, { timeoutMs: 120_000 }),
      purchase.delegate('payment', 'pay', { note: '<script>alert("agent text is shown as text")</script>', amount: 5 }, { timeoutMs: 90_000 }),
    ];
    const page = await browser.newPage();
    await page.setViewportSize({ width: 1280, height: 800 });
    await page.goto(server.loginUrl);
    await page.locator('article.card').nth(1).waitFor();
    await page.locator('article.card input.reason').first().fill('within the Q3 travel budget');
    await page.screenshot({ path: 'docs/web-console.png', fullPage: true });
    // The confirm step an approval goes through.
    await page.locator('article.card button.approve').first().click();
    await page.locator('dialog#confirm').waitFor();
    await page.screenshot({ path: 'docs/web-confirm.png' });
    await page.locator('#confirm-no').click();
    // A phone: the cards stack, the audit table scrolls within its box.
    await page.setViewportSize({ width: 390, height: 844 });
    await page.screenshot({ path: 'docs/web-console-phone.png', fullPage: true });
    await page.close();
    for (const a of bus.approvals.list()) bus.approvals.reject(a.id, { by: 'screenshot' });
    await Promise.allSettled(jobs);
    await server.close();
    await bus.close();
  }
  console.log('wrote docs/console.png, docs/web-console.png, docs/web-confirm.png and docs/web-console-phone.png');
} finally {
  await browser.close();
  rmSync(profile, { recursive: true, force: true });
}
