// agent-switchboard/otel: spans and metrics checked with the SDK's in-memory exporters,
// first calling the Telemetry port by hand, then through a real bus's `telemetry` option.
import { context, metrics, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { MeterProvider, MetricReader, type DataPoint, type Histogram } from '@opentelemetry/sdk-metrics';
import { InMemorySpanExporter, SimpleSpanProcessor, TracerProvider, type ReadableSpan } from '@opentelemetry/sdk-trace';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Orchestrator, ruleLabel, SqliteAuditLog, type AuditLog, type Envelope, type HandlerContext, type OrchestratorOptions } from '../src/index.js';
import { formatTraceparent, METRIC, NOOP_TELEMETRY, openTelemetry, parseTraceparent, traceparentOf, type RunToken, type SendDraft, type SendToken, type Telemetry } from '../src/otel/index.js';
import { closeBuses, makeBus, rejectionOf } from './support/helpers.js';
import { LoopbackNetwork, recordingResponder } from './support/loopback.js';

class TestReader extends MetricReader {
  protected override async onForceFlush(): Promise<void> {}
  protected override async onShutdown(): Promise<void> {}
}

let exporter: InMemorySpanExporter;
let tracerProvider: TracerProvider;
let reader: TestReader;
let meterProvider: MeterProvider;
let clock = 0;
const contextManager = new AsyncLocalStorageContextManager();

beforeAll(() => {
  context.setGlobalContextManager(contextManager.enable());
});
afterAll(() => {
  context.disable();
});

function setup(): Telemetry {
  exporter = new InMemorySpanExporter();
  tracerProvider = new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter })] });
  reader = new TestReader();
  meterProvider = new MeterProvider({ readers: [reader] });
  clock = 1_000;
  return openTelemetry({ tracerProvider, meterProvider, now: () => clock });
}

afterEach(async () => {
  await closeBuses();
  trace.disable();
  metrics.disable();
  await tracerProvider?.shutdown();
  await meterProvider?.shutdown();
});

function spanNamed(name: string): ReadableSpan {
  const found = exporter.getFinishedSpans().filter((s) => s.name === name);
  expect(found, `one span named "${name}"`).toHaveLength(1);
  return found[0]!;
}

const parentOf = (span: ReadableSpan) => span.parentSpanContext?.spanId;

async function points(name: string): Promise<DataPoint<unknown>[]> {
  const { resourceMetrics } = await reader.collect();
  const metric = resourceMetrics.scopeMetrics.flatMap((s) => s.metrics).find((m) => m.descriptor.name === name);
  return (metric?.dataPoints ?? []) as DataPoint<unknown>[];
}

function envelope(draft: SendDraft & { conversationId: string }, traceparent: string | undefined, extra: Partial<Envelope> = {}) {
  return { id: draft.id, type: draft.type, from: draft.from, to: draft.to, intent: draft.intent, payload: null, ts: 0, conversationId: draft.conversationId, priority: 'normal' as const, depth: draft.depth ?? 0, traceparent, ...extra };
}

