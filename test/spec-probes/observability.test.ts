// SPEC "Observability": spans per send and per handler run with the messaging semantic
// conventions, W3C trace context in the envelope, counters and histograms; strict options.
import { MeterProvider, MetricReader, type DataPoint } from '@opentelemetry/sdk-metrics';
import { InMemorySpanExporter, SimpleSpanProcessor, TracerProvider } from '@opentelemetry/sdk-trace';
import { afterEach, describe, expect, it } from 'vitest';
import { Orchestrator, type Envelope } from '../../src/index.js';
import { METRIC, NOOP_TELEMETRY, openTelemetry, SYSTEM } from '../../src/otel/index.js';
import { closeAll, OPEN, refusal } from './probe-kit.js';

class Reader extends MetricReader {
  protected override async onForceFlush(): Promise<void> {}
  protected override async onShutdown(): Promise<void> {}
}

const providers: Array<{ shutdown(): Promise<void> }> = [];
afterEach(async () => {
  await closeAll();
  await Promise.all(providers.splice(0).map((p) => p.shutdown()));
});

function otel() {
  const exporter = new InMemorySpanExporter();
  const tracerProvider = new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter })] });
  const reader = new Reader();
  const meterProvider = new MeterProvider({ readers: [reader] });
  providers.push(tracerProvider, meterProvider);
  const telemetry = openTelemetry({ tracerProvider, meterProvider });
  const points = async (name: string) => {
    const { resourceMetrics } = await reader.collect();
    return (resourceMetrics.scopeMetrics.flatMap((s) => s.metrics).find((m) => m.descriptor.name === name)?.dataPoints ?? []) as DataPoint<unknown>[];
  };
  return { exporter, telemetry, points };
}

describe('openTelemetry() options', () => {
  it('"opted in with telemetry: openTelemetry()": without an SDK it is the no-op telemetry and the bus works', async () => {
    const t = openTelemetry();
    expect(t).toBe(NOOP_TELEMETRY);
    const b = new Orchestrator({ telemetry: t, policies: [...OPEN] });
    try {
      b.register('w', { handlers: { x: () => 1 } });
      await expect(b.register('a').ask('w', 'x', 1)).resolves.toBe(1);
    } finally {
      await b.close();
    }
  });

  it('refuses a misspelled key in the one wording, rather than silently falling back to no telemetry', () => {
    expect(() => openTelemetry({ tracerprovider: {} } as never)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT', message: 'Invalid openTelemetry options: unknown key "tracerprovider"' }));
    expect(() => openTelemetry({ tracerProvider: {} } as never)).toThrow(/^Invalid openTelemetry options: tracerProvider/);
  });
});

describe('"a span per send and per handler run with the messaging semantic conventions, W3C trace context carried in the envelope"', () => {
  it('an ask makes a producer span and a consumer span, its child, with messaging.* attributes; the handler\'s envelope carries the traceparent', async () => {
    const { exporter, telemetry } = otel();
    const b = new Orchestrator({ telemetry, policies: [...OPEN] });
    let seen: Envelope | undefined;
    b.register('w', { handlers: { x: (_p, ctx) => void (seen = ctx.message) } });
    await b.register('a').ask('w', 'x', 1);
    await b.close();
    const spans = exporter.getFinishedSpans();
    const send = spans.find((s) => s.attributes['messaging.operation.type'] === 'send');
    const run = spans.find((s) => s.attributes['messaging.operation.type'] === 'process');
    expect(send?.kind).toBe(3); // PRODUCER
    expect(run?.kind).toBe(4); // CONSUMER
    expect(send).toBeDefined();
    expect(run).toBeDefined();
    expect(send!.attributes).toMatchObject({ 'messaging.system': SYSTEM, 'messaging.operation.name': 'ask', 'messaging.destination.name': 'w', 'messaging.message.id': seen!.id, 'messaging.message.conversation_id': seen!.conversationId });
    expect(run!.attributes).toMatchObject({ 'messaging.system': SYSTEM, 'messaging.operation.name': 'ask', 'messaging.message.id': seen!.id });
    expect(run!.parentSpanContext?.spanId).toBe(send!.spanContext().spanId);
    expect(run!.spanContext().traceId).toBe(send!.spanContext().traceId);
    const traceparent = (seen as Envelope & { traceparent?: string }).traceparent;
    expect(traceparent).toMatch(new RegExp(`^00-${send!.spanContext().traceId}-[0-9a-f]{16}-0[01]$`));
  });

  it('a refused send ends its span with an error naming the code', async () => {
    const { exporter, telemetry } = otel();
    const b = new Orchestrator({ telemetry });
    b.register('w');
    await refusal(b.register('a').ask('w', 'x', 1));
    await b.close();
    const [span] = exporter.getFinishedSpans();
    expect(span!.status.code).toBe(2);
    expect(JSON.stringify(span!.attributes)).toContain('POLICY_DENIED');
  });
});

describe('"counters and histograms for sends, refusals by code, queue depth, approvals and latency"', () => {
  it('counts sent and refused (by code), and records request and handler durations', async () => {
    const { telemetry, points } = otel();
    const b = new Orchestrator({ telemetry, policies: [{ from: 'a', to: 'w', allow: ['ask'] }, { from: 'a', to: 'h', allow: ['ask'], requireApproval: true }] });
    b.register('w', { handlers: { x: () => 1 } });
    b.register('h', { handlers: { x: () => 1 } });
    b.register('z');
    const a = b.register('a');
    await a.ask('w', 'x', 1);
    await a.ask('w', 'x', 2);
    await refusal(a.ask('z', 'x', 1));
    a.ask('h', 'x', 1).catch(() => {});
    await b.flush();
    const sent = await points(METRIC.sent);
    expect(sent.reduce((n, p) => n + (p.value as number), 0)).toBeGreaterThanOrEqual(2);
    const refused = await points(METRIC.refused);
    expect(refused.some((p) => JSON.stringify(p.attributes).includes('POLICY_DENIED') && p.value === 1)).toBe(true);
    expect((await points(METRIC.requestDuration)).length).toBeGreaterThan(0);
    expect((await points(METRIC.handlerDuration)).length).toBeGreaterThan(0);
    const held = await points(METRIC.approvalsHeld);
    expect(held.some((p) => p.value === 1)).toBe(true);
    expect(Array.isArray(await points(METRIC.mailboxDepth))).toBe(true);
  });
});
