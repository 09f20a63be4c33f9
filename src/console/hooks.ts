// The console's subscriptions to the bus, through its public API only.
import { useCallback, useEffect, useRef, useState } from 'react';
import type { PendingApproval } from '../approvals.js';
import { ApprovalDesk, type OperatorBus } from '../operator/desk.js';
import type { BusEventName, BusEventSource, BusListener } from '../events.js';
import { clockTime, describeEvent, type FeedLine } from './format.js';

/** The last `max` feed lines, from bus events, newest last. */
export function useFeed(events: BusEventSource, max: number): FeedLine[] {
  const [lines, setLines] = useState<FeedLine[]>([]);
  const next = useRef(0);
  useEffect(() => {
    const subscriptions = (Object.keys(describeEvent) as BusEventName[]).map((name) => {
      const describe = describeEvent[name] as (event: unknown) => Omit<FeedLine, 'key' | 'time'>;
      const listener: BusListener<typeof name> = (event) => {
        const line: FeedLine = { key: next.current++, time: clockTime(Date.now(), false), ...describe(event) };
        setLines((old) => [...old, line].slice(-max));
      };
      events.on(name, listener);
      return () => events.off(name, listener);
    });
    return () => subscriptions.forEach((unsubscribe) => unsubscribe());
  }, [events, max]);
  return lines;
}

/** The approval queue as `approvals.list()` shows it, refreshed on every approval event. */
export function usePending(bus: OperatorBus): [readonly PendingApproval[], () => void] {
  const [pending, setPending] = useState<readonly PendingApproval[]>(() => bus.approvals.list());
  const refresh = useCallback(() => setPending(bus.approvals.list()), [bus]);
  useEffect(() => {
    bus.events.on('approval:requested', refresh);
    bus.events.on('approval:decided', refresh);
    refresh();
    return () => {
      bus.events.off('approval:requested', refresh);
      bus.events.off('approval:decided', refresh);
    };
  }, [bus, refresh]);
  return [pending, refresh];
}

/** An ApprovalDesk over the bus for as long as the component is mounted. */
export function useDesk(bus: OperatorBus): ApprovalDesk {
  const [desk] = useState(() => new ApprovalDesk(bus));
  useEffect(() => () => void desk.close(), [desk]);
  return desk;
}

/** `Date.now()`, re-read every `everyMs` while `active` (for "expires in" countdowns). */
export function useNow(active: boolean, everyMs = 1000): number {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    if (!active) return undefined;
    setNow(Date.now());
    const timer = setInterval(() => setNow(Date.now()), everyMs);
    return () => clearInterval(timer);
  }, [active, everyMs]);
  return now;
}