describe('openTelemetry()', () => {
  it('is the no-op telemetry when no SDK is registered, and allocates nothing per send', () => {
    const telemetry = openTelemetry();
    expect(telemetry).toBe(NOOP_TELEMETRY);
    expect(telemetry.enabled).toBe(false);
    const draft: SendDraft = { id: 'm1', type: 'ask', from: 'a', to: 'b', intent: 'x' };
    expect(telemetry.sendStarted(draft)).toBe(telemetry.sendStarted(draft));
    expect(telemetry.sendStarted(draft).traceparent).toBeUndefined();
    expect(telemetry.handlerStarted(envelope({ ...draft, conversationId: 'c' }, undefined), (run) => run)).toBe(
      telemetry.handlerStarted(envelope({ ...draft, conversationId: 'c' }, undefined), (run) => run),
    );
  });

  it('uses the global providers once an SDK registered them', async () => {
    setup();
    trace.setGlobalTracerProvider(tracerProvider);
    const telemetry = openTelemetry();
    expect(telemetry).not.toBe(NOOP_TELEMETRY);
    telemetry.sendSettled(telemetry.sendStarted({ id: 'm1', type: 'notify', from: 'a', to: '*', intent: 'x' }));
    expect(exporter.getFinishedSpans().map((s) => s.name)).toEqual(['notify *']);
  });

  it('turns an ask chain A→B→C into one trace: each run a child of its send, each chained send a child of its run', () => {
    const telemetry = setup();
    const ab = { id: 'm1', type: 'ask' as const, from: 'a', to: 'b', intent: 'plan', conversationId: 'conv-1', depth: 0 };
    const bc = { id: 'm2', type: 'ask' as const, from: 'b', to: 'c', intent: 'compute', conversationId: 'conv-1', depth: 1 };
    const tAB = telemetry.sendStarted(ab);
    telemetry.sendCommitted(tAB, { decision: 'allowed', rule: 'a -> b', policyVersion: 3 });
    telemetry.handlerStarted(envelope(ab, tAB.traceparent), (runB) => {
      const tBC = telemetry.sendStarted(bc, runB);
      telemetry.sendCommitted(tBC, { decision: 'allowed', policyVersion: 3 });
      telemetry.handlerStarted(envelope(bc, tBC.traceparent, { causationId: 'm1' }), (runC) => telemetry.handlerEnded(runC));
      telemetry.sendSettled(tBC);
      telemetry.handlerEnded(runB);
    });
    telemetry.sendSettled(tAB);

    const sendAB = spanNamed('ask b');
    const runB = spanNamed('process b');
    const sendBC = spanNamed('ask c');
    const runC = spanNamed('process c');
    expect(new Set([sendAB, runB, sendBC, runC].map((s) => s.spanContext().traceId)).size).toBe(1);
    expect(parentOf(sendAB)).toBeUndefined();
    expect(parentOf(runB)).toBe(sendAB.spanContext().spanId);
    expect(parentOf(sendBC)).toBe(runB.spanContext().spanId);
    expect(parentOf(runC)).toBe(sendBC.spanContext().spanId);
    expect([sendAB.kind, runB.kind, sendBC.kind, runC.kind]).toEqual([SpanKind.PRODUCER, SpanKind.CONSUMER, SpanKind.PRODUCER, SpanKind.CONSUMER]);
    expect(sendAB.attributes).toMatchObject({
      'messaging.system': 'agent-switchboard',
      'messaging.operation.type': 'send',
      'messaging.operation.name': 'ask',
      'messaging.destination.name': 'b',
      'messaging.message.id': 'm1',
      'messaging.message.conversation_id': 'conv-1',
      'switchboard.message.from': 'a',
      'switchboard.message.to': 'b',
      'switchboard.message.intent': 'plan',
      'switchboard.policy.decision': 'allowed',
      'switchboard.policy.rule': 'a -> b',
      'switchboard.policy.version': 3,
    });
    expect(runC.attributes).toMatchObject({
      'messaging.operation.type': 'process',
      'messaging.message.id': 'm2',
      'switchboard.agent.id': 'c',
      'switchboard.message.causation_id': 'm1',
      'switchboard.message.depth': 1,
    });
    expect(sendAB.status.code).toBe(SpanStatusCode.UNSET);
  });

  it("joins a send made inside the app's own active span", () => {
    const telemetry = setup();
    const appSpan = tracerProvider.getTracer('app').startSpan('checkout');
    context.with(trace.setSpan(ROOT_CONTEXT, appSpan), () => {
      telemetry.sendSettled(telemetry.sendStarted({ id: 'm1', type: 'notify', from: 'a', to: '*', intent: 'paid' }));
    });
    appSpan.end();
    const send = spanNamed('notify *');
    expect(send.spanContext().traceId).toBe(appSpan.spanContext().traceId);
    expect(parentOf(send)).toBe(appSpan.spanContext().spanId);
  });

  it("runs the handler inside its run's span, so the handler's own spans and sends join the trace", async () => {
    const telemetry = setup();
    const draft = { id: 'm1', type: 'ask' as const, from: 'a', to: 'b', intent: 'x', conversationId: 'c' };
    const t = telemetry.sendStarted(draft);
    await telemetry.handlerStarted(envelope(draft, t.traceparent), async (run) => {
      await Promise.resolve();
      const inner = tracerProvider.getTracer('app').startSpan('db query');
      inner.end();
      telemetry.handlerEnded(run);
    });
    telemetry.sendSettled(t);
    expect(parentOf(spanNamed('db query'))).toBe(spanNamed('process b').spanContext().spanId);
  });

  it("marks a refusal's span with its code and rule, and counts refusals by code", async () => {
    const telemetry = setup();
    const t = telemetry.sendStarted({ id: 'm1', type: 'delegate', from: 'a', to: 'vault', intent: 'open' });
    telemetry.sendRefused(t, 'POLICY_DENIED', { rule: '* -> vault deny delegate' });
    telemetry.sendSettled(t); // already ended: ignored
    telemetry.sendRefused(telemetry.sendStarted({ id: 'm2', type: 'ask', from: 'a', to: 'b', intent: 'x' }), 'RATE_LIMITED');
    const span = spanNamed('delegate vault');
    expect(span.status).toEqual({ code: SpanStatusCode.ERROR, message: 'POLICY_DENIED' });
    expect(span.attributes).toMatchObject({ 'error.type': 'POLICY_DENIED', 'switchboard.error.code': 'POLICY_DENIED', 'switchboard.policy.decision': 'denied', 'switchboard.policy.rule': '* -> vault deny delegate' });
    expect(exporter.getFinishedSpans()).toHaveLength(2);
    const refused = await points(METRIC.refused);
    expect(refused.map((p) => [p.attributes['error.type'], p.value])).toEqual([
      ['POLICY_DENIED', 1],
      ['RATE_LIMITED', 1],
    ]);
  });

  it('records a notify recipient refused as an event and a refusal, without ending the send', async () => {
    const telemetry = setup();
    const t = telemetry.sendStarted({ id: 'n1', type: 'notify', from: 'a', to: '*', intent: 'alert' });
    telemetry.sendRefused(t, 'POLICY_DENIED', { recipient: 'marketing' });
    telemetry.sendCommitted(t, { decision: 'allowed' });
    telemetry.sendSettled(t);
    const span = spanNamed('notify *');
    expect(span.status.code).toBe(SpanStatusCode.UNSET);
    expect(span.events.map((e) => [e.name, e.attributes?.['switchboard.message.to']])).toEqual([
      ['recipient refused', 'marketing'],
      ['committed', undefined],
    ]);
    expect((await points(METRIC.refused))[0]!.value).toBe(1);
  });

  it('counts sends, times asks and commits, and reports mailbox depth and held approvals', async () => {
    const telemetry = setup();
    const ask = telemetry.sendStarted({ id: 'm1', type: 'ask', from: 'a', to: 'b', intent: 'x' });
    telemetry.sendCommitted(ask, { decision: 'allowed' });
    clock += 250;
    telemetry.sendSettled(ask);
    const late = telemetry.sendStarted({ id: 'm2', type: 'ask', from: 'a', to: 'b', intent: 'x' });
    telemetry.sendCommitted(late, { decision: 'pending' });
    clock += 1_000;
    telemetry.sendSettled(late, 'TIMEOUT');
    telemetry.commitTimed(4, 12);
    telemetry.mailboxDepth('b', 3);
    telemetry.mailboxDepth('gone', 1);
    telemetry.agentRemoved('gone');
    telemetry.approvalsHeld(2);

    expect((await points(METRIC.sent)).map((p) => [p.attributes['switchboard.policy.decision'], p.value])).toEqual([
      ['allowed', 1],
      ['pending', 1],
    ]);
    expect((await points(METRIC.failed)).map((p) => [p.attributes['error.type'], p.value])).toEqual([['TIMEOUT', 1]]);
    const durations = (await points(METRIC.requestDuration)) as DataPoint<Histogram>[];
    expect(durations.map((p) => [p.attributes['error.type'], p.value.count, p.value.sum])).toEqual([
      [undefined, 1, 0.25],
      ['TIMEOUT', 1, 1],
    ]);
    const commits = (await points(METRIC.commitDuration)) as DataPoint<Histogram>[];
    expect(commits[0]!.value).toMatchObject({ count: 1, sum: 0.004 });
    expect((await points(METRIC.auditRows))[0]!.value).toBe(12);
    expect((await points(METRIC.mailboxDepth)).map((p) => [p.attributes['switchboard.agent.id'], p.value])).toEqual([['b', 3]]);
    expect((await points(METRIC.approvalsHeld))[0]!.value).toBe(2);
  });
});

