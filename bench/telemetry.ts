// The bench's telemetry modes: the bus with no telemetry (the no-op) and with the
// OpenTelemetry SDK as an app would set it up (an AsyncLocalStorage context manager, a
// batching span processor, a meter provider), exporting to memory: spans are counted and
// dropped, so the figure is the bus's instrumentation and the SDK, not an exporter's I/O.
import { context } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { MeterProvider, MetricReader } from '@opentelemetry/sdk-metrics';
import { BatchSpanProcessor, InMemorySpanExporter, TracerProvider, type ReadableSpan } from '@opentelemetry/sdk-trace';
import type { Orchestrator, OrchestratorOptions } from '../src/index.js';
import { openTelemetry } from '../src/otel/index.js';

/** An in-memory exporter that keeps the count of spans, not the spans (a run makes millions). */
class CountingExporter extends InMemorySpanExporter {
  exported = 0;
  override export(spans: ReadableSpan[], done: (result: { code: number }) => void): void {
    this.exported += spans.length;
    done({ code: 0 });
  }
}

class IdleReader extends MetricReader {
  protected override async onForceFlush(): Promise<void> {}
  protected override async onShutdown(): Promise<void> {}
}

interface Asker {
  ask(payload: unknown): Promise<unknown>;
  close(): Promise<void>;
}

type MakeBus = (mode: 'off' | 'memory', extra?: OrchestratorOptions) => Orchestrator;

export interface TelemetryMode {
  /** `memory`, `memory+sdk`, `off`, `off+sdk`. */
  readonly name: string;
  readonly label: string;
  asker(makeBus: MakeBus): Asker;
  report?(): string;
}

/** `memory` and `off` audit, each with no telemetry and with the SDK. */
export async function telemetryModes(): Promise<TelemetryMode[]> {
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  const exporter = new CountingExporter();
  let asks = 0;
  let dropped = 0;
  const mode = (audit: 'off' | 'memory', sdk: boolean): TelemetryMode => ({
    name: `${audit}${sdk ? '+sdk' : ''}`,
    label: `audit ${audit === 'memory' ? ':memory:' : 'off'}, ${sdk ? 'OpenTelemetry SDK' : 'no telemetry (no-op)'}`,
    asker(makeBus) {
      let extra: OrchestratorOptions = {};
      let shutdown = async () => {};
      if (sdk) {
        const before = exporter.exported;
        const tracerProvider = new TracerProvider({
          spanProcessors: [new BatchSpanProcessor({ exporter, maxQueueSize: 200_000, maxExportBatchSize: 8192, scheduledDelayMillis: 50 })],
        });
        const meterProvider = new MeterProvider({ readers: [new IdleReader()] });
        extra = { telemetry: openTelemetry({ tracerProvider, meterProvider }) };
        shutdown = async () => {
          await tracerProvider.forceFlush();
          dropped += 2 * asks - (exporter.exported - before); // a send and a run per ask
          asks = 0;
          await tracerProvider.shutdown();
          await meterProvider.shutdown();
        };
      }
      const bus = makeBus(audit, extra);
      bus.register('worker', { concurrency: 1000, handlers: { echo: (payload) => payload } });
      const client = bus.register('client');
      return {
        ask: (payload) => {
          if (sdk) asks++;
          return client.ask('worker', 'echo', payload);
        },
        close: async () => {
          await bus.close();
          await shutdown();
        },
      };
    },
  });
  const modes = [mode('memory', false), mode('memory', true), mode('off', false), mode('off', true)];
  modes[modes.length - 1] = { ...modes[modes.length - 1]!, report: () => `spans exported to memory: ${exporter.exported.toLocaleString('en-US')}, dropped by the batch processor: ${dropped.toLocaleString('en-US')}` };
  return modes;
}
