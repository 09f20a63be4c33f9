// The code in README.md and docs/ that is meant to run, run as the Markdown shows it now:
// each snippet is cut from its file, its `agent-switchboard` imports are pointed at the
// sources, and it is executed (a program in a child process, a test beside these). Snippets
// that are fragments (they use a `bus` or `research` defined elsewhere) are not run here;
// the examples they come from are, in examples.test.ts and adapter-examples.test.ts.
import { execFileSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

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

describe('docs/a2a.md', () => {
  it('the serving example prints what its comments show', () => {
    const code = snippet('docs/a2a.md', 'ts', 'const server = await a2aServer(bus, {');
    const promised = [...code.matchAll(/console\.log\(.*\n\/\/ (.*)$/gm)].map((m) => m[1]);
    expect(run(code).trim().split('\n')).toEqual(promised);
  });
});

// docs/getting-started.md, step by step in a fresh folder, as a reader would: its shell
// lines run as they are (the package installed from a tarball packed from this checkout,
// since it is not on the registry), its files written under the names it gives them, and
// what it says the app prints compared with what it prints.
describe('docs/getting-started.md: every step in a fresh folder', () => {
  const guide = readFileSync(join(root, 'docs/getting-started.md'), 'utf8');
  let project = '';
  let tarball = '';
  // The child npm, tsc and vitest must not think they run inside this vitest.
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('VITEST') && k !== 'NODE_OPTIONS' && k !== 'TEST'));
  const shell = (line: string) =>
    execFileSync('sh', ['-c', line], { cwd: project, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 240_000, env: { ...env, NO_COLOR: '1', npm_config_prefer_offline: 'true', npm_config_audit: 'false', npm_config_fund: 'false', npm_config_update_notifier: 'false' } });
  const lines = (marker: string) =>
    snippet('docs/getting-started.md', 'sh', marker)
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l !== '' && !l.startsWith('#'));

  beforeAll(() => {
    const packDir = join(work, 'pack');
    mkdirSync(packDir);
    const src = join(packDir, 'src-copy');
    mkdirSync(src);
    for (const f of ['package.json', 'tsconfig.json', 'tsconfig.build.json', 'README.md', 'LICENSE', 'src', 'docs']) cpSync(join(root, f), join(src, f), { recursive: true });
    symlinkSync(join(root, 'node_modules'), join(src, 'node_modules'), 'dir');
    const name = execFileSync('npm', ['pack', '--pack-destination', packDir], { cwd: src, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], env }).trim().split('\n').at(-1)!;
    tarball = join(packDir, name);
    project = join(work, 'my-agents');
  }, 240_000);

  it('1. creates an ESM project with the package, zod, TypeScript, tsx, vitest and @types/node', () => {
    const steps = lines('npm init -y');
    expect(steps[0]).toBe('mkdir my-agents && cd my-agents');
    mkdirSync(project);
    for (const step of steps.slice(1)) shell(step.replace('npm install agent-switchboard zod', `npm install ${tarball} zod`));
    const manifest = JSON.parse(readFileSync(join(project, 'package.json'), 'utf8')) as { type: string; dependencies: Record<string, string>; devDependencies: Record<string, string> };
    expect(manifest.type).toBe('module');
    expect(Object.keys(manifest.dependencies).sort()).toEqual(['agent-switchboard', 'zod']);
    expect(Object.keys(manifest.devDependencies).sort()).toEqual(['@types/node', 'tsx', 'typescript', 'vitest']);
    // Every file the guide names, written as it shows it.
    const files = [...guide.matchAll(/^`([\w./-]+)`:\n\n```\w+\n([\s\S]*?)^```/gm)];
    expect(files.map((m) => m[1])).toEqual(['tsconfig.json', 'app.ts', 'main.ts', 'test/app.test.ts']);
    for (const [, file, body] of files) {
      mkdirSync(join(project, file!, '..'), { recursive: true });
      writeFileSync(join(project, file!), body!);
    }
  }, 300_000);

  it('2-3. type-checks with tsc and prints what the guide shows', () => {
    const [tsc, run] = lines('npx tsx main.ts');
    expect(tsc).toBe('npx tsc');
    expect(shell(tsc!)).toBe('');
    expect(shell(run!)).toBe(snippet('docs/getting-started.md', 'text', 'audit log verified'));
  }, 120_000);

  it('4. passes its test with vitest', () => {
    const [test] = lines('npx vitest run');
    const out = shell(`${test!} 2>&1`);
    expect(out.replace(/\u001b\[[0-9;]*m/g, '')).toMatch(/Tests\s+3 passed/);
  }, 120_000);
});
