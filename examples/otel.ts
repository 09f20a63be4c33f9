// The spans of the bus, printed as trees: `npm run example:otel` (the demo workflow of
// `npm run demo`), `npm run example:otel -- --small` (three agents).
//
// An app registers the OpenTelemetry SDK (here a TracerProvider with an in-memory exporter;
// in production the NodeSDK with an OTLP exporter), builds the bus's telemetry with
// openTelemetry() and passes it as the `telemetry` option. Each send is a PRODUCER span,
// each handler run a CONSUMER span child of its send, each send from a handler a child of
// that run: a chain across agents is one trace. A refused send is its own span with its
// error code. No network: the spans are printed from memory. Inside this repository the
// imports are '../src/…'; in your app 'agent-switchboard' and 'agent-switchboard/otel'.
import { pathToFileURL } from 'node:url';
import { context, SpanKind } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { InMemorySpanExporter, SimpleSpanProcessor, TracerProvider, type ReadableSpan } from '@opentelemetry/sdk-trace';
import { isBusError, Orchestrator } from '../src/index.js';
import { openTelemetry } from '../src/otel/index.js';
import { runDemo } from './demo.js';

/** Three agents: research asks writer, whose handler asks editor; research's direct ask to editor is refused. */
export async function run(out: (line: string) => void = console.log): Promise<ReadableSpan[]> {
  const exporter = new InMemorySpanExporter();
  const tracerProvider = new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter })] });
  const telemetry = openTelemetry({ tracerProvider }); // or openTelemetry() after the SDK registered itself

  const bus = new Orchestrator({
    telemetry,
    policies: [
      { from: 'research', to: 'writer', allow: ['ask'] },
      { from: 'writer', to: 'editor', allow: ['ask'], intents: ['review'] },
    ],
  });
  bus.register('editor', { handlers: { review: (draft) => `${String(draft)} (reviewed)` } });
  bus.register('writer', { handlers: { draft: async (topic, ctx) => ctx.ask('editor', 'review', `a note on ${String(topic)}`) } });
  const research = bus.register('research');

  try {
    out(`research got: ${JSON.stringify(await research.ask('writer', 'draft', 'tracing'))}`);
    try {
      await research.ask('editor', 'review', 'skip the writer');
    } catch (e) {
      if (!isBusError(e)) throw e;
      out(`research → editor: ${e.code}`);
    }
  } finally {
    await bus.close();
  }

  const spans = exporter.getFinishedSpans(); // before shutdown, which empties the exporter
  await tracerProvider.shutdown();
  printTrees(spans, out);
  return spans;
}

/**
 * The demo tour (`npm run demo --auto`: delegate with progress and a nested ask, notify,
 * TIMEOUT, POLICY_DENIED, approvals) with the telemetry on; its transcript is dropped, its
 * spans printed.
 */
export async function runDemoWorkflow(out: (line: string) => void = console.log): Promise<ReadableSpan[]> {
  // What the NodeSDK does: a context manager, so the spans a handler makes are its run's children.
  const contextManager = new AsyncLocalStorageContextManager().enable();
  context.setGlobalContextManager(contextManager);
  const exporter = new InMemorySpanExporter();
  const tracerProvider = new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter })] });
  try {
    await runDemo({ out: () => undefined, auto: true, telemetry: openTelemetry({ tracerProvider }) });
  } finally {
    context.disable();
  }
  const spans = exporter.getFinishedSpans();
  await tracerProvider.shutdown();
  printTrees(spans, out);
  return spans;
}

/** Prints each trace as a tree: `name [KIND] from→to intent (ERROR code)  trace <id>`. */
export function printTrees(spans: readonly ReadableSpan[], out: (line: string) => void): void {
  out('spans (a tree per trace):');
  const ids = new Set(spans.map((s) => s.spanContext().spanId));
  const children = new Map<string | undefined, ReadableSpan[]>();
  for (const span of spans) {
    const parent = span.parentSpanContext?.spanId;
    const key = parent !== undefined && ids.has(parent) ? parent : undefined;
    children.set(key, [...(children.get(key) ?? []), span]);
  }
  const startOf = (s: ReadableSpan) => s.startTime[0] * 1e9 + s.startTime[1];
  const print = (span: ReadableSpan, indent: string) => {
    const a = span.attributes;
    const kind = span.kind === SpanKind.PRODUCER ? 'PRODUCER' : span.kind === SpanKind.CONSUMER ? 'CONSUMER' : SpanKind[span.kind];
    const error = a['error.type'] === undefined ? '' : ` ERROR ${String(a['error.type'])}`;
    const decision = a['switchboard.policy.decision'] === 'pending' ? ' (held for approval)' : '';
    const refused = span.events.filter((e) => e.name === 'recipient refused').map((e) => ` (${String(e.attributes?.['switchboard.message.to'])} refused: ${String(e.attributes?.['switchboard.error.code'])})`);
    out(`${indent}${span.name} [${kind}] ${String(a['switchboard.message.from'])}→${String(a['switchboard.message.to'])} ${String(a['switchboard.message.intent'])}${decision}${refused.join('')}${error}  trace ${span.spanContext().traceId.slice(0, 8)}`);
    for (const child of (children.get(span.spanContext().spanId) ?? []).sort((x, y) => startOf(x) - startOf(y))) print(child, `${indent}  `);
  };
  for (const root of (children.get(undefined) ?? []).sort((x, y) => startOf(x) - startOf(y))) print(root, '  ');
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  if (process.argv.includes('--small')) await run();
  else await runDemoWorkflow();
}
