import { describe, expect, it } from 'vitest';
import type { ClaimRecord } from '../src/nats/claims.js';
import { Directory } from '../src/nats/directory.js';

function source(claims: Array<ClaimRecord & { expires: number }>, clock: { now: number }) {
  let reads = 0;
  return {
    get reads() {
      return reads;
    },
    view() {
      reads++;
      const live = claims.filter((c) => c.expires > clock.now);
      return { claims: live.map(({ expires: _e, ...c }) => c), until: Math.min(Infinity, ...live.map((c) => c.expires)) };
    },
  };
}

describe('Directory', () => {
  it("answers from its cached view until a change or the first lease end, and drops a dead node's agents at their lease", () => {
    const clock = { now: 1000 };
    const claims = [
      { agent: 'b', node: 'n2', capabilities: ['x'], trust: 1, expires: 2000 },
      { agent: 'a', node: 'n2', capabilities: [], trust: 0, expires: 5000 },
      { agent: 'mine', node: 'n1', capabilities: [], trust: 0, expires: 5000 },
    ];
    const src = source(claims, clock);
    const dir = new Directory(src, 'n1', () => clock.now);
    expect(dir.remote().map((r) => r.id)).toEqual(['a', 'b']);
    expect(dir.remoteNodeOf('b')).toBe('n2');
    expect(dir.remoteNodeOf('mine')).toBeUndefined();
    expect(dir.get('mine')?.node).toBe('n1');
    expect(src.reads).toBe(1);
    clock.now = 2000; // b's lease ran out
    expect(dir.remoteNodeOf('b')).toBeUndefined();
    expect(src.reads).toBe(2);
    claims.push({ agent: 'c', node: 'n3', capabilities: [], trust: 0, expires: 9000 });
    expect(dir.remoteNodeOf('c')).toBeUndefined(); // not until the watch reports the change
    dir.invalidate();
    expect(dir.remoteNodeOf('c')).toBe('n3');
  });

  it('returns the same frozen empty array when no other node serves an agent', () => {
    const clock = { now: 0 };
    const dir = new Directory(source([{ agent: 'mine', node: 'n1', capabilities: [], trust: 0, expires: 10 }], clock), 'n1', () => clock.now);
    const empty = dir.remote();
    expect(empty).toEqual([]);
    expect(Object.isFrozen(empty)).toBe(true);
    dir.invalidate();
    expect(dir.remote()).toBe(empty);
  });
});