describe('traceparent', () => {
  it('round-trips a span context and refuses malformed values', () => {
    const sc = { traceId: '0af7651916cd43dd8448eb211c80319c', spanId: 'b7ad6b7169203331', traceFlags: 1 };
    const header = formatTraceparent(sc)!;
    expect(header).toBe('00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01');
    expect(parseTraceparent(header)).toEqual({ ...sc, isRemote: true });
    for (const bad of [undefined, 42, '', 'garbage', header.toUpperCase(), '00-00000000000000000000000000000000-b7ad6b7169203331-01', `${header}-extra`]) {
      expect(parseTraceparent(bad)).toBeUndefined();
    }
  });
});


/** A bus with the test's OpenTelemetry telemetry and the given rules. */
function tracedBus(telemetry: Telemetry, options: OrchestratorOptions = {}): Orchestrator {
  return makeBus({ telemetry, ...options });
}

const sum = (ps: DataPoint<unknown>[]) => ps.reduce((n, p) => n + (p.value as number), 0);

describe('the telemetry option: a bus traces itself', () => {
  it('turns an ask chain A→B→C into one trace: PRODUCER per send, CONSUMER per run, with the right parents and attributes', async () => {
    const telemetry = setup();
    const bus = tracedBus(telemetry, {
      policies: [
        { from: 'a', to: 'b', allow: ['ask'] },
        { from: 'b', to: 'c', allow: ['ask'] },
      ],
    });
    bus.register('c', { handlers: { compute: (n) => (n as number) * 2 } });
    bus.register('b', { handlers: { plan: async (n, ctx) => ({ doubled: await ctx.ask('c', 'compute', n) }) } });
    const a = bus.register('a');
    expect(await a.ask('b', 'plan', 21)).toEqual({ doubled: 42 });
    await bus.onIdle();

    const sendAB = spanNamed('ask b');
    const runB = spanNamed('process b');
    const sendBC = spanNamed('ask c');
    const runC = spanNamed('process c');
    expect(exporter.getFinishedSpans()).toHaveLength(4);
    expect(new Set([sendAB, runB, sendBC, runC].map((s) => s.spanContext().traceId)).size).toBe(1);
    expect(parentOf(sendAB)).toBeUndefined();
    expect(parentOf(runB)).toBe(sendAB.spanContext().spanId);
    expect(parentOf(sendBC)).toBe(runB.spanContext().spanId);
    expect(parentOf(runC)).toBe(sendBC.spanContext().spanId);
    expect([sendAB.kind, runB.kind, sendBC.kind, runC.kind]).toEqual([SpanKind.PRODUCER, SpanKind.CONSUMER, SpanKind.PRODUCER, SpanKind.CONSUMER]);
    const conversation = sendAB.attributes['messaging.message.conversation_id'];
    expect(typeof conversation).toBe('string');
    expect(sendAB.attributes).toMatchObject({
      'messaging.system': 'agent-switchboard',
      'messaging.operation.type': 'send',
      'messaging.operation.name': 'ask',
      'messaging.destination.name': 'b',
      'switchboard.message.from': 'a',
      'switchboard.message.to': 'b',
      'switchboard.message.intent': 'plan',
      'switchboard.message.depth': 0,
      'switchboard.policy.decision': 'allowed',
      'switchboard.policy.rule': ruleLabel(bus.policies()[0]!),
      'switchboard.policy.version': bus.policyVersion,
    });
    expect(runB.attributes).toMatchObject({ 'messaging.operation.type': 'process', 'messaging.message.id': sendAB.attributes['messaging.message.id'], 'switchboard.agent.id': 'b' });
    expect(sendBC.attributes).toMatchObject({ 'messaging.message.conversation_id': conversation, 'switchboard.message.from': 'b', 'switchboard.message.depth': 1 });
    expect(runC.attributes).toMatchObject({ 'switchboard.agent.id': 'c', 'switchboard.message.causation_id': sendAB.attributes['messaging.message.id'], 'messaging.message.conversation_id': conversation });
    for (const span of [sendAB, runB, sendBC, runC]) expect(span.status.code).toBe(SpanStatusCode.UNSET);
    // Each send ends with its reply: after its run.
    expect(hrtimeMs(sendAB.endTime)).toBeGreaterThanOrEqual(hrtimeMs(runB.startTime));
  });

  it("gives the handler the send's traceparent on its envelope, and none without telemetry", async () => {
    const telemetry = setup();
    const seen: Envelope[] = [];
    const traced = tracedBus(telemetry);
    traced.register('b', { handlers: { x: (_p, ctx) => void seen.push(ctx.message) } });
    await traced.register('a').ask('b', 'x', {});
    const plain = makeBus();
    plain.register('b', { handlers: { x: (_p, ctx) => void seen.push(ctx.message) } });
    await plain.register('a').ask('b', 'x', {});

    const send = spanNamed('ask b');
    expect(traceparentOf(seen[0]!)).toBe(formatTraceparent(send.spanContext()));
    expect(Object.isFrozen(seen[0])).toBe(true);
    expect(Object.hasOwn(seen[1]!, 'traceparent')).toBe(false);
  });

  it("joins a send made inside the app's own active span, and makes the handler's own spans children of its run", async () => {
    const telemetry = setup();
    const bus = tracedBus(telemetry);
    const app = tracerProvider.getTracer('app');
    bus.register('b', {
      handlers: {
        x: async () => {
          await Promise.resolve();
          app.startSpan('llm call').end(); // no context passed: the active one, the run's
          return 'ok';
        },
      },
    });
    const a = bus.register('a');
    const checkout = app.startSpan('checkout');
    await context.with(trace.setSpan(context.active(), checkout), () => a.ask('b', 'x', {}));
    checkout.end();

    const send = spanNamed('ask b');
    expect(send.spanContext().traceId).toBe(checkout.spanContext().traceId);
    expect(parentOf(send)).toBe(checkout.spanContext().spanId);
    expect(parentOf(spanNamed('llm call'))).toBe(spanNamed('process b').spanContext().spanId);
  });

  it("marks a refusal's span with its code and rule, a notify recipient's refusal as an event, and counts refusals by code", async () => {
    const telemetry = setup();
    const bus = tracedBus(telemetry, {
      policies: [
        { from: 'a', to: 'b', allow: ['ask', 'notify'] },
        { from: '*', to: 'vault', deny: ['ask', 'notify'] },
      ],
      limits: { rate: { perSecond: 1, burst: 2 } },
    });
    bus.register('b', { handlers: { x: () => 'ok', news: () => undefined } });
    bus.register('vault', { handlers: { open: () => 'gold', news: () => undefined } });
    const a = bus.register('a');
    expect((await rejectionOf(a.ask('vault', 'open', {}))).code).toBe('POLICY_DENIED');
    const receipt = await a.notify('news', {});
    expect(receipt.denied).toEqual(['vault']);
    expect((await rejectionOf(a.ask('b', 'x', {}))).code).toBe('RATE_LIMITED');
    await bus.onIdle();

    const denied = spanNamed('ask vault');
    expect(denied.kind).toBe(SpanKind.PRODUCER);
    expect(denied.status).toEqual({ code: SpanStatusCode.ERROR, message: 'POLICY_DENIED' });
    expect(denied.attributes).toMatchObject({
      'error.type': 'POLICY_DENIED',
      'switchboard.error.code': 'POLICY_DENIED',
      'switchboard.policy.decision': 'denied',
      'switchboard.policy.rule': ruleLabel(bus.policies()[1]!),
      'switchboard.message.intent': 'open',
    });
    const notify = spanNamed('notify *');
    expect(notify.status.code).toBe(SpanStatusCode.UNSET);
    expect(notify.events.map((e) => [e.name, e.attributes?.['switchboard.message.to'], e.attributes?.['switchboard.error.code']])).toEqual([
      ['recipient refused', 'vault', 'POLICY_DENIED'],
      ['committed', undefined, undefined],
    ]);
    expect(parentOf(spanNamed('process b'))).toBe(notify.spanContext().spanId);
    expect(spanNamed('ask b').status).toEqual({ code: SpanStatusCode.ERROR, message: 'RATE_LIMITED' });
    expect((await points(METRIC.refused)).map((p) => [p.attributes['messaging.operation.name'], p.attributes['error.type'], p.value])).toEqual([
      ['ask', 'POLICY_DENIED', 1],
      ['notify', 'POLICY_DENIED', 1],
      ['ask', 'RATE_LIMITED', 1],
    ]);
  });

  it('counts sends and failures, times asks and commits, and reports mailbox depth', async () => {
    const telemetry = setup();
    const bus = tracedBus(telemetry);
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    bus.register('b', { handlers: { x: () => 'ok', slow: () => gate.then(() => 'late'), boom: () => { throw new Error('no'); } } });
    const a = bus.register('a');
    await a.ask('b', 'x', {});
    expect((await rejectionOf(a.ask('b', 'boom', {}))).code).toBe('HANDLER_FAILED');
    const slow = [a.ask('b', 'slow', 1), a.ask('b', 'slow', 2), a.ask('b', 'slow', 3)];
    await expect.poll(async () => (await points(METRIC.mailboxDepth)).find((p) => p.attributes['switchboard.agent.id'] === 'b')?.value).toBe(3);
    release();
    await Promise.all(slow);
    await bus.onIdle();

    expect(sum(await points(METRIC.sent))).toBe(5);
    expect((await points(METRIC.failed)).map((p) => [p.attributes['error.type'], p.value])).toEqual([['HANDLER_FAILED', 1]]);
    const asks = (await points(METRIC.requestDuration)) as DataPoint<Histogram>[];
    expect(asks.map((p) => [p.attributes['error.type'], p.value.count])).toEqual([
      [undefined, 4],
      ['HANDLER_FAILED', 1],
    ]);
    const commits = (await points(METRIC.commitDuration)) as DataPoint<Histogram>[];
    expect(commits[0]!.value.count).toBeGreaterThan(0);
    // Five attempts and their five replies, at least: every row the log took is counted.
    expect((await points(METRIC.auditRows))[0]!.value).toBeGreaterThanOrEqual(10);
    expect((await points(METRIC.mailboxDepth)).find((p) => p.attributes['switchboard.agent.id'] === 'b')?.value).toBe(0);
    const failedRun = exporter.getFinishedSpans().find((s) => s.name === 'process b' && s.status.code === SpanStatusCode.ERROR)!;
    expect(failedRun.attributes).toMatchObject({ 'error.type': 'HANDLER_FAILED', 'switchboard.message.intent': 'boom' });
  });

  it("records TIMEOUT, as the audit log does, on the run of a handler that ends because its ctx.signal aborted at the deadline", async () => {
    const telemetry = setup();
    const bus = tracedBus(telemetry);
    let ended!: () => void;
    const handlerDone = new Promise<void>((r) => (ended = r));
    bus.register('b', {
      handlers: {
        wait: (_p: unknown, ctx: HandlerContext) =>
          new Promise((_resolve, reject) =>
            ctx.signal.addEventListener('abort', () => {
              reject(new Error('gave up: the signal aborted'));
              ended();
            }),
          ),
      },
    });
    const a = bus.register('a');
    expect((await rejectionOf(a.ask('b', 'wait', {}, { timeoutMs: 20 }))).code).toBe('TIMEOUT');
    await handlerDone;
    await bus.onIdle();
    await expect.poll(() => exporter.getFinishedSpans().some((s) => s.name === 'process b')).toBe(true);
    const run = spanNamed('process b');
    expect(run.status.code).toBe(SpanStatusCode.ERROR);
    expect(run.attributes['error.type']).toBe('TIMEOUT');
    expect(bus.getMessageLog({ agentId: 'a' }).find((e) => e.intent === 'wait')).toMatchObject({ outcome: 'expired', code: 'TIMEOUT' });
  });

  it('traces a held send as pending, a rejected one with APPROVAL_REJECTED, an approved one as delivered; the gauge follows the queue', async () => {
    const telemetry = setup();
    const bus = tracedBus(telemetry, { policies: [{ from: 'buyer', to: 'payment', allow: ['delegate'], requireApproval: true }] });
    bus.register('payment', { handlers: { pay: () => 'paid' } });
    const buyer = bus.register('buyer');
    const first = buyer.delegate('payment', 'pay', { amount: 5 });
    const second = buyer.delegate('payment', 'pay', { amount: 6 });
    await expect.poll(() => bus.approvals.list().length).toBe(2);
    expect((await points(METRIC.approvalsHeld))[0]!.value).toBe(2);
    const [h1, h2] = bus.approvals.list();
    bus.approvals.reject(h1!.id, { reason: 'no' });
    expect((await rejectionOf(first)).code).toBe('APPROVAL_REJECTED');
    expect((await points(METRIC.approvalsHeld))[0]!.value).toBe(1);
    bus.approvals.approve(h2!.id);
    expect(await second).toBe('paid');
    expect((await points(METRIC.approvalsHeld))[0]!.value).toBe(0);
    await bus.onIdle();

    const [rejected, approved] = exporter.getFinishedSpans().filter((s) => s.name === 'delegate payment').sort((x, y) => String(x.attributes['messaging.message.id']).localeCompare(String(y.attributes['messaging.message.id'])));
    expect(rejected!.attributes).toMatchObject({ 'switchboard.policy.decision': 'pending', 'switchboard.policy.rule': ruleLabel(bus.policies()[0]!), 'error.type': 'APPROVAL_REJECTED' });
    expect(rejected!.events.map((e) => e.name)).toEqual(['approval requested']);
    expect(approved!.status.code).toBe(SpanStatusCode.UNSET);
    expect(approved!.events.map((e) => e.name)).toEqual(['approval requested', 'committed']);
    expect(parentOf(spanNamed('process payment'))).toBe(approved!.spanContext().spanId);
    expect((await points(METRIC.refused)).map((p) => [p.attributes['error.type'], p.value])).toEqual([['APPROVAL_REJECTED', 1]]);
    expect((await points(METRIC.sent)).map((p) => [p.attributes['switchboard.policy.decision'], p.value])).toEqual([['pending', 1]]);
  });
});

