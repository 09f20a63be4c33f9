// Agent-controlled text on terminals and pages: one function escapes it, and intents that
// hold such characters are refused at send.
import { afterEach, describe, expect, it } from 'vitest';
import { escapeText } from '../src/index.js';
import { APP_JS } from '../src/web/page.js';
import { closeBuses, makeBus, rejectionOf } from './support/helpers.js';

afterEach(closeBuses);

const UNSAFE = [
  ...Array.from({ length: 0x20 }, (_, i) => i),
  ...Array.from({ length: 0x21 }, (_, i) => 0x7f + i),
  0x061c, 0x200e, 0x200f, 0x2028, 0x2029,
  ...Array.from({ length: 5 }, (_, i) => 0x202a + i),
  ...Array.from({ length: 4 }, (_, i) => 0x2066 + i),
];

describe('escapeText()', () => {
  it('shows every control, escape and bidirectional character as visible text', () => {
    for (const code of UNSAFE) {
      const out = escapeText(`a${String.fromCharCode(code)}b`);
      expect(out, `U+${code.toString(16)}`).toBe(`a${code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`}b`);
    }
  });

  it('leaves other text alone, other scripts and emoji included', () => {
    for (const text of ['summarize', 'résumé', 'ملخص', '要約', '😀 ok', 'a\\x1b b', '']) expect(escapeText(text)).toBe(text);
  });

  it('neutralises an OSC 8 hyperlink and SGR colours', () => {
    const out = escapeText('\u001b[31mred\u001b[0m \u001b]8;;https://evil.example\u0007click\u001b]8;;\u0007 \u009b2J');
    expect(out).not.toMatch(/[\u001b\u0007\u009b]/);
    expect(out).toBe('\\x1b[31mred\\x1b[0m \\x1b]8;;https://evil.example\\x07click\\x1b]8;;\\x07 \\x9b2J');
  });

  it('is the very function the approval page runs', () => {
    const source = /const escapeText = ([\s\S]*?);\n  const csrf/.exec(APP_JS)?.[1];
    expect(source).toBeDefined();
    const onPage = new Function(`return (${source!});`)() as (s: string) => string;
    for (const code of UNSAFE) expect(onPage(String.fromCharCode(code))).toBe(escapeText(String.fromCharCode(code)));
  });
});

describe('Agent#ask() with an intent holding control characters', () => {
  for (const [name, intent] of [
    ['an ESC sequence', '\u001b]8;;https://evil.example\u0007pay'],
    ['a right-to-left override', 'pay\u202Eyrev'],
    ['a C1 control', 'pay\u009b'],
    ['a newline', 'pay\nnow'],
  ] as const) {
    it(`rejects with INVALID_ARGUMENT naming the value, escaped, for ${name}`, async () => {
      const bus = makeBus({ policies: [{ from: 'a', to: 'b', allow: ['ask', 'notify'] }] });
      let ran = false;
      bus.register('b', { handlers: { '*': () => ((ran = true), 'ok') } });
      const a = bus.register('a');
      const error = await rejectionOf(a.ask('b', intent, {}));
      expect(error.code).toBe('INVALID_ARGUMENT');
      expect(error.message).toContain(`"${escapeText(intent)}"`);
      expect(error.message).not.toMatch(/[\u0000-\u001f\u007f-\u009f\u202e]/);
      expect((await rejectionOf(a.notify(intent, {}))).code).toBe('INVALID_ARGUMENT');
      expect(ran).toBe(false);
    });
  }
});
