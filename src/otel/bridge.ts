// Drives a Telemetry from a bus's public events, for buses whose pipeline does not call
// the telemetry hooks itself yet. Approximate where the events are: a refusal is seen
// after the fact, a run starts at delivery and ends with its reply (a notify's at once),
// and no span is active inside a handler, so the app's own spans there do not join.
import type { Envelope } from '../envelope.js';
import type { ErrorCode } from '../errors.js';
import type { BusEventSource, BusEvents } from '../events.js';
import type { RunToken, SendToken, Telemetry } from '../telemetry.js';

/** Options of {@link traceBusEvents}. */
export interface TraceBusEventsOptions {
  /** Sends and runs tracked at once at most; the oldest are ended beyond it. @default 10_000 */
  maxInFlight?: number;
}

/**
 * Subscribes `telemetry` to `bus.events`: a send span per message (parented on the handler
 * run that sent it, through `causationId`), a run span per delivery, refusals with their
 * code and rule, and the approvals gauge. Returns a function that unsubscribes and ends
 * whatever is still open.
 *
 * @experimental Until the pipeline calls the telemetry itself; then pass it to the bus.
 */
export function traceBusEvents(bus: { events: BusEventSource }, telemetry: Telemetry, options: TraceBusEventsOptions = {}): () => void {
  const max = options.maxInFlight ?? 10_000;
  const sends = new Map<string, SendToken>();
  const runs = new Map<string, RunToken>();
  let held = 0;

  const remember = <T>(map: Map<string, T>, id: string, value: T, end: (value: T) => void) => {
    map.set(id, value);
    if (map.size > max) {
      const [oldest, token] = map.entries().next().value as [string, T];
      map.delete(oldest);
      end(token);
    }
  };
  const endRun = (id: string, code?: ErrorCode) => {
    const run = runs.get(id);
    if (run === undefined) return;
    runs.delete(id);
    telemetry.handlerEnded(run, code);
  };
  const settle = (id: string, code?: ErrorCode) => {
    const token = sends.get(id);
    if (token === undefined) return;
    sends.delete(id);
    telemetry.sendSettled(token, code);
  };
  const start = (envelope: Envelope) => {
    if (sends.has(envelope.id)) return sends.get(envelope.id)!; // a notify's other recipients
    const within = envelope.causationId === undefined ? undefined : runs.get(envelope.causationId);
    const token = telemetry.sendStarted(
      { id: envelope.id, type: envelope.type, from: envelope.from, to: envelope.type === 'notify' ? '*' : envelope.to, intent: envelope.intent, conversationId: envelope.conversationId, depth: envelope.depth },
      within,
    );
    remember(sends, envelope.id, token, (t) => telemetry.sendSettled(t, 'CANCELLED'));
    return token;
  };

  const listeners: { [K in keyof BusEvents]?: (event: BusEvents[K]) => void } = {
    'message:sent': ({ envelope }) => {
      start(envelope);
    },
    'message:delivered': ({ envelope }) => {
      const token = sends.get(envelope.id);
      if (token !== undefined) {
        telemetry.sendCommitted(token, { decision: 'allowed' });
        // A notify is over once delivered; its other recipients (delivered in the same
        // commit) still read its traceparent until the next microtask.
        if (envelope.type === 'notify') {
          telemetry.sendSettled(token);
          queueMicrotask(() => sends.delete(envelope.id));
        }
      }
      // The run's parent is the send: the pipeline will carry this on the envelope.
      const traced = { ...envelope, traceparent: token?.traceparent };
      const run = telemetry.handlerStarted(traced, (r) => r);
      if (envelope.type === 'notify') {
        telemetry.handlerEnded(run);
        return;
      }
      remember(runs, envelope.id, run, (r) => telemetry.handlerEnded(r, 'CANCELLED'));
    },
    'message:replied': ({ envelope }) => {
      if (envelope.inReplyTo === undefined) return;
      endRun(envelope.inReplyTo);
      settle(envelope.inReplyTo);
    },
    'message:failed': ({ envelope, code }) => {
      endRun(envelope.id, code);
      if (envelope.type !== 'notify') settle(envelope.id, code);
    },
    'message:expired': ({ envelope, code }) => {
      endRun(envelope.id, code);
      settle(envelope.id, code);
    },
    'message:denied': ({ attempt, code, rule }) => {
      const open = sends.get(attempt.id);
      const token =
        open ??
        telemetry.sendStarted({ id: attempt.id, type: attempt.type, from: attempt.from, to: attempt.to, intent: attempt.intent });
      const info = rule === undefined ? undefined : { rule };
      if (attempt.type === 'notify' && open !== undefined) telemetry.sendRefused(token, code, { ...info, recipient: attempt.to });
      else {
        sends.delete(attempt.id);
        telemetry.sendRefused(token, code, info);
      }
    },
    'approval:requested': ({ approval }) => {
      const token = start(approval.envelope);
      telemetry.sendHeld(token);
      telemetry.approvalsHeld(++held);
    },
    'approval:decided': ({ approval, decision }) => {
      telemetry.approvalsHeld(held = Math.max(0, held - 1));
      const token = sends.get(approval.envelope.id);
      if (token === undefined) return;
      if (decision === 'approved') return; // delivered next: committed at 'message:delivered'
      const code: ErrorCode = decision === 'rejected' ? 'APPROVAL_REJECTED' : decision === 'expired' ? 'APPROVAL_EXPIRED' : 'CANCELLED';
      sends.delete(approval.envelope.id);
      telemetry.sendRefused(token, code);
    },
  };
  for (const [name, listener] of Object.entries(listeners)) bus.events.on(name as keyof BusEvents, listener as never);
  return () => {
    for (const [name, listener] of Object.entries(listeners)) bus.events.off(name as keyof BusEvents, listener as never);
    for (const run of runs.values()) telemetry.handlerEnded(run, 'CLOSED');
    for (const token of sends.values()) telemetry.sendSettled(token, 'CLOSED');
    runs.clear();
    sends.clear();
  };
}