describe('the telemetry option: edges', () => {
  it('refuses with AUDIT_UNAVAILABLE the sends whose rows the log would not take, and settles with it an ask whose reply row failed', async () => {
    const telemetry = setup();
    const inner = new SqliteAuditLog({ path: ':memory:' });
    let broken: 'all' | 'replies' | 'none' = 'all';
    const faulty: AuditLog = {
      append: (records) => {
        if (broken === 'all' || (broken === 'replies' && records.some((r) => r.kind === 'attempt' && r.type === 'reply'))) throw new Error('SQLITE_FULL');
        inner.append(records);
      },
      query: (q) => inner.query(q),
      verify: () => inner.verify(),
      close: () => inner.close(),
    };
    const bus = tracedBus(telemetry, { audit: faulty, limits: { rate: false } });
    bus.register('b', { handlers: { x: () => 'ok', news: () => undefined } });
    const a = bus.register('a');
    expect((await rejectionOf(a.ask('b', 'x', {}))).code).toBe('AUDIT_UNAVAILABLE');
    expect((await rejectionOf(a.notify('news', {}))).code).toBe('AUDIT_UNAVAILABLE');
    broken = 'replies';
    expect((await rejectionOf(a.ask('b', 'x', {}))).code).toBe('AUDIT_UNAVAILABLE');
    broken = 'none';
    await bus.onIdle();

    const asks = exporter.getFinishedSpans().filter((s) => s.name === 'ask b');
    expect(asks.map((s) => [s.attributes['error.type'], s.events.map((e) => e.name).join()])).toEqual([
      ['AUDIT_UNAVAILABLE', ''],
      ['AUDIT_UNAVAILABLE', 'committed'],
    ]);
    expect(spanNamed('notify *').status).toEqual({ code: SpanStatusCode.ERROR, message: 'AUDIT_UNAVAILABLE' });
    expect((await points(METRIC.refused)).map((p) => [p.attributes['messaging.operation.name'], p.attributes['error.type'], p.value])).toEqual([
      ['ask', 'AUDIT_UNAVAILABLE', 1],
      ['notify', 'AUDIT_UNAVAILABLE', 1],
    ]);
    expect((await points(METRIC.failed)).map((p) => [p.attributes['error.type'], p.value])).toEqual([['AUDIT_UNAVAILABLE', 1]]);
  });

  it("traces an explicit reply as a send from the run that received the ask", async () => {
    const telemetry = setup();
    const bus = tracedBus(telemetry);
    let b!: ReturnType<Orchestrator['register']>;
    b = bus.register('b', { handlers: { x: (_p, ctx) => void b.reply(ctx.message.id, 'by hand') } });
    expect(await bus.register('a').ask('b', 'x', {})).toBe('by hand');
    await bus.onIdle();
    const reply = spanNamed('reply a');
    expect(reply.kind).toBe(SpanKind.PRODUCER);
    expect(parentOf(reply)).toBe(spanNamed('process b').spanContext().spanId);
    expect(reply.attributes).toMatchObject({ 'messaging.operation.name': 'reply', 'switchboard.message.from': 'b', 'switchboard.message.to': 'a' });
    expect(reply.events.map((e) => e.name)).toEqual(['committed']);
  });
});

