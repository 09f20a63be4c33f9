// A node that loses an id's bus-wide claim at run time (it missed its lease renewals and
// another node took the id over) must stop serving it: the transport tells the bus through
// its port's claimLost(), and the bus kills the local handle.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { describeEvent } from '../src/console/format.js';
import { BusError, Orchestrator } from '../src/index.js';
import { InProcessTransport, type InboundPort } from '../src/pipeline/transport.js';
import { closeBuses, makeBus } from './support/helpers.js';

afterEach(closeBuses);
afterEach(() => vi.restoreAllMocks());

/** The default transport, but it keeps the port the bus attached, so a test can play the transport's part. */
class PortKeeper extends InProcessTransport {
  port!: InboundPort;
  override attach(_node: string, port: InboundPort): void {
    this.port = port;
  }
}

function nodeBus() {
  const transport = new PortKeeper();
  const bus = makeBus({ node: 'n1', transport, policies: [{ from: '*', to: '*', allow: ['ask'] }] });
  return { bus, port: transport.port };
}

describe('a claim lost at run time', () => {
  it('kills the local handle, emits agent:lost naming the new holder, and makes ready() reject', async () => {
    const { bus, port } = nodeBus();
    const a = bus.register('a', { handlers: { work: () => 'done' } });
    await bus.ready();
    const lost: unknown[] = [];
    bus.events.on('agent:lost', (e) => lost.push(e));

    port.claimLost!('a', 'n2');

    expect(a.alive).toBe(false);
    expect(bus.agents().map((x) => x.id)).not.toContain('a');
    expect(lost).toHaveLength(1);
    expect(lost[0]).toMatchObject({ agentId: 'a', holder: 'n2', error: { code: 'DUPLICATE_AGENT' } });
    expect((lost[0] as { error: Error }).error.message).toContain('taken over by node "n2"');
    await expect(bus.ready()).rejects.toMatchObject({ code: 'DUPLICATE_AGENT', message: expect.stringContaining('"n2"') });
    await expect(a.ask('a', 'work', {})).rejects.toMatchObject({ code: 'UNKNOWN_AGENT' });
  });

  it('lets ready() resolve again once the lost id is registered here again', async () => {
    const { bus, port } = nodeBus();
    bus.events.on('agent:lost', () => undefined);
    bus.register('a');
    port.claimLost!('a', 'n2');
    await expect(bus.ready()).rejects.toMatchObject({ code: 'DUPLICATE_AGENT' });
    const again = bus.register('a');
    await expect(bus.ready()).resolves.toBeUndefined();
    expect(again.alive).toBe(true);
  });

  it('fails the requests waiting on the lost agent with UNKNOWN_AGENT', async () => {
    const { bus, port } = nodeBus();
    bus.events.on('agent:lost', () => undefined);
    let started!: () => void;
    const running = new Promise<void>((r) => (started = r));
    bus.register('a', { handlers: { slow: () => (started(), new Promise(() => undefined)) } });
    const client = bus.register('client');
    const asked = client.ask('a', 'slow', {});
    await running;
    port.claimLost!('a', 'n2');
    await expect(asked).rejects.toMatchObject({ code: 'UNKNOWN_AGENT' });
    expect(client.alive).toBe(true);
  });

  it('warns when nobody listens for agent:lost', () => {
    const { bus, port } = nodeBus();
    bus.register('a');
    const warn = vi.spyOn(process, 'emitWarning').mockImplementation(() => undefined);
    port.claimLost!('a', 'n2');
    expect(warn).toHaveBeenCalledWith(expect.stringContaining('"a" was taken over by node "n2"'), { code: 'SWITCHBOARD_AGENT_LOST' });
  });

  it('ignores ids it does not serve and arguments that are not ids, and never echoes a holder that is not an id', () => {
    const { bus, port } = nodeBus();
    const a = bus.register('a');
    const lost: { holder: string }[] = [];
    bus.events.on('agent:lost', (e) => lost.push(e));
    port.claimLost!('nobody', 'n2');
    port.claimLost!(42 as unknown as string, 'n2');
    expect(a.alive).toBe(true);
    expect(lost).toEqual([]);
    port.claimLost!('a', 'n2"\nforged log line' as string);
    expect(lost).toEqual([expect.objectContaining({ holder: 'another node' })]);
  });

  it('does nothing once the bus is closed', async () => {
    const transport = new PortKeeper();
    const bus = new Orchestrator({ node: 'n1', transport });
    bus.register('a');
    await bus.close();
    const warn = vi.spyOn(process, 'emitWarning').mockImplementation(() => undefined);
    transport.port.claimLost!('a', 'n2');
    expect(warn).not.toHaveBeenCalled();
  });

  it('shows in the console feed as a red line naming the new holder', () => {
    const error = new BusError('DUPLICATE_AGENT', 'agent id "a" was taken over by node "n2"');
    expect(describeEvent['agent:lost']!({ agentId: 'a', holder: 'n2', error })).toMatchObject({ agents: ['a'], status: '✗ lost to node n2', tone: 'red', detail: error.message });
  });
});
