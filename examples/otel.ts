// The spans of a small workflow, printed as a tree: `npm run example:otel`.
//
// An app registers the OpenTelemetry SDK (here a TracerProvider with an in-memory exporter;
// in production the NodeSDK with an OTLP exporter), builds the bus's telemetry with
// openTelemetry() and passes it as the `telemetry` option. The research agent asks the
// writer, whose handler asks the editor: one trace, each handler run a child of its send,
// each send from a handler a child of that run. A refused send is its own span with its
// error code. No network: the spans are printed from memory. Inside this repository the imports are '../src/…'; in your app
// 'agent-switchboard' and 'agent-switchboard/otel'.
import { pathToFileURL } from 'node:url';
import { InMemorySpanExporter, SimpleSpanProcessor, TracerProvider, type ReadableSpan } from '@opentelemetry/sdk-trace';
import { isBusError, Orchestrator } from '../src/index.js';
import { openTelemetry } from '../src/otel/index.js';

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
  out('spans (a tree per trace):');
  const children = new Map<string | undefined, ReadableSpan[]>();
  for (const span of spans) {
    const parent = span.parentSpanContext?.spanId;
    children.set(parent, [...(children.get(parent) ?? []), span]);
  }
  const print = (span: ReadableSpan, indent: string) => {
    const a = span.attributes;
    const error = a['error.type'] === undefined ? '' : ` ERROR ${String(a['error.type'])}`;
    out(`${indent}${span.name} [${span.kind === 3 ? 'PRODUCER' : span.kind === 4 ? 'CONSUMER' : span.kind}] ${String(a['switchboard.message.from'])}→${String(a['switchboard.message.to'])} ${String(a['switchboard.message.intent'])}${error}  trace ${span.spanContext().traceId.slice(0, 8)}`);
    for (const child of (children.get(span.spanContext().spanId) ?? []).sort((x, y) => x.startTime[1] - y.startTime[1])) print(child, `${indent}  `);
  };
  for (const root of children.get(undefined) ?? []) print(root, '  ');
  return spans;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) await run();
