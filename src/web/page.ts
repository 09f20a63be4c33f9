// The approval page's static parts. The HTML carries no script and no data besides the
// CSRF token (hex); app.js builds everything with textContent, so agent-written text is
// never parsed as markup, and the CSP forbids inline script anyway; every such text passes
// escapeText (its source is part of app.js), so no bidirectional control reorders it.

import { escapeText } from '../escape-text.js';

/** The Content-Security-Policy of every response. */
export const CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "connect-src 'self'",
  "img-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

/** The page, with the CSRF token (hex only: checked by the caller). */
export function pageHtml(csrf: string): string {
  if (!/^[0-9a-f]+$/.test(csrf)) throw new Error('csrf token must be hex');
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="switchboard-csrf" content="${csrf}">
<title>agent-switchboard · approvals</title>
<link rel="stylesheet" href="/app.css">
<script src="/app.js" defer></script>
</head>
<body>
<header>
  <h1>agent-switchboard · approvals</h1>
  <label>operator <input id="operator" maxlength="256" autocomplete="username" placeholder="your name"></label>
  <span id="connection" class="muted">connecting…</span>
</header>
<p id="banner" role="alert" hidden></p>
<p id="status" role="status" aria-live="polite"></p>
<main>
  <section>
    <h2>held messages <span id="count" class="badge">0</span></h2>
    <div id="pending"><p class="muted">nothing is waiting for you</p></div>
  </section>
  <section>
    <h2>recent decisions</h2>
    <ol id="decisions" class="rows"></ol>
  </section>
  <section class="wide">
    <h2>audit log (newest first)</h2>
    <div class="scroll" id="log-box" tabindex="0" aria-label="audit log, scrolls sideways on narrow screens">
    <table id="log"><thead><tr><th>time</th><th>from</th><th>to</th><th>type</th><th>intent</th><th>decision</th><th>outcome</th><th>approval</th></tr></thead><tbody></tbody></table>
    </div>
  </section>
</main>
<dialog id="confirm" aria-labelledby="confirm-title">
  <h2 id="confirm-title"></h2>
  <dl id="confirm-facts"></dl>
  <pre id="confirm-payload"></pre>
  <p id="confirm-note" class="muted"></p>
  <div class="actions">
    <button id="confirm-yes" class="approve" type="button">Approve</button>
    <button id="confirm-no" type="button">Cancel</button>
  </div>
</dialog>
</body>
</html>
`;
}

export const CSS = `
:root { color-scheme: light dark; --fg: #1d1f21; --bg: #fafafa; --muted: #6a6f75; --card: #fff; --line: #d8dadd; --warn: #9a6700; --ok: #1a7f37; --bad: #cf222e; }
@media (prefers-color-scheme: dark) { :root { --fg: #e6e6e6; --bg: #16181b; --muted: #9aa0a6; --card: #1f2226; --line: #33373c; --warn: #d29922; --ok: #3fb950; --bad: #f85149; } }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, sans-serif; color: var(--fg); background: var(--bg); }
header { display: flex; gap: 1.5rem; align-items: center; padding: .75rem 1.25rem; border-bottom: 1px solid var(--line); flex-wrap: wrap; }
h1 { font-size: 1.1rem; margin: 0; }
h2 { font-size: 1rem; margin: 1rem 0 .5rem; }
main { display: grid; grid-template-columns: minmax(0, 3fr) minmax(0, 2fr); gap: 1.25rem; padding: 0 1.25rem 1.25rem; }
@media (max-width: 900px) { main { grid-template-columns: minmax(0, 1fr); } }
main > section { min-width: 0; }
.muted { color: var(--muted); }
.badge { display: inline-block; min-width: 1.5em; padding: 0 .4em; border-radius: 1em; background: var(--warn); color: #fff; text-align: center; }
#status { margin: .5rem 1.25rem 0; min-height: 1.4em; }
#status.ok { color: var(--ok); } #status.bad { color: var(--bad); }
.card { background: var(--card); border: 1px solid var(--line); border-left: 4px solid var(--warn); border-radius: 6px; padding: .75rem 1rem; margin-bottom: .75rem; }
.card h3 { margin: 0 0 .25rem; font-size: 1rem; }
.card dl { display: grid; grid-template-columns: max-content 1fr; gap: .1rem .75rem; margin: .25rem 0 .5rem; }
.card dt { color: var(--muted); } .card dd { margin: 0; overflow-wrap: anywhere; }
.left { color: var(--warn); font-weight: 600; }
pre { margin: 0 0 .5rem; padding: .5rem; background: var(--bg); border: 1px solid var(--line); border-radius: 4px; max-height: 16rem; overflow: auto; white-space: pre-wrap; overflow-wrap: anywhere; }
.actions { display: flex; gap: .5rem; align-items: center; flex-wrap: wrap; }
.actions input[type=text] { flex: 1 1 14rem; padding: .3rem .4rem; }
button { padding: .3rem .8rem; border-radius: 4px; border: 1px solid var(--line); cursor: pointer; font: inherit; }
button.approve { background: var(--ok); color: #fff; border-color: var(--ok); }
button.reject { background: var(--bad); color: #fff; border-color: var(--bad); }
.rows { padding-left: 1.25rem; margin: 0; } .rows li { margin: .15rem 0; overflow-wrap: anywhere; }
section.wide { grid-column: 1 / -1; }
.scroll { overflow: auto; max-width: 100%; max-height: 32rem; border: 1px solid var(--line); border-radius: 4px; background: var(--card); }
table { border-collapse: collapse; width: 100%; font-size: 12px; }
th, td { text-align: left; padding: .2rem .5rem; border-bottom: 1px solid var(--line); white-space: nowrap; }
th { position: sticky; top: 0; background: var(--card); }
#banner { margin: .75rem 1.25rem 0; padding: .6rem .9rem; border: 1px solid var(--bad); border-left-width: 4px; border-radius: 6px; background: var(--card); color: var(--bad); font-weight: 600; }
#banner[hidden] { display: none; }
body.closed #connection { color: var(--bad); font-weight: 600; }
article.card.offline { opacity: .55; }
dialog { width: min(46rem, calc(100vw - 1.5rem)); max-height: calc(100vh - 1.5rem); border: 1px solid var(--line); border-left: 4px solid var(--ok); border-radius: 8px; padding: 1rem 1.1rem; background: var(--card); color: var(--fg); }
dialog::backdrop { background: rgb(0 0 0 / .45); }
dialog h2 { margin: 0 0 .5rem; }
dialog dl { display: grid; grid-template-columns: max-content 1fr; gap: .15rem .75rem; margin: 0 0 .6rem; }
dialog dt { color: var(--muted); } dialog dd { margin: 0; overflow-wrap: anywhere; }
dialog pre { max-height: 45vh; }
@media (max-width: 600px) { header { gap: .5rem 1rem; padding: .6rem .75rem; } main { padding: 0 .75rem .75rem; } #status, #banner { margin-left: .75rem; margin-right: .75rem; } .card dl, dialog dl { grid-template-columns: 1fr; } .card dt, dialog dt { margin-top: .2rem; } }
`;

/** The page's script: state over server-sent events, decisions by POST with the CSRF header. */
export const APP_JS = `'use strict';
(() => {
  // The library's own escapeText: agent text shows no control or bidirectional character here either.
  const escapeText = ${escapeText.toString()};
  const csrf = document.querySelector('meta[name="switchboard-csrf"]').content;
  // Line by line, for pretty-printed JSON: its layout's line breaks stay line breaks, and a
  // string's bidirectional or C1 character (JSON.stringify leaves those) is shown escaped.
  const NL = String.fromCharCode(10);
  const escapeLines = (text) => text.split(NL).map(escapeText).join(NL);
  const $ = (id) => document.getElementById(id);
  const el = (tag, props, ...children) => {
    const node = document.createElement(tag);
    if (props) for (const [k, v] of Object.entries(props)) {
      if (k === 'text') node.textContent = escapeText(String(v)); else if (k === 'lines') node.textContent = escapeLines(String(v)); else if (k === 'class') node.className = v; else node.setAttribute(k, v);
    }
    for (const child of children) if (child) node.append(child);
    return node;
  };
  const operator = $('operator');
  operator.value = localStorage.getItem('switchboard-operator') || '';
  operator.addEventListener('change', () => localStorage.setItem('switchboard-operator', operator.value.trim()));
  let skew = 0; // server clock minus ours
  let state = { pending: [], recent: [], log: [] };
  const drafts = new Map(); // reason typed per item, kept across re-renders

  const say = (text, tone) => { const s = $('status'); s.textContent = escapeText(text); s.className = tone || ''; };
  const clock = (ms) => new Date(ms).toLocaleTimeString();
  const left = (expiresAt) => {
    const s = Math.ceil((expiresAt - (Date.now() + skew)) / 1000);
    if (s <= 0) return 'expired';
    return s < 60 ? s + ' s left' : Math.floor(s / 60) + ' min ' + String(s % 60).padStart(2, '0') + ' s left';
  };

  const operatorName = () => operator.value.trim() || (state.operator || '');
  const what = (e) => e.from + ' → ' + e.to + ' ' + e.type + ' "' + e.intent + '"';
  let offline = false;

  // The confirm step before an approval: the whole payload, the rule and the deadline, as the terminal console shows them.
  const dialog = $('confirm');
  let confirming; // { item, card }
  function confirmApprove(item, card) {
    const by = operatorName();
    if (!by) { say('type your name in "operator" first: it is recorded with the decision', 'bad'); operator.focus(); return; }
    const e = item.envelope;
    const always = card.querySelector('input.always').checked;
    confirming = { item, card };
    $('confirm-title').textContent = always ? 'Approve as ' + by + ', and always allow ' + what(e) + '?' : 'Approve this ' + e.type + ' as ' + by + '?';
    $('confirm-facts').replaceChildren(
      el('dt', { text: 'message' }), el('dd', { text: what(e) }),
      el('dt', { text: 'rule' }), el('dd', { text: item.rule || '(none)' }),
      el('dt', { text: 'deadline' }), el('dd', { class: 'left', 'data-expires': String(item.expiresAt), text: clock(e.deadline || item.expiresAt) + ' · ' + left(item.expiresAt) }),
      el('dt', { text: 'held since' }), el('dd', { text: clock(item.requestedAt) + (item.restored ? ' (restored after a restart)' : '') }),
      el('dt', { text: 'payload' }), el('dd', { text: item.payloadBytes + ' bytes · sha256 ' + item.payloadHash }));
    $('confirm-payload').textContent = escapeLines(JSON.stringify(e.payload, null, 2));
    const note = card.querySelector('input.reason').value.trim();
    $('confirm-note').textContent = (note ? 'note recorded with it: ' + note + ' · ' : '') + 'once approved it is delivered to ' + e.to + '.';
    dialog.showModal();
    $('confirm-yes').focus();
  }
  function closeConfirm(text) {
    if (dialog.open) dialog.close();
    if (confirming && text) say(text, 'bad');
    confirming = undefined;
  }
  $('confirm-yes').addEventListener('click', () => {
    const c = confirming;
    closeConfirm();
    if (c) decide(c.item, true, c.card);
  });
  $('confirm-no').addEventListener('click', () => closeConfirm('not approved: nothing was sent'));
  dialog.addEventListener('cancel', () => { confirming = undefined; say('not approved: nothing was sent', 'bad'); });

  async function decide(item, approve, card) {
    if (offline) return;
    const by = operatorName();
    if (!by) { say('type your name in "operator" first: it is recorded with the decision', 'bad'); operator.focus(); return; }
    const reason = card.querySelector('input.reason').value.trim();
    const always = card.querySelector('input.always').checked;
    const body = approve ? { id: item.id, decision: 'approve', by, always, ...(reason ? { note: reason } : {}) } : { id: item.id, decision: 'reject', by, ...(reason ? { reason } : {}) };
    for (const b of card.querySelectorAll('button')) b.disabled = true;
    try {
      const res = await fetch('/api/decide', { method: 'POST', headers: { 'content-type': 'application/json', 'x-switchboard-csrf': csrf }, body: JSON.stringify(body), credentials: 'same-origin' });
      const answer = await res.json().catch(() => ({}));
      const what = item.envelope.from + ' → ' + item.envelope.to + ' ' + item.envelope.type + ' "' + item.envelope.intent + '"';
      if (res.ok) say((approve ? '✓ approved ' : '✗ rejected ') + what + ' as ' + by + ': ' + (answer.text || ''), approve ? 'ok' : 'bad');
      else say((res.status === 409 ? 'already decided: ' : 'refused (' + res.status + '): ') + (answer.text || answer.error || '') + ' · ' + what, 'bad');
    } catch (e) {
      say('could not reach the server: ' + e.message, 'bad');
    } finally {
      for (const b of card.querySelectorAll('button')) b.disabled = false;
    }
  }

  function card(item) {
    const e = item.envelope;
    const reason = el('input', { type: 'text', class: 'reason', maxlength: '1000', placeholder: 'reason (recorded; sent to the sender on reject)', 'aria-label': 'reason' });
    reason.value = drafts.get(item.id) || '';
    reason.addEventListener('input', () => drafts.set(item.id, reason.value));
    const always = el('input', { type: 'checkbox', class: 'always' });
    const node = el('article', { class: 'card', 'data-id': item.id },
      el('h3', { text: (item.node ? item.node + ': ' : '') + e.from + ' → ' + e.to + ' · ' + e.type + ' "' + e.intent + '"' + (item.restored ? ' · restored' : '') }),
      el('dl', null,
        item.node ? el('dt', { text: 'node' }) : null, item.node ? el('dd', { class: 'node', text: item.node }) : null,
        el('dt', { text: 'time left' }), el('dd', { class: 'left', 'data-expires': String(item.expiresAt), text: left(item.expiresAt) }),
        el('dt', { text: 'rule' }), el('dd', { text: item.rule || '(none)' }),
        el('dt', { text: 'deadline' }), el('dd', { text: clock(e.deadline || item.expiresAt) + ' (held since ' + clock(item.requestedAt) + ')' }),
        el('dt', { text: 'envelope' }), el('dd', { text: 'id ' + e.id + ' · priority ' + e.priority + ' · depth ' + e.depth + ' · conversation ' + e.conversationId }),
        el('dt', { text: 'payload' }), el('dd', { text: item.payloadBytes + ' bytes · sha256 ' + item.payloadHash })),
      el('pre', { class: 'payload', lines: JSON.stringify(e.payload, null, 2) }),
      el('div', { class: 'actions' }, reason,
        el('label', null, always, document.createTextNode(' always allow')),
        el('button', { class: 'approve', type: 'button', text: 'Approve' }),
        el('button', { class: 'reject', type: 'button', text: 'Reject' })));
    node.querySelector('button.approve').addEventListener('click', () => confirmApprove(item, node));
    node.querySelector('button.reject').addEventListener('click', () => decide(item, false, node));
    return node;
  }

  function render() {
    const list = $('pending');
    const shown = new Set(state.pending.map((a) => a.id));
    if (confirming && !shown.has(confirming.item.id)) closeConfirm('no longer held (decided elsewhere, expired or cancelled): ' + what(confirming.item.envelope));
    for (const id of drafts.keys()) if (!shown.has(id)) drafts.delete(id);
    const existing = new Map([...list.querySelectorAll('article.card')].map((n) => [n.dataset.id, n]));
    list.replaceChildren(...state.pending.map((a) => existing.get(a.id) || card(a)));
    if (state.pending.length === 0) list.append(el('p', { class: 'muted', text: 'nothing is waiting for you' }));
    if (state.more > 0) list.append(el('p', { class: 'muted', text: '… and ' + state.more + ' more (oldest shown first)' }));
    $('count').textContent = String(state.pending.length + (state.more || 0));
    $('decisions').replaceChildren(...state.recent.slice().reverse().map((d) =>
      el('li', { text: clock(d.at) + ' ' + d.decision + (d.by ? ' by ' + d.by : '') + ' · ' + (d.node ? d.node + ': ' : '') + d.from + ' → ' + d.to + ' ' + d.type + ' "' + d.intent + '"' + (d.reason ? ' · ' + d.reason : '') })));
    $('log').tBodies[0].replaceChildren(...state.log.map((r) => el('tr', null,
      ...[clock(r.ts), r.from, r.to, r.type, r.intent, r.decision + (r.code ? ' ' + r.code : ''), r.outcome || '', r.approval ? r.approval + (r.decidedBy ? ' by ' + r.decidedBy : '') : ''].map((t) => el('td', { text: t })))));
    if (!operator.value && state.operator) operator.value = state.operator;
  }

  setInterval(() => { for (const n of document.querySelectorAll('[data-expires]')) n.textContent = left(Number(n.dataset.expires)); }, 1000);
  // Closed for good: the bus (or this page's server) is gone. Nothing stays listed as if it could be decided.
  function shutDown(reason) {
    offline = true;
    events.close();
    closeConfirm();
    document.body.classList.add('closed');
    $('connection').textContent = 'closed';
    const banner = $('banner');
    banner.textContent = reason;
    banner.hidden = false;
    state = { ...state, pending: [], more: 0 };
    render();
    $('pending').replaceChildren(el('p', { class: 'muted', text: 'nothing can be decided here: ' + reason }));
  }
  const setOffline = (value) => {
    offline = value;
    for (const n of document.querySelectorAll('article.card')) n.classList.toggle('offline', value);
    for (const b of document.querySelectorAll('article.card button')) b.disabled = value;
  };

  let failures = 0;
  const events = new EventSource('/api/events');
  events.addEventListener('state', (m) => {
    state = JSON.parse(m.data);
    skew = state.now - Date.now();
    failures = 0;
    $('connection').textContent = state.closed ? 'closed' : 'live';
    render();
    setOffline(false);
  });
  events.addEventListener('closed', (m) => shutDown(JSON.parse(m.data).reason));
  events.addEventListener('error', () => {
    if (document.body.classList.contains('closed')) return;
    // A server that went away without a word: a few retries, then say so instead of "reconnecting…" forever.
    if (++failures >= 4 || events.readyState === EventSource.CLOSED) {
      shutDown('the server cannot be reached: the bus has closed or its page server stopped (reload to try again)');
      return;
    }
    $('connection').textContent = 'reconnecting…';
    setOffline(true);
  });
})();
`;