describe('the telemetry option across nodes', () => {
  it('makes a chain across two nodes one trace: the run on the other node is a child of the send here, through the carried traceparent', async () => {
    const telemetry = setup();
    const net = new LoopbackNetwork();
    const t1 = net.transport();
    const n1 = makeBus({ node: 'n1', transport: t1, telemetry });
    const n2 = makeBus({ node: 'n2', transport: net.transport(), telemetry });
    n2.register('c', { handlers: { compute: (n) => (n as number) * 2 } });
    n2.register('b', { handlers: { plan: (n, ctx) => ctx.ask('c', 'compute', n) } });
    const a = n1.register('a');
    await Promise.all([n1.ready(), n2.ready()]);
    expect(await a.ask('b', 'plan', 21)).toBe(42);
    await n2.onIdle();

    const sendAB = spanNamed('ask b');
    expect(t1.sent[0]!.traceparent).toBe(formatTraceparent(sendAB.spanContext()));
    const runB = spanNamed('process b');
    const runC = spanNamed('process c');
    expect(parentOf(runB)).toBe(sendAB.spanContext().spanId);
    expect(parentOf(spanNamed('ask c'))).toBe(runB.spanContext().spanId);
    expect(new Set([sendAB, runB, runC].map((s) => s.spanContext().traceId)).size).toBe(1);
    expect(sendAB.events.map((e) => e.name)).toEqual(['committed']);
    expect(sendAB.status.code).toBe(SpanStatusCode.UNSET);
  });

  it('settles a send that left for another node with the code that node answered', async () => {
    const telemetry = setup();
    const net = new LoopbackNetwork();
    const n1 = makeBus({ node: 'n1', transport: net.transport(), telemetry });
    const n2 = makeBus({ node: 'n2', transport: net.transport(), telemetry, policies: [] });
    n2.register('b', { handlers: { x: () => 'never' } });
    const a = n1.register('a');
    await Promise.all([n1.ready(), n2.ready()]);
    expect((await rejectionOf(a.ask('b', 'x', {}))).code).toBe('POLICY_DENIED');
    const denied = spanNamed('ask b');
    expect(denied.attributes['error.type']).toBe('POLICY_DENIED');
    expect((await points(METRIC.failed)).map((p) => [p.attributes['error.type'], p.value])).toEqual([['POLICY_DENIED', 1]]);
  });

  it("puts an inbound message's traceparent on the envelope only when well-formed", async () => {
    const telemetry = setup();
    const net = new LoopbackNetwork();
    const t1 = net.transport();
    makeBus({ node: 'n1', transport: t1, telemetry });
    const n2 = makeBus({ node: 'n2', transport: net.transport(), telemetry });
    const seen: Envelope[] = [];
    n2.register('b', { handlers: { x: (_p, ctx) => void seen.push(ctx.message) } });
    await n2.ready();
    const good = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
    for (const [id, traceparent] of [['m1', good], ['m2', 'x'.repeat(100_000)], ['m3', { toString: () => good }]] as const) {
      const responder = recordingResponder();
      t1.inject('n2', { id, type: 'notify', from: 'a', fromNode: 'n1', to: 'b', intent: 'x', payloadJson: '{}', conversationId: id, priority: 'normal', depth: 0, traceparent } as never, responder);
      await n2.onIdle();
      expect(responder.errors).toEqual([]);
    }
    expect(seen.map((e) => traceparentOf(e))).toEqual([good, undefined, undefined]);
    expect(parentOf(exporter.getFinishedSpans().find((s) => s.attributes['messaging.message.id'] === 'm1')!)).toBe('b7ad6b7169203331');
  });
});

