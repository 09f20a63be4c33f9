// Fixtures shared by the audit log's tests: a fresh temporary directory per test, and
// attempt records with distinct ids and conversations.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach } from 'vitest';
import type { AttemptRecord } from '../../src/audit/index.js';

/** A fresh temporary directory for each test of the file (removed after it): call at module level, read inside tests. */
export function tempDirPerTest(prefix: string): { readonly path: string } {
  const current = { path: '' };
  beforeEach(() => {
    current.path = mkdtempSync(join(tmpdir(), prefix));
  });
  afterEach(() => rmSync(current.path, { recursive: true, force: true }));
  return current;
}

/** A maker of allowed `ask` attempts from a to b, each with its own message id, conversation and later ts. */
export function attemptMaker(defaults: Partial<AttemptRecord> = {}): (over?: Partial<AttemptRecord>) => AttemptRecord {
  let n = 0;
  return (over = {}) => {
    n++;
    return {
      kind: 'attempt',
      ts: 1_700_000_000_000 + n,
      messageId: `m${n}`,
      from: 'a',
      to: 'b',
      type: 'ask',
      intent: 'work',
      payloadHash: 'f'.repeat(64),
      payloadBytes: 10,
      decision: 'allowed',
      policyVersion: 1,
      conversationId: `c${n}`,
      ...defaults,
      ...over,
    };
  };
}
