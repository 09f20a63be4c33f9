// Example: how you test your own agent workflow with agent-switchboard/testing.
// (This is the example docs/testing.md walks through. It lives under test/ so that vitest
// runs it with the rest of the suite.)
//
// The workflow: `research` asks `writer` who a piece is for, delegates the draft to it,
// then delegates publishing to `publisher`, which a human must approve. The research logic
// is the real code under test; writer and publisher are scripted stubs.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
// In your app: from 'agent-switchboard' and 'agent-switchboard/testing'.
import { defineContracts, isBusError, type Agent, type Orchestrator, type PolicyRule } from '../src/index.js';
import { closeBus, createTestBus, delay, fail, never, recordTranscript, runUntilIdle, stubAgent, type StubScript } from '../src/testing/index.js';

// ---- The app's code (normally imported from your src/) ----------------------------------

const contracts = defineContracts({
  clarify: { type: 'ask', input: z.object({ q: z.string() }), output: z.object({ audience: z.string() }) },
  draft: {
    type: 'delegate',
    input: z.object({ topic: z.string(), audience: z.string(), notes: z.array(z.string()) }),
    output: z.object({ title: z.string(), body: z.string() }),
  },
  publish: { type: 'delegate', input: z.object({ title: z.string(), body: z.string() }), output: z.object({ url: z.string() }) },
});
type App = typeof contracts;

/** The app's real policy: default deny, and a human approves every publication. */
const policies: PolicyRule[] = [
  { from: 'research', to: 'writer', allow: ['ask', 'delegate'], intents: ['clarify', 'draft'] },
  { from: 'research', to: 'publisher', allow: ['delegate'], intents: ['publish'], requireApproval: true, name: 'publishing needs an editor' },
];

/** Research notes for a topic: the agent's own (here trivial) logic. */
function collectNotes(topic: string): string[] {
  return [`${topic}: what it is`, `${topic}: why it matters`];
}

/**
 * The workflow under test. Asks the writer for the audience (falling back to a general
 * one if the writer does not answer in 5 s), has it draft, and has the draft published.
 */
async function researchTopic(research: Agent<App>, topic: string): Promise<{ audience: string; title: string; url: string }> {
  let audience = 'general readers';
  try {
    ({ audience } = await research.ask('writer', 'clarify', { q: `Who is the ${topic} piece for?` }, { timeoutMs: 5_000 }));
  } catch (error) {
    if (!isBusError(error) || error.code !== 'TIMEOUT') throw error;
  }
  const draft = await research.delegate('writer', 'draft', { topic, audience, notes: collectNotes(topic) }, { timeoutMs: 60_000 });
  const { url } = await research.delegate('publisher', 'publish', draft, { timeoutMs: 3_600_000 });
  return { audience, title: draft.title, url };
}

// ---- The tests ---------------------------------------------------------------------------

let bus: Orchestrator<App>;
afterEach(async () => {
  await closeBus(bus, vi); // advances fake timers if a handler holds close() up
  vi.useRealTimers();
});

/** A fresh bus with the app's real policy, the research agent, and stub writer and publisher. */
function setup(writerScript: StubScript<App> = {}) {
  bus = createTestBus({ contracts, policies });
  const transcript = recordTranscript(bus);
  const writer = stubAgent(bus, 'writer', {
    clarify: { audience: 'platform engineers' },
    draft: ({ topic, audience }) => ({ title: `${topic}, for ${audience}`, body: '…' }),
    ...writerScript,
  });
  const publisher = stubAgent(bus, 'publisher', { publish: ({ title }) => ({ url: `https://blog.example/${title.split(',')[0]!.toLowerCase()}` }) });
  const research = bus.register('research');
  return { transcript, writer, publisher, research };
}

