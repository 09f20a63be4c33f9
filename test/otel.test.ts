// agent-switchboard/otel: spans and metrics checked with the SDK's in-memory exporters,
// calling the Telemetry port the way the pipeline will, then driven by a real bus's events.
import { context, metrics, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { MeterProvider, MetricReader, type DataPoint, type Histogram } from '@opentelemetry/sdk-metrics';
import { InMemorySpanExporter, SimpleSpanProcessor, TracerProvider, type ReadableSpan } from '@opentelemetry/sdk-trace';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Orchestrator, type Envelope } from '../src/index.js';
import { formatTraceparent, METRIC, NOOP_TELEMETRY, openTelemetry, parseTraceparent, traceBusEvents, type SendDraft, type Telemetry } from '../src/otel/index.js';
import { rejectionOf } from './helpers.js';

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

describe('traceBusEvents()', () => {
  it("traces a real bus's ask chain A→B→C as one trace and a refusal with its code", async () => {
    const telemetry = setup();
    const bus = new Orchestrator({
      policies: [
        { from: 'a', to: 'b', allow: ['ask'] },
        { from: 'b', to: 'c', allow: ['ask'] },
      ],
    });
    const stop = traceBusEvents(bus, telemetry);
    bus.register('c', { handlers: { compute: (n) => (n as number) * 2 } });
    bus.register('b', { handlers: { plan: async (n, ctx) => ({ doubled: await ctx.ask('c', 'compute', n) }) } });
    const a = bus.register('a');
    expect(await a.ask('b', 'plan', 21)).toEqual({ doubled: 42 });
    expect((await rejectionOf(a.ask('c', 'compute', 1))).code).toBe('POLICY_DENIED');
    stop();
    await bus.close();

    const sendAB = spanNamed('ask b');
    const runB = spanNamed('process b');
    const [sendBC, ...others] = exporter.getFinishedSpans().filter((s) => s.name === 'ask c' && s.status.code !== SpanStatusCode.ERROR);
    expect(others).toEqual([]);
    const runC = spanNamed('process c');
    const traceIds = new Set([sendAB, runB, sendBC!, runC].map((s) => s.spanContext().traceId));
    expect(traceIds.size).toBe(1);
    expect(parentOf(runB)).toBe(sendAB.spanContext().spanId);
    expect(parentOf(sendBC!)).toBe(runB.spanContext().spanId);
    expect(parentOf(runC)).toBe(sendBC!.spanContext().spanId);
    expect(sendBC!.attributes['messaging.message.conversation_id']).toBe(sendAB.attributes['messaging.message.conversation_id']);
    const denied = exporter.getFinishedSpans().filter((s) => s.status.code === SpanStatusCode.ERROR);
    expect(denied.map((s) => [s.name, s.attributes['error.type']])).toEqual([['ask c', 'POLICY_DENIED']]);
    expect(traceIds.has(denied[0]!.spanContext().traceId)).toBe(false);
    expect((await points(METRIC.sent)).reduce((n, p) => n + (p.value as number), 0)).toBe(2);
    expect((await points(METRIC.refused)).map((p) => [p.attributes['error.type'], p.value])).toEqual([['POLICY_DENIED', 1]]);
  });

  it('traces a held send as pending, and a rejected one with APPROVAL_REJECTED; the gauge follows the queue', async () => {
    const telemetry = setup();
    const bus = new Orchestrator({ policies: [{ from: 'buyer', to: 'payment', allow: ['delegate'], requireApproval: true }] });
    const stop = traceBusEvents(bus, telemetry);
    bus.register('payment', { handlers: { pay: () => 'paid' } });
    const buyer = bus.register('buyer');
    const job = buyer.delegate('payment', 'pay', { amount: 5 });
    await expect.poll(() => bus.approvals.list().length).toBe(1);
    expect((await points(METRIC.approvalsHeld))[0]!.value).toBe(1);
    bus.approvals.reject(bus.approvals.list()[0]!.id, { reason: 'no' });
    expect((await rejectionOf(job)).code).toBe('APPROVAL_REJECTED');
    expect((await points(METRIC.approvalsHeld))[0]!.value).toBe(0);
    stop();
    await bus.close();
    const span = spanNamed('delegate payment');
    expect(span.attributes).toMatchObject({ 'switchboard.policy.decision': 'pending', 'error.type': 'APPROVAL_REJECTED' });
    expect(span.events.map((e) => e.name)).toEqual(['approval requested']);
  });
});
