// Runs one tool call through the agent's own handle, so the bus checks, audits and delivers
// it like any send, and turns a refusal into something a model can read: a code and a
// reason, never a stack.
import type { Agent } from '../agent.js';
import { errorText } from '../errors.js';
import { isBusError, type ErrorCode } from '../errors.js';
import type { ToolSpec } from './catalog.js';

/** How a tool call ended: the reply, or the refusal a model is shown. */
export type ToolOutcome = { readonly ok: true; readonly value: unknown } | { readonly ok: false; readonly refusal: ToolRefusal };

/** A refused or failed tool call as the model sees it. `code` is a BusError code, or `UNEXPECTED`. */
export interface ToolRefusal {
  readonly code: ErrorCode | 'UNEXPECTED';
  readonly reason: string;
}

/** Options of one call. */
export interface InvokeOptions {
  readonly signal?: AbortSignal | undefined;
  /** Deadline of an ask or delegate; omitted, the bus's default. */
  readonly timeoutMs?: number | undefined;
}

/** `CODE: reason`, the text a model reads for a refusal. */
export function refusalText(refusal: ToolRefusal): string {
  return `${refusal.code}: ${refusal.reason}`;
}

/**
 * Sends the tool's message as `agent` with the model's arguments as the payload (unwrapped
 * from `{ payload }` for non-object contracts). Never rejects: a refusal is an outcome.
 */
export async function invokeTool(agent: Agent<any>, spec: ToolSpec, args: unknown, options: InvokeOptions = {}): Promise<ToolOutcome> {
  try {
    const payload = spec.wrapped ? unwrap(args) : args;
    const sendOptions = { ...(options.signal !== undefined ? { signal: options.signal } : {}), ...(options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {}) };
    const value =
      spec.type === 'notify'
        ? await agent.send({ type: 'notify', to: spec.to, intent: spec.intent, payload })
        : await agent.send({ type: spec.type, to: spec.to, intent: spec.intent, payload, ...sendOptions });
    return { ok: true, value: value === undefined ? null : value };
  } catch (error) {
    return { ok: false, refusal: toRefusal(error) };
  }
}

/** The code and message of a BusError; anything else says only that the call failed. */
export function toRefusal(error: unknown): ToolRefusal {
  if (isBusError(error)) return { code: error.code, reason: errorText(error) };
  return { code: 'UNEXPECTED', reason: `the call failed: ${errorText(error)}` };
}

function unwrap(args: unknown): unknown {
  if (typeof args === 'object' && args !== null && !Array.isArray(args) && Object.hasOwn(args, 'payload')) {
    return (args as { payload: unknown }).payload;
  }
  return args; // the bus refuses it against the contract, with a reason the model can read
}