/** A telemetry that records what the bus tells it and checks that every token ends once. */
function recorder() {
  const sends = new Map<object, { id: string; ends: string[] }>();
  const runs = new Map<object, { intent: string; ends: string[] }>();
  const depths: string[] = [];
  const telemetry: Telemetry = {
    enabled: true,
    sendStarted: (draft) => {
      const token = { traceparent: undefined };
      sends.set(token, { id: `${draft.type} ${draft.to} ${draft.intent}`, ends: [] });
      return token;
    },
    sendRefused: (token, code, info) => void (info?.recipient === undefined && sends.get(token)!.ends.push(`refused ${code}`)),
    sendHeld: () => undefined,
    sendCommitted: () => undefined,
    sendSettled: (token, code) => void sends.get(token)!.ends.push(code === undefined ? 'settled' : `settled ${code}`),
    handlerStarted: (envelope, fn) => {
      const run = {};
      runs.set(run, { intent: envelope.intent, ends: [] });
      return fn(run);
    },
    handlerEnded: (run, code) => void runs.get(run)!.ends.push(code ?? 'ok'),
    commitTimed: () => undefined,
    mailboxDepth: (id, depth) => void depths.push(`${id}=${depth}`),
    agentRemoved: (id) => void depths.push(`${id} removed`),
    approvalsHeld: () => undefined,
  };
  return { telemetry, sends, runs, depths };
}

