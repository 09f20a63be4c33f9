// The OpenTelemetry implementation of the pipeline's Telemetry port: a PRODUCER span per
// send, a CONSUMER span per handler run (child of the send through the envelope's
// traceparent), and the bus's counters, histograms and gauges.
import {
  context,
  createNoopMeter,
  metrics,
  ProxyTracerProvider,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
  type Attributes,
  type Context,
  type Counter,
  type Histogram,
  type MeterProvider,
  type Span,
  type Tracer,
  type TracerProvider,
} from '@opentelemetry/api';
import type { ErrorCode } from '../errors.js';
import {
  NOOP_TELEMETRY,
  type CommitInfo,
  type RefusalInfo,
  type RunToken,
  type SendDraft,
  type SendToken,
  type Telemetry,
  type TracedEnvelope,
} from '../telemetry-port.js';
import { z } from 'zod';
import { fn, objectWith, parseOptions } from '../options-schema.js';
import * as A from './attributes.js';
import { formatTraceparent, parseTraceparent } from './traceparent.js';

/** Options of {@link openTelemetry}. */
export interface OpenTelemetryOptions {
  /** Where spans go. @default the global provider (`trace.getTracerProvider()`), if an SDK registered one */
  tracerProvider?: TracerProvider;
  /** Where metrics go. @default the global provider (`metrics.getMeterProvider()`), if an SDK registered one */
  meterProvider?: MeterProvider;
  /** Monotonic milliseconds, for durations. @default performance.now */
  now?: () => number;
}

const SCOPE = 'agent-switchboard';

/**
 * The bus's OpenTelemetry instrumentation. Looks for a registered SDK once, when called:
 * with neither a tracer nor a meter provider (given or registered globally) it returns the
 * no-op telemetry, which costs nothing per message. Register the SDK first.
 *
 * @example
 * const telemetry = openTelemetry(); // after the NodeSDK / providers are registered
 */
export function openTelemetry(options: OpenTelemetryOptions = {}): Telemetry {
  // Strict like every factory: a misspelled provider key would otherwise give the no-op telemetry in silence.
  const o = parseOptions(optionsSchema, options, 'openTelemetry');
  const tracerProvider = o.tracerProvider ?? (globalTracerRegistered() ? trace.getTracerProvider() : undefined);
  const meterProvider = o.meterProvider ?? (globalMeterRegistered() ? metrics.getMeterProvider() : undefined);
  if (tracerProvider === undefined && meterProvider === undefined) return NOOP_TELEMETRY;
  return new OtelTelemetry(tracerProvider, meterProvider, o.now ?? (() => performance.now()));
}

const optionsSchema = z.strictObject({
  tracerProvider: objectWith<TracerProvider>('a TracerProvider (with getTracer)', 'getTracer').optional(),
  meterProvider: objectWith<MeterProvider>('a MeterProvider (with getMeter)', 'getMeter').optional(),
  now: fn<() => number>().optional(),
});

/** True when an SDK registered a global tracer provider (the API's proxy has a delegate). */
function globalTracerRegistered(): boolean {
  const provider = trace.getTracerProvider();
  if (!(provider instanceof ProxyTracerProvider)) return true;
  return provider.getDelegate() !== new ProxyTracerProvider().getDelegate();
}

/** True when an SDK registered a global meter provider. */
function globalMeterRegistered(): boolean {
  return metrics.getMeterProvider().getMeter(SCOPE) !== createNoopMeter();
}

class SendState implements SendToken {
  readonly traceparent: string | undefined;
  ended = false;
  constructor(
    readonly span: Span | undefined,
    readonly type: string,
    readonly started: number,
  ) {
    this.traceparent = span === undefined ? undefined : formatTraceparent(span.spanContext());
  }
}

class RunState implements RunToken {
  ended = false;
  constructor(
    readonly span: Span | undefined,
    readonly started: number,
  ) {}
}

