// What an outside prober needs and the package does not give: a way to collect the buses a
// test made and close them, and the BusError a promise rejects with. Only public exports are
// imported (the package name resolves to dist/, which is not built in the test run; see
// docs/testing.md), so these probes see the library exactly as a user does.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isBusError, Orchestrator, type BusError, type OrchestratorOptions } from '../../src/index.js';

const open: Orchestrator[] = [];

/** A bus closed by `closeAll()`: an in-memory log unless `audit` is given. */
export function bus(options: OrchestratorOptions = {}): Orchestrator {
  const b = new Orchestrator(options);
  open.push(b);
  return b;
}

/** Closes every bus of the test. */
export async function closeAll(): Promise<void> {
  await Promise.all(open.splice(0).map((b) => b.close()));
}

/** Lets every pending microtask and the audit's group commit run (a few macrotask turns). */
export async function settle(turns = 5): Promise<void> {
  for (let i = 0; i < turns; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

/** The BusError `p` rejects with; throws if it resolves or rejects with anything else. */
export async function refusal(p: Promise<unknown> | (() => unknown)): Promise<BusError> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    if (isBusError(e)) return e;
    throw new Error(`expected a BusError, got ${String(e)}`, { cause: e });
  }
  throw new Error('expected a refusal, got a value');
}

/** Rules that let every agent ask, delegate and notify every other. */
export const OPEN = [{ from: '*', to: '*', allow: ['ask', 'delegate', 'notify'] }] as const;

/** A handler body that never answers but stops when its signal aborts (so close() need not wait). */
export function hang(_payload: unknown, ctx: { signal: AbortSignal }): Promise<never> {
  return new Promise((_resolve, reject) => ctx.signal.addEventListener('abort', () => reject(new Error('aborted')), { once: true }));
}

const dirs: string[] = [];

/** A fresh directory's `name` for a database file; the directory goes in `removeDirs()`. */
export function dbPath(name = 'audit.db'): string {
  const dir = mkdtempSync(join(tmpdir(), 'spec-probe-'));
  dirs.push(dir);
  return join(dir, name);
}
/** Removes every directory `dbPath()` made. */
export function removeDirs(): void {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
}