describe('researchTopic()', () => {
  it('clarifies, drafts, and publishes once an editor approves', async () => {
    const { transcript, writer, publisher, research } = setup();
    const run = researchTopic(research, 'WebAssembly');

    // Everything up to the approval happens at once; then the workflow waits for a human.
    await runUntilIdle(bus);
    const [held] = bus.approvals.list();
    expect(held).toMatchObject({ envelope: { from: 'research', to: 'publisher', intent: 'publish' }, rule: 'publishing needs an editor' });
    expect(publisher.calls).toEqual([]);

    bus.approvals.approve(held!.id, { by: 'editor' });
    await expect(run).resolves.toEqual({
      audience: 'platform engineers',
      title: 'WebAssembly, for platform engineers',
      url: 'https://blog.example/webassembly',
    });

    // What the stubs were given is what the research logic computed.
    expect(writer.callsFor('draft')[0]!.payload).toEqual({
      topic: 'WebAssembly',
      audience: 'platform engineers',
      notes: ['WebAssembly: what it is', 'WebAssembly: why it matters'],
    });
    // The workflow never tried anything the policy refuses.
    expect(transcript.filter({ event: 'denied' })).toEqual([]);
    // The whole conversation, stable from run to run (ids msg-1, msg-2, …).
    expect(transcript.text({ event: ['delivered', 'held', 'approved', 'replied'] }, { ids: true })).toMatchInlineSnapshot(`
      "msg-1 research → writer ask clarify delivered
      msg-2 writer → research reply clarify replied
      msg-3 research → writer delegate draft delivered
      msg-4 writer → research reply draft replied
      msg-5 research → publisher delegate publish held
      msg-5 research → publisher delegate publish approved by editor
      msg-5 research → publisher delegate publish delivered
      msg-6 publisher → research reply publish replied"
    `);
  });

  it('falls back to a general audience when the writer does not answer in 5 s', async () => {
    vi.useFakeTimers();
    const { transcript, writer, research } = setup({ clarify: never() });
    const run = researchTopic(research, 'Rust');

    await vi.advanceTimersByTimeAsync(4_999);
    expect(writer.callsFor('draft')).toEqual([]); // still waiting for the answer
    await vi.advanceTimersByTimeAsync(1);
    await runUntilIdle(bus);
    expect(writer.callsFor('draft')[0]!.payload.audience).toBe('general readers');

    bus.approvals.approve(bus.approvals.list()[0]!.id);
    await expect(run).resolves.toMatchObject({ audience: 'general readers' });
    expect(transcript.lines({ intent: 'clarify' })).toEqual([
      'research → writer ask clarify sent',
      'research → writer ask clarify delivered',
      'research → writer ask clarify expired TIMEOUT',
    ]);
  });

  it('waits for a slow writer as long as its 60 s deadline allows', async () => {
    vi.useFakeTimers();
    const { research } = setup({ draft: delay(59_000, { title: 'slow but fine', body: '…' }) });
    const run = researchTopic(research, 'Go');
    await vi.advanceTimersByTimeAsync(59_000);
    expect(bus.approvals.list()[0]?.envelope.payload).toEqual({ title: 'slow but fine', body: '…' });
    bus.approvals.approve(bus.approvals.list()[0]!.id);
    await expect(run).resolves.toMatchObject({ title: 'slow but fine' });
  });

  it('fails with APPROVAL_REJECTED, and publishes nothing, when the editor says no', async () => {
    const { transcript, publisher, research } = setup();
    const run = researchTopic(research, 'Zig');
    const outcome = run.catch((error: unknown) => error);
    await runUntilIdle(bus);
    bus.approvals.reject(bus.approvals.list()[0]!.id, { by: 'editor', reason: 'off-brand' });
    expect(await outcome).toMatchObject({ code: 'APPROVAL_REJECTED', reason: 'off-brand' });
    expect(publisher.calls).toEqual([]);
    expect(transcript.lines({ to: 'publisher' })).toEqual([
      'research → publisher delegate publish sent',
      'research → publisher delegate publish held',
      'research → publisher delegate publish rejected by editor',
      'research → publisher delegate publish failed APPROVAL_REJECTED',
    ]);
  });

  it('fails with APPROVAL_EXPIRED when nobody decides within the hour', async () => {
    vi.useFakeTimers();
    const { research } = setup();
    const outcome = researchTopic(research, 'Elixir').catch((error: unknown) => error);
    await runUntilIdle(bus);
    expect(bus.approvals.list()).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(3_600_000);
    expect(await outcome).toMatchObject({ code: 'APPROVAL_EXPIRED' });
    expect(bus.approvals.list()).toEqual([]);
  });

  it('surfaces a writer failure as HANDLER_FAILED and stops there', async () => {
    const { transcript, publisher, research } = setup({ draft: fail('model overloaded') });
    const error = await researchTopic(research, 'OCaml').catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'HANDLER_FAILED', message: expect.stringContaining('model overloaded') });
    expect(publisher.calls).toEqual([]);
    expect(transcript.last()).toMatchObject({ event: 'failed', to: 'writer', intent: 'draft', code: 'HANDLER_FAILED' });
  });
});
