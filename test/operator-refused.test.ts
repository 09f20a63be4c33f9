// A transport that refuses an operator's request (fleet approvals) tells the node through its
// port's desk.refused(): the bus emits operator:refused, or warns when nobody listens, and a
// flood of refusals costs a few warnings a minute, never one each.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { describeEvent } from '../src/console/format.js';
import type { BusEvents } from '../src/index.js';
import { InProcessTransport, type InboundPort } from '../src/pipeline/transport.js';
import { closeBuses, makeBus } from './support/helpers.js';

afterEach(closeBuses);
afterEach(() => {
  vi.restoreAllMocks();
  vi.useRealTimers();
});

/** The default transport, but it keeps the port the bus attached, so a test can play the transport's part. */
class PortKeeper extends InProcessTransport {
  port!: InboundPort;
  override attach(_node: string, port: InboundPort): void {
    this.port = port;
  }
}

function nodeBus() {
  const transport = new PortKeeper();
  const bus = makeBus({ node: 'n1', transport });
  return { bus, desk: transport.port.desk! };
}

function captureWarnings(): Array<[string, string | undefined]> {
  const warnings: Array<[string, string | undefined]> = [];
  vi.spyOn(process, 'emitWarning').mockImplementation(((w: string, o?: { code?: string }) => void warnings.push([w, o?.code])) as typeof process.emitWarning);
  return warnings;
}

describe('operator:refused', () => {
  it('is emitted with what the transport reports, cut short, and no warning is written', () => {
    const { bus, desk } = nodeBus();
    const warnings = captureWarnings();
    const seen: BusEvents['operator:refused'][] = [];
    bus.events.on('operator:refused', (e) => void seen.push(e));
    desk.refused!({ request: 'decide', operator: 'm'.repeat(500), messageId: 'x'.repeat(1000), code: 'POLICY_DENIED', reason: 'r'.repeat(5000) });
    expect(seen).toEqual([{ request: 'decide', operator: 'm'.repeat(80), messageId: 'x'.repeat(300), code: 'POLICY_DENIED', reason: 'r'.repeat(1024) }]);
    expect(Object.isFrozen(seen[0])).toBe(true);
    expect(warnings).toEqual([]);
  });

  it('names a code the bus does not know POLICY_DENIED, and leaves out what the report lacks', () => {
    const { bus, desk } = nodeBus();
    const seen: BusEvents['operator:refused'][] = [];
    bus.events.on('operator:refused', (e) => void seen.push(e));
    desk.refused!({ request: 'list', code: 'NOT_A_CODE' as never, reason: 'frame is not JSON' });
    expect(seen).toEqual([{ request: 'list', code: 'POLICY_DENIED', reason: 'frame is not JSON' }]);
  });

  it('is a warning (SWITCHBOARD_OPERATOR_REFUSED) when nobody listens, its text escaped', () => {
    const { desk } = nodeBus();
    const warnings = captureWarnings();
    desk.refused!({ request: 'decide', operator: 'eve\u001b[2J', messageId: 'm1', code: 'POLICY_DENIED', reason: 'operator "eve" is not in the roster' });
    expect(warnings).toHaveLength(1);
    expect(warnings[0]![1]).toBe('SWITCHBOARD_OPERATOR_REFUSED');
    expect(warnings[0]![0]).toContain('node "n1" refused a request naming operator');
    expect(warnings[0]![0]).toContain('to decide message "m1" (POLICY_DENIED)');
    expect(warnings[0]![0]).not.toContain('\u001b');
  });

  it('writes the first 10 of a minute one by one and the rest as one summary at the end of the minute, naming the count and codes', () => {
    vi.useFakeTimers({ now: 1_000_000 });
    const { desk } = nodeBus();
    const warnings = captureWarnings();
    for (let i = 0; i < 1000; i++) desk.refused!({ request: 'decide', operator: 'eve', code: i % 2 === 0 ? 'POLICY_DENIED' : 'INVALID_ARGUMENT', reason: 'forged' });
    expect(warnings).toHaveLength(10);
    vi.advanceTimersByTime(60_000);
    expect(warnings).toHaveLength(11);
    expect(warnings[10]![0]).toMatch(/990 more operator requests refused since .*\(POLICY_DENIED ×495, INVALID_ARGUMENT ×495\)/);
    // A new minute: one by one again.
    desk.refused!({ request: 'list', code: 'POLICY_DENIED', reason: 'replay' });
    expect(warnings).toHaveLength(12);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('writes the summary still counted when the bus closes, and nothing after', async () => {
    vi.useFakeTimers({ now: 1_000_000 });
    const { bus, desk } = nodeBus();
    const warnings = captureWarnings();
    for (let i = 0; i < 15; i++) desk.refused!({ request: 'decide', code: 'POLICY_DENIED', reason: 'forged' });
    expect(warnings).toHaveLength(10);
    await bus.close();
    expect(warnings.filter(([, code]) => code === 'SWITCHBOARD_OPERATOR_REFUSED')).toHaveLength(11);
    expect(warnings[10]![0]).toContain('5 more operator requests refused');
    desk.refused!({ request: 'decide', code: 'POLICY_DENIED', reason: 'after close' });
    expect(warnings.filter(([, code]) => code === 'SWITCHBOARD_OPERATOR_REFUSED')).toHaveLength(11);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('has a line in the console feed', () => {
    expect(describeEvent['operator:refused']!({ request: 'decide', operator: 'eve', messageId: 'm1', code: 'POLICY_DENIED', reason: 'forged' })).toMatchObject({
      route: 'operator eve',
      what: 'decide m1',
      status: '✗ refused POLICY_DENIED',
      tone: 'red',
      detail: 'forged',
    });
  });
});
