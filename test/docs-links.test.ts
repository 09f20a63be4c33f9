// The links of README.md and docs/ as a reader follows them: every relative link names a file
// that exists, and every #anchor a heading of that file, slugged as GitHub renders it. The
// README's table of examples lists every `example:*` script, so a new one cannot be missed.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('..', import.meta.url));
const pages = ['README.md', ...readdirSync(join(root, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)];

/** Markdown without its fenced blocks, where a `#` line is a comment, not a heading. */
function prose(text: string): string {
  return text.replace(/^```[\s\S]*?^```/gm, '');
}

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens. */
function slug(heading: string): string {
  return heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, '')
    .replace(/\s/g, '-');
}

/** The anchors of a Markdown file; a repeated heading gets `-1`, `-2`, … as on GitHub. */
function anchorsOf(file: string): Set<string> {
  const seen = new Map<string, number>();
  const anchors = new Set<string>();
  for (const m of prose(readFileSync(file, 'utf8')).matchAll(/^#{1,6}\s+(.*)$/gm)) {
    const s = slug(m[1]!);
    const n = seen.get(s) ?? 0;
    seen.set(s, n + 1);
    anchors.add(n === 0 ? s : `${s}-${n}`);
  }
  return anchors;
}

/** Every relative link of a page that does not resolve, as `page: target (why)`. */
function brokenLinks(page: string): string[] {
  const file = join(root, page);
  const broken: string[] = [];
  for (const m of prose(readFileSync(file, 'utf8')).matchAll(/\]\(([^)\s]+)\)/g)) {
    const href = m[1]!;
    if (/^[a-z]+:/.test(href)) continue; // https:, mailto:: not ours to check offline
    const [path, anchor] = href.split('#') as [string, string | undefined];
    const target = path === '' ? file : resolve(dirname(file), path);
    if (!existsSync(target)) broken.push(`${page}: ${href} (no file ${relative(root, target)})`);
    else if (anchor !== undefined && target.endsWith('.md') && !anchorsOf(target).has(anchor)) broken.push(`${page}: ${href} (no such heading)`);
  }
  return broken;
}

describe('links of README.md and docs/', () => {
  it('slugs a heading as GitHub does: code, dots and parentheses dropped', () => {
    expect(slug('`bus.result(messageId)`')).toBe('busresultmessageid');
    expect(slug('`Agent` (a handle)')).toBe('agent-a-handle');
    expect(slug("Fair share: a peer's flood does not starve local senders")).toBe('fair-share-a-peers-flood-does-not-starve-local-senders');
  });

  it.each(pages)('%s: every relative link names an existing file and heading', (page) => {
    expect(brokenLinks(page)).toEqual([]);
  });
});

describe('README.md: the examples table', () => {
  it('lists every example:* script of package.json', () => {
    const { scripts } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
    const readme = readFileSync(join(root, 'README.md'), 'utf8');
    const missing = Object.keys(scripts).filter((name) => name.startsWith('example:') && !readme.includes(`| \`npm run ${name}\` |`));
    expect(missing).toEqual([]);
  });
});
