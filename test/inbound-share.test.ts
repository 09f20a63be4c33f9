// The fair share of a receiving node per peer node, turn by turn with a hand-driven event loop.
import { describe, expect, it } from 'vitest';
import type { BusError } from '../src/errors.js';
import { InboundShare, type InboundShareSpec, type Slot } from '../src/pipeline/inbound-share.js';

/** A share whose turns the test runs by hand, recording what it admitted and refused. */
function harness(partial: Omit<InboundShareSpec, 'maxQueuedBytes'> & { maxQueuedBytes?: number }, localBusy = () => true) {
  const spec: InboundShareSpec = { maxQueuedBytes: 1_000_000, ...partial };
  const turns: (() => void)[] = [];
  const admitted: { node: string; n: number; slot: Slot; waitedFrom: number | undefined }[] = [];
  const refused: { n: number; error: BusError }[] = [];
  const cancelled: string[] = [];
  let now = 0;
  const share = new InboundShare<{ node: string; n: number }>(
    spec,
    {
      admit: (item, slot, waitedFrom) => {
        admitted.push({ ...item, slot, waitedFrom });
        return { cancel: (reason) => void cancelled.push(`${item.n}:${reason}`) };
      },
      refuse: (item, error) => void refused.push({ n: item.n, error }),
    },
    () => now,
    localBusy,
    (task) => void turns.push(task),
  );
  const turn = () => {
    const due = turns.splice(0);
    for (const task of due) task();
  };
  let n = 0;
  const offer = (node: string, count: number, bytes = 10) => Array.from({ length: count }, () => share.offer(node, { node, n: n++ }, bytes));
  return { share, turn, admitted, refused, cancelled, offer, advance: (ms: number) => (now += ms) };
}

describe('InboundShare', () => {
  it('admits at most perTurn messages of one node per turn of the event loop; the rest wait for later turns', () => {
    const h = harness({ maxInFlight: 1000, perTurn: 4, maxQueued: 100 });
    h.offer('p', 10);
    expect(h.admitted.map((a) => a.n)).toEqual([0, 1, 2, 3]);
    expect(h.share.waiting('p')).toBe(6);
    h.turn();
    expect(h.admitted).toHaveLength(8);
    h.turn();
    expect(h.admitted.map((a) => a.n)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(h.share.waiting('p')).toBe(0);
  });

  it('keeps at most maxInFlight messages of one node admitted and unanswered; a freed slot lets the next in at the next turn', () => {
    const h = harness({ maxInFlight: 2, perTurn: 100, maxQueued: 100 });
    h.offer('p', 5);
    h.turn();
    h.turn();
    expect(h.admitted.map((a) => a.n)).toEqual([0, 1]);
    h.admitted[0]!.slot.release();
    h.admitted[0]!.slot.release(); // idempotent: frees one place, not two
    h.turn();
    expect(h.admitted.map((a) => a.n)).toEqual([0, 1, 2]);
  });

  it('refuses with MAILBOX_FULL, naming the node and its counts, what is over maxQueued', () => {
    const h = harness({ maxInFlight: 1, perTurn: 1, maxQueued: 2 });
    h.offer('p', 5);
    expect(h.admitted).toHaveLength(1);
    expect(h.refused.map((r) => r.n)).toEqual([3, 4]);
    expect(h.refused[0]!.error).toMatchObject({ code: 'MAILBOX_FULL', message: expect.stringContaining('node p has 1 messages in flight here (maxInFlight 1) and 2 waiting, 20 bytes (maxQueued 2') });
  });

  it('refuses with MAILBOX_FULL what would take its node’s waiting messages over maxQueuedBytes, and counts bytes freed once admitted', () => {
    const h = harness({ maxInFlight: 100, perTurn: 1, maxQueued: 100, maxQueuedBytes: 250 });
    h.offer('p', 4, 100);
    expect(h.refused.map((r) => r.n)).toEqual([3]);
    expect(h.refused[0]!.error.message).toContain('maxQueuedBytes 250');
    h.turn();
    h.offer('p', 1, 100);
    expect(h.refused).toHaveLength(1);
  });

  it("gives each node a share of its own: one node's flood does not delay another's messages", () => {
    const h = harness({ maxInFlight: 100, perTurn: 2, maxQueued: 100 });
    h.offer('flood', 50);
    h.offer('quiet', 1);
    expect(h.admitted.filter((a) => a.node === 'quiet')).toHaveLength(1);
  });

  it('admits a node’s messages as they come while no local agent is sending: the share yields to local work, it does not slow an idle node', () => {
    let busy = false;
    const h = harness({ maxInFlight: 2, perTurn: 1, maxQueued: 100 }, () => busy);
    h.offer('p', 10);
    expect(h.admitted).toHaveLength(10);
    busy = true;
    h.offer('p', 3);
    h.turn();
    expect(h.admitted).toHaveLength(10);
    expect(h.share.waiting('p')).toBe(3);
  });

  it('tells an admitted message how long it waited, and drops one cancelled while it waits (a later cancel reaches its handle)', () => {
    const h = harness({ maxInFlight: 100, perTurn: 1, maxQueued: 100 });
    const [, second, third] = h.offer('p', 3);
    expect(h.admitted[0]!.waitedFrom).toBeUndefined();
    h.advance(30);
    second!.cancel('gave up');
    h.turn();
    expect(h.admitted.map((a) => [a.n, a.waitedFrom])).toEqual([
      [0, undefined],
      [2, 0],
    ]);
    third!.cancel('later');
    expect(h.cancelled).toEqual(['2:later']);
  });
});