class OtelTelemetry implements Telemetry {
  readonly enabled = true;
  readonly #tracer: Tracer | undefined;
  readonly #now: () => number;
  readonly #sent: Counter;
  readonly #refused: Counter;
  readonly #failed: Counter;
  readonly #committedRows: Counter;
  readonly #requestDuration: Histogram;
  readonly #handlerDuration: Histogram;
  readonly #commitDuration: Histogram;
  readonly #depths = new Map<string, number>();
  #held = 0;

  constructor(tracerProvider: TracerProvider | undefined, meterProvider: MeterProvider | undefined, now: () => number) {
    this.#tracer = tracerProvider?.getTracer(SCOPE);
    this.#now = now;
    const meter = meterProvider?.getMeter(SCOPE) ?? createNoopMeter();
    this.#sent = meter.createCounter(A.METRIC.sent, { description: 'Messages that passed every check and were committed to the audit log' });
    this.#refused = meter.createCounter(A.METRIC.refused, { description: 'Sends (or notify recipients) refused, by error code' });
    this.#failed = meter.createCounter(A.METRIC.failed, { description: 'Sends that passed the checks and then failed (TIMEOUT, HANDLER_FAILED, …), by error code' });
    this.#committedRows = meter.createCounter(A.METRIC.auditRows, { description: 'Audit rows committed' });
    this.#requestDuration = meter.createHistogram(A.METRIC.requestDuration, { unit: 's', description: 'Time from an ask or delegate to its reply or failure' });
    this.#handlerDuration = meter.createHistogram(A.METRIC.handlerDuration, { unit: 's', description: 'Time a handler ran' });
    this.#commitDuration = meter.createHistogram(A.METRIC.commitDuration, { unit: 's', description: 'Time one group commit of audit rows took' });
    meter
      .createObservableGauge(A.METRIC.mailboxDepth, { description: 'Messages in an agent mailbox, queued and running' })
      .addCallback((result) => {
        for (const [agentId, depth] of this.#depths) result.observe(depth, { [A.AGENT_ID]: agentId });
      });
    meter
      .createObservableGauge(A.METRIC.approvalsHeld, { description: 'Messages held for a human decision' })
      .addCallback((result) => result.observe(this.#held));
  }

  sendStarted(draft: SendDraft, within?: RunToken): SendToken {
    let span: Span | undefined;
    if (this.#tracer !== undefined) {
      const parent: Context = within instanceof RunState && within.span !== undefined ? trace.setSpan(context.active(), within.span) : context.active();
      const attributes = messagingAttributes('send', draft);
      if (draft.conversationId !== undefined) attributes[A.MESSAGING_CONVERSATION_ID] = draft.conversationId;
      if (draft.depth !== undefined) attributes[A.DEPTH] = draft.depth;
      span = this.#tracer.startSpan(`${draft.type} ${draft.to}`, { kind: SpanKind.PRODUCER, attributes }, parent);
    }
    return new SendState(span, draft.type, this.#now());
  }

  sendRefused(token: SendToken, code: ErrorCode, info?: RefusalInfo): void {
    if (!(token instanceof SendState) || token.ended) return;
    this.#refused.add(1, { [A.MESSAGING_OPERATION_NAME]: token.type, [A.ERROR_TYPE]: code });
    const span = token.span;
    if (info?.recipient !== undefined) {
      span?.addEvent('recipient refused', { [A.TO]: info.recipient, [A.ERROR_CODE]: code, ...(info.rule !== undefined ? { [A.RULE]: info.rule } : {}) });
      return;
    }
    token.ended = true;
    if (span === undefined) return;
    if (code === 'POLICY_DENIED') span.setAttribute(A.DECISION, 'denied');
    if (info?.rule !== undefined) span.setAttribute(A.RULE, info.rule);
    fail(span, code);
    span.end();
  }

  sendHeld(token: SendToken, rule?: string): void {
    if (!(token instanceof SendState) || token.ended || token.span === undefined) return;
    token.span.setAttribute(A.DECISION, 'pending');
    if (rule !== undefined) token.span.setAttribute(A.RULE, rule);
    token.span.addEvent('approval requested');
  }

  sendCommitted(token: SendToken, info: CommitInfo): void {
    if (!(token instanceof SendState) || token.ended) return;
    this.#sent.add(1, { [A.MESSAGING_OPERATION_NAME]: token.type, [A.DECISION]: info.decision });
    const span = token.span;
    if (span === undefined) return;
    // A held send stays 'pending' in the audit row; its span says how it was let through.
    span.setAttribute(A.DECISION, info.decision);
    if (info.rule !== undefined) span.setAttribute(A.RULE, info.rule);
    if (info.policyVersion !== undefined) span.setAttribute(A.POLICY_VERSION, info.policyVersion);
    span.addEvent('committed');
  }

  sendSettled(token: SendToken, code?: ErrorCode): void {
    if (!(token instanceof SendState) || token.ended) return;
    token.ended = true;
    if (token.type === 'ask' || token.type === 'delegate') {
      const seconds = (this.#now() - token.started) / 1000;
      this.#requestDuration.record(seconds, code === undefined ? { [A.MESSAGING_OPERATION_NAME]: token.type } : { [A.MESSAGING_OPERATION_NAME]: token.type, [A.ERROR_TYPE]: code });
    }
    if (code !== undefined) this.#failed.add(1, { [A.MESSAGING_OPERATION_NAME]: token.type, [A.ERROR_TYPE]: code });
    const span = token.span;
    if (span === undefined) return;
    if (code !== undefined) fail(span, code);
    span.end();
  }

  handlerStarted<T>(envelope: TracedEnvelope, fn: (run: RunToken) => T): T {
    if (this.#tracer === undefined) return fn(new RunState(undefined, this.#now()));
    const remote = parseTraceparent(envelope.traceparent);
    const parent = remote === undefined ? ROOT_CONTEXT : trace.setSpanContext(ROOT_CONTEXT, remote);
    const attributes = messagingAttributes('process', envelope);
    attributes[A.MESSAGING_CONVERSATION_ID] = envelope.conversationId;
    attributes[A.DEPTH] = envelope.depth;
    attributes[A.AGENT_ID] = envelope.to;
    if (envelope.causationId !== undefined) attributes[A.CAUSATION_ID] = envelope.causationId;
    const span = this.#tracer.startSpan(`process ${envelope.to}`, { kind: SpanKind.CONSUMER, attributes }, parent);
    const run = new RunState(span, this.#now());
    return context.with(trace.setSpan(parent, span), fn, undefined, run);
  }

  handlerEnded(run: RunToken, code?: ErrorCode): void {
    if (!(run instanceof RunState) || run.ended) return;
    run.ended = true;
    this.#handlerDuration.record((this.#now() - run.started) / 1000, code === undefined ? {} : { [A.ERROR_TYPE]: code });
    if (run.span === undefined) return;
    if (code !== undefined) fail(run.span, code);
    run.span.end();
  }

  commitTimed(ms: number, records: number): void {
    this.#commitDuration.record(ms / 1000);
    this.#committedRows.add(records);
  }

  mailboxDepth(agentId: string, depth: number): void {
    this.#depths.set(agentId, depth);
  }

  agentRemoved(agentId: string): void {
    this.#depths.delete(agentId);
  }

  approvalsHeld(count: number): void {
    this.#held = count;
  }
}

function fail(span: Span, code: ErrorCode): void {
  span.setAttribute(A.ERROR_TYPE, code);
  span.setAttribute(A.ERROR_CODE, code);
  span.setStatus({ code: SpanStatusCode.ERROR, message: code });
}

/** The messaging semantic-convention attributes a send's span and a handler run's span share. */
function messagingAttributes(operation: 'send' | 'process', m: { readonly type: string; readonly to: string; readonly id: string; readonly from: string; readonly intent: string }): Attributes {
  return {
    [A.MESSAGING_SYSTEM]: A.SYSTEM,
    [A.MESSAGING_OPERATION_TYPE]: operation,
    [A.MESSAGING_OPERATION_NAME]: m.type,
    [A.MESSAGING_DESTINATION_NAME]: m.to,
    [A.MESSAGING_MESSAGE_ID]: m.id,
    [A.FROM]: m.from,
    [A.TO]: m.to,
    [A.INTENT]: m.intent,
  };
}
