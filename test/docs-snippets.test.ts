// The code in README.md and docs/ that is meant to run, run as the Markdown shows it now:
// each snippet is cut from its file, its `agent-switchboard` imports are pointed at the
// sources, and it is executed (a program in a child process, a test beside these). Snippets
// that are fragments (they use a `bus` or `research` defined elsewhere) are not run here;
// the examples they come from are, in examples.test.ts and adapter-examples.test.ts.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('..', import.meta.url));
// Snippets run in a scratch directory that resolves packages from this checkout.
const work = mkdtempSync(join(tmpdir(), 'switchboard-snippets-'));
symlinkSync(join(root, 'node_modules'), join(work, 'node_modules'), 'dir');
writeFileSync(join(work, 'package.json'), JSON.stringify({ type: 'module', private: true }));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** The one fenced block of `file` in `lang` that contains `marker` (fails on none or several). */
function snippet(file: string, lang: string, marker: string): string {
  const text = readFileSync(join(root, file), 'utf8');
  const found = [...text.matchAll(/^```(\w*)\n([\s\S]*?)^```/gm)].filter((m) => m[1] === lang && m[2]!.includes(marker)).map((m) => m[2]!);
  if (found.length !== 1) throw new Error(`${file}: expected one \`\`\`${lang} block containing ${JSON.stringify(marker)}, found ${found.length}`);
  return found[0]!;
}

/** Points the package's imports (and the repository's relative ones) at the sources. */
function onSources(code: string): string {
  return code
    .replace(/from 'agent-switchboard\/(\w+)'/g, (_, sub: string) => `from '${join(root, 'src', sub, 'index.ts')}'`)
    .replace(/from 'agent-switchboard'/g, `from '${join(root, 'src/index.ts')}'`)
    .replace(/from '\.\.\/(src|examples)\/([\w/.-]+)\.js'/g, (_, dir: string, path: string) => `from '${join(root, dir, path)}.ts'`);
}

let count = 0;
/** Runs a TypeScript program with tsx; returns what it printed. Fails on a non-zero exit. */
function run(code: string): string {
  const file = join(work, `snippet-${++count}.mts`);
  writeFileSync(file, onSources(code));
  return execFileSync(process.execPath, ['--import', 'tsx', file], { cwd: work, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 30_000 });
}

// The test that docs/getting-started.md tells a reader to write, registered here as it is.
const helloTest = join(work, 'hello.test.ts');
writeFileSync(helloTest, onSources(snippet('docs/getting-started.md', 'ts', "describe('hello app'")));
describe('docs/getting-started.md: the test for the hello app, as the page shows it', async () => {
  await import(helloTest);
});

// The worked example of docs/testing.md: its blocks in order (the workflow, the setup, the
// tests), with the imports the page names, registered here as they are.
const workedExample = join(work, 'worked-example.test.ts');
writeFileSync(
  workedExample,
  onSources(
    [
      "import { afterEach, expect, it, vi } from 'vitest';",
      "import { z } from 'zod';",
      "import { defineContracts, isBusError, type Agent, type Orchestrator, type PolicyRule } from 'agent-switchboard';",
      "import { closeBus, createTestBus, fail, never, recordTranscript, runUntilIdle, stubAgent, type StubScript } from 'agent-switchboard/testing';",
      snippet('docs/testing.md', 'ts', 'const contracts = defineContracts({'),
      snippet('docs/testing.md', 'ts', 'let bus: Orchestrator<App>;'),
      snippet('docs/testing.md', 'ts', "it('clarifies, drafts, and publishes once an editor approves'"),
      snippet('docs/testing.md', 'ts', "it('falls back to a general audience"),
      snippet('docs/testing.md', 'ts', "it('fails with APPROVAL_REJECTED"),
    ].join('\n'),
  ),
);
describe('docs/testing.md: the worked example, as the page shows it', async () => {
  await import(workedExample);
});

describe('README.md', () => {
  it('the first example prints what its comment says', () => {
    const code = snippet('README.md', 'ts', "console.log(await research.ask('writer', 'clarify'");
    const promised = /console\.log\(.*\);\n\/\/ (.*)\n/.exec(code)![1]!;
    expect(run(code).trim()).toBe(promised);
  });

});

describe('docs/reference.md', () => {
  it('the contracts example runs: a typed delegate the policy allows', () => {
    const code = snippet('docs/reference.md', 'ts', 'const contracts = defineContracts({\n  summarize');
    expect(run(`${code}\nconsole.log(JSON.stringify(summary));\nawait bus.close();\n`).trim()).toBe('"x"');
  });
});

describe('docs/getting-started.md', () => {
  it('shows examples/hello.ts as it is, and the output it prints', () => {
    const shown = snippet('docs/getting-started.md', 'ts', '// Two agents, one rule, one ask.');
    expect(shown).toBe(readFileSync(join(root, 'examples/hello.ts'), 'utf8'));
    const printed = execFileSync(process.execPath, ['--import', 'tsx', join(root, 'examples/hello.ts')], { cwd: work, encoding: 'utf8', timeout: 30_000 });
    expect(printed).toBe(snippet('docs/getting-started.md', 'text', 'writer answered:'));
  });
});

describe('docs/approvals.md', () => {
  it('the end-to-end example prints the decisions and audit entries its comments show', () => {
    const out = run(snippet('docs/approvals.md', 'ts', '// 3. The audit log, oldest first.'));
    expect(out).toContain('decided: pay approved alice');
    expect(out).toContain('decided: pay rejected bob over the monthly budget');
    expect(out).toContain('APPROVAL_REJECTED over the monthly budget delegate to payment ("pay") was rejected by bob: over the monthly budget');
    expect(out).toMatch(/approval: 'approved',\s+decidedBy: 'alice',\s+outcome: 'replied'/);
    expect(out).toMatch(/approval: 'rejected',\s+decidedBy: 'bob',\s+outcome: 'failed',\s+code: 'APPROVAL_REJECTED'/);
  });
});

describe('docs/observability.md', () => {
  it('the tracing example prints the spans its comment lists, in that order', () => {
    const code = snippet('docs/observability.md', 'ts', 'console.log(exporter.getFinishedSpans()');
    // The comment lists the span names after its last colon: `// in the order they ended: a, b, …`.
    const promised = /console\.log\(exporter.*\/\/ (.*)\n/.exec(code)![1]!.split(': ').at(-1)!.split(', ');
    const printed = run(`${code}\nconsole.log(JSON.stringify(exporter.getFinishedSpans().map((s) => s.name)));\n`).trim().split('\n').at(-1)!;
    expect(JSON.parse(printed)).toEqual(promised);
  });
});