describe('the telemetry hooks', () => {
  it('ends every send and every run exactly once, whatever way it ends', async () => {
    const { telemetry, sends, runs } = recorder();
    const bus = makeBus({
      telemetry,
      policies: [
        { from: '*', to: '*', allow: ['ask', 'delegate', 'notify'] },
        { from: 'a', to: 'held', allow: ['delegate'], requireApproval: true },
        { from: '*', to: 'vault', deny: ['ask', 'notify'] },
      ],
      limits: { rate: false },
    });
    let replier!: ReturnType<Orchestrator['register']>;
    bus.register('vault', { handlers: { news: () => undefined } });
    bus.register('held', { handlers: { pay: () => 'paid' } });
    bus.register('c', { handlers: { compute: (n) => n } });
    replier = bus.register('b', {
      concurrency: 10,
      handlers: {
        chain: (n, ctx) => ctx.ask('c', 'compute', n),
        explicit: (_p, ctx: HandlerContext) => void replier.reply(ctx.message.id, 'by hand'),
        boom: () => {
          throw new Error('no');
        },
        never: () => new Promise(() => undefined),
        news: () => undefined,
      },
    });
    const a = bus.register('a');
    expect(await a.ask('b', 'chain', 1)).toBe(1);
    expect(await a.ask('b', 'explicit', {})).toBe('by hand');
    expect((await rejectionOf(a.ask('vault', 'open', {}))).code).toBe('POLICY_DENIED');
    expect((await rejectionOf(a.ask('b', 'nothing', {}))).code).toBe('NO_HANDLER');
    expect((await rejectionOf(a.ask('b', 'boom', {}))).code).toBe('HANDLER_FAILED');
    expect((await rejectionOf(a.ask('b', 'never', {}, { timeoutMs: 5 }))).code).toBe('TIMEOUT');
    expect((await rejectionOf(a.reply('no-such-ask', 1))).code).toBe('INVALID_REPLY');
    expect((await a.notify('news', {})).denied).toEqual(['vault']);
    const rejected = a.delegate('held', 'pay', {});
    const pending = a.delegate('held', 'pay', {});
    await expect.poll(() => bus.approvals.list().length).toBe(2);
    bus.approvals.reject(bus.approvals.list()[0]!.id);
    expect((await rejectionOf(rejected)).code).toBe('APPROVAL_REJECTED');
    const unanswered = rejectionOf(a.ask('b', 'never', {}));
    const stillHeld = rejectionOf(pending);
    await bus.flush();
    await bus.close();
    expect((await stillHeld).code).toBe('CLOSED');
    expect((await unanswered).code).toBe('CLOSED');

    const ends = [...sends.values()].map((s) => `${s.id}: ${s.ends.join(' + ')}`);
    expect(ends).toEqual([
      'ask b chain: settled',
      'ask c compute: settled',
      'ask b explicit: settled',
      'reply a explicit: settled',
      'ask vault open: refused POLICY_DENIED',
      'ask b nothing: refused NO_HANDLER',
      'ask b boom: settled HANDLER_FAILED',
      'ask b never: settled TIMEOUT',
      'reply ? ?: refused INVALID_REPLY',
      'notify * news: settled',
      'delegate held pay: refused APPROVAL_REJECTED',
      'delegate held pay: settled CLOSED',
      'ask b never: settled CLOSED',
    ]);
    expect([...runs.values()].map((r) => `${r.intent}: ${r.ends.join(' + ')}`)).toEqual([
      'chain: ok',
      'compute: ok',
      'explicit: ok',
      'boom: HANDLER_FAILED',
      'never: CLOSED',
      'news: ok',
      'never: CLOSED',
    ]);
  });

  it('cannot break a send when every hook throws: asks, refusals, notifies and approvals work as without it', async () => {
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(w.message);
    process.on('warning', onWarning);
    const boom = () => {
      throw new Error('exporter down');
    };
    const telemetry: Telemetry = {
      enabled: true,
      sendStarted: boom,
      sendRefused: boom,
      sendHeld: boom,
      sendCommitted: boom,
      sendSettled: boom,
      handlerStarted: boom,
      handlerEnded: boom,
      commitTimed: boom,
      mailboxDepth: boom,
      agentRemoved: boom,
      approvalsHeld: boom,
    };
    let runs = 0;
    const bus = makeBus({ telemetry, policies: [{ from: 'a', to: 'b', allow: ['ask', 'notify'] }, { from: 'a', to: 'held', allow: ['delegate'], requireApproval: true }] });
    bus.register('b', { handlers: { x: (n) => (runs++, (n as number) + 1), news: () => void runs++ } });
    bus.register('held', { handlers: { pay: () => 'paid' } });
    const a = bus.register('a');
    expect(await a.ask('b', 'x', 1)).toBe(2);
    expect((await rejectionOf(a.ask('held', 'x', 1))).code).toBe('POLICY_DENIED');
    expect((await a.notify('news', {})).delivered).toEqual(['b']);
    const job = a.delegate('held', 'pay', {});
    await expect.poll(() => bus.approvals.list().length).toBe(1);
    expect(bus.approvals.approve(bus.approvals.list()[0]!.id)).toEqual({ staged: true });
    expect(await job).toBe('paid');
    await bus.onIdle();
    expect(bus.unregister('b')).toBe(true);
    expect(runs).toBe(2);
    expect(bus.verifyAuditLog().ok).toBe(true);
    await new Promise((r) => setImmediate(r)); // warnings are emitted on the next tick
    process.off('warning', onWarning);
    expect(warnings.filter((w) => w.includes('telemetry threw'))).toEqual([expect.stringContaining('exporter down')]);
  });

  it('runs the handler once even when the telemetry never calls, or calls twice, the function it is given', async () => {
    const { telemetry } = recorder();
    let calls = 0;
    const skipping = makeBus({ telemetry: { ...telemetry, handlerStarted: () => undefined as never } });
    skipping.register('b', { handlers: { x: () => ++calls } });
    expect(await skipping.register('a').ask('b', 'x', {})).toBe(1);
    const twice = makeBus({ telemetry: { ...telemetry, handlerStarted: (_e, fn) => (fn({}), fn({})) } });
    twice.register('b', { handlers: { x: () => ++calls } });
    expect(await twice.register('a').ask('b', 'x', {})).toBe(2);
    expect(calls).toBe(2);
  });

  it('puts only a well-formed traceparent from a token on the envelope', async () => {
    const { telemetry } = recorder();
    const seen: Envelope[] = [];
    const bus = makeBus({ telemetry: { ...telemetry, sendStarted: () => ({ traceparent: 'x'.repeat(10_000) }) } });
    bus.register('b', { handlers: { x: (_p, ctx) => void seen.push(ctx.message) } });
    await bus.register('a').ask('b', 'x', {});
    expect(traceparentOf(seen[0]!)).toBeUndefined();
  });

  it('refuses a telemetry option that lacks the methods, naming the key', () => {
    expect(() => new Orchestrator({ telemetry: { enabled: true } as unknown as Telemetry })).toThrow(/telemetry: a telemetry implements the Telemetry interface/);
    try {
      new Orchestrator({ telemetry: 'otel' as unknown as Telemetry });
    } catch (e) {
      expect((e as { code?: string }).code).toBe('INVALID_ARGUMENT');
    }
  });

  it('calls nothing and builds nothing when the telemetry is disabled', async () => {
    const { telemetry, sends, runs } = recorder();
    const bus = makeBus({ telemetry: { ...telemetry, enabled: false } });
    bus.register('b', { handlers: { x: () => 1 } });
    await bus.register('a').ask('b', 'x', {});
    expect(sends.size + runs.size).toBe(0);
  });
});

function hrtimeMs([s, ns]: [number, number]): number {
  return s * 1000 + ns / 1e6;
}

// Unused types kept for readers of the port: a SendToken and RunToken are opaque objects.
export type { RunToken, SendToken };

describe('mailbox depth', () => {
  it('reports each change of an agent mailbox while it is registered, then that it left', async () => {
    const { telemetry, depths } = recorder();
    const bus = makeBus({ telemetry });
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    bus.register('b', { handlers: { x: () => gate } });
    const a = bus.register('a');
    const asks = [a.ask('b', 'x', 1), a.ask('b', 'x', 2)];
    await bus.flush();
    release();
    await Promise.all(asks);
    bus.unregister('b');
    expect(depths.filter((d) => d.startsWith('b'))).toEqual(['b=1', 'b=2', 'b=1', 'b=0', 'b removed']);
  });
});
