// The audit worker's V8 young generation is capped: under sustained load V8 otherwise grows
// it to its largest size on the worker and keeps it (RSS the inline log never costs).
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire, syncBuiltinESMExports } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Worker as WorkerType } from 'node:worker_threads';
import { afterAll, describe, expect, it } from 'vitest';
import { AUDIT_WORKER_LIMITS, WorkerAuditLog } from '../src/audit/worker-log.js';

const threads = createRequire(import.meta.url)('node:worker_threads') as typeof import('node:worker_threads');
const dir = mkdtempSync(join(tmpdir(), 'switchboard-worker-memory-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Runs `open` while every Worker constructed is recorded; the real class is restored after. */
function recordingWorkers<T>(open: () => T): { value: T; workers: WorkerType[] } {
  const workers: WorkerType[] = [];
  const Original = threads.Worker;
  threads.Worker = class extends Original {
    constructor(...args: ConstructorParameters<typeof Original>) {
      super(...args);
      workers.push(this);
    }
  } as typeof Original;
  syncBuiltinESMExports();
  try {
    return { value: open(), workers };
  } finally {
    threads.Worker = Original;
    syncBuiltinESMExports();
  }
}

describe('WorkerAuditLog memory', () => {
  it('runs its worker with the young generation capped at AUDIT_WORKER_LIMITS', () => {
    const { value: log, workers } = recordingWorkers(() => new WorkerAuditLog({ path: join(dir, 'audit.db') }));
    try {
      expect(workers).toHaveLength(1);
      expect(AUDIT_WORKER_LIMITS.maxYoungGenerationSizeMb).toBeLessThanOrEqual(16);
      // The running thread's own limits, as V8 applied them.
      expect(workers[0]!.resourceLimits?.maxYoungGenerationSizeMb).toBe(AUDIT_WORKER_LIMITS.maxYoungGenerationSizeMb);
    } finally {
      log.close();
    }
  });
});
