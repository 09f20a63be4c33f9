// The A2A side of a2aServer: each task is one ask or delegate sent by the caller's stand-in
// agent, so policy, limits, approvals and the audit log apply exactly as to a local agent.
// The task's states follow the message (see task-states.ts).
import { randomUUID } from 'node:crypto';
import { Role, TaskState, type Message, type Task } from '@a2a-js/sdk';
import { AgentEvent, type AgentExecutor, type ExecutionEventBus, type RequestContext } from '@a2a-js/sdk/server';
import type { Agent } from '../agent.js';
import { isBusError, type ErrorCode } from '../errors.js';
import { escapeText } from '../escape-text.js';
import type { BusEventSource } from '../events.js';
import type { PendingApproval } from '../approvals.js';
import type { Job } from '../types.js';
import type { SkillSpec } from './card.js';
import { partOf, textPart, valueOfParts } from './parts.js';
import { finalStateOf } from './task-states.js';

/** What the executor needs: who it sends to, as whom, and where approvals are announced. */
export interface ExecutorConfig {
  readonly agent: string;
  readonly callers: ReadonlyMap<string, Agent>;
  readonly skills: ReadonlyMap<string, SkillSpec>;
  readonly events: BusEventSource;
  readonly timeoutMs: number | undefined;
}

interface Running {
  /** Aborting it cancels the send (CANCELLED) and the handler's `ctx.signal`. */
  abort: AbortController | undefined;
  bus: ExecutionEventBus;
  contextId: string;
  /** Set once a final state was published: nothing more goes out for this task. */
  settled: boolean;
  /** Set once the hold was announced. */
  held: boolean;
}

/** Status text carries at most this much of a reason (an agent's error message is not bounded). */
const MAX_REASON = 1000;

export class BusExecutor implements AgentExecutor {
  readonly #config: ExecutorConfig;
  readonly #running = new Map<string, Running>();
  /** Message id → task id, while the message may still be held. */
  readonly #byMessage = new Map<string, string>();
  readonly #onRequested = ({ approval }: { approval: PendingApproval }) => this.#held(approval);
  readonly #onDecided = ({ approval, decision }: { approval: PendingApproval; decision: string }) => {
    if (decision !== 'approved') return;
    // A listener that decided at once (before ours heard of the hold) still shows the hold first.
    this.#held(approval);
    this.#status(this.#byMessage.get(approval.envelope.id), `approved by an operator: running "${approval.envelope.intent}"`, { approval: approval.id, decision });
  };

  constructor(config: ExecutorConfig) {
    this.#config = config;
    config.events.on('approval:requested', this.#onRequested);
    config.events.on('approval:decided', this.#onDecided);
  }

  /** Stops listening to the bus and cancels every running task. */
  close(): void {
    this.#config.events.off('approval:requested', this.#onRequested);
    this.#config.events.off('approval:decided', this.#onDecided);
    for (const running of this.#running.values()) running.abort?.abort(new Error('the A2A server is closing'));
  }

  readonly execute = async (request: RequestContext, bus: ExecutionEventBus): Promise<void> => {
    const { taskId, contextId } = request;
    const message = request.userMessage;
    if (request.task !== undefined) {
      // A task here is one request and its answer (OneMessageTasks refuses a follow-up before
      // it gets here; this stays for a handler built without it).
      bus.publish(AgentEvent.message(agentMessage(contextId, undefined, 'INVALID_ARGUMENT: this task takes no further messages; send a new message without taskId', { code: 'INVALID_ARGUMENT' })));
      return;
    }
    const running: Running = { abort: undefined, bus, contextId, settled: false, held: false };
    this.#running.set(taskId, running);
    try {
      const task: Task = { id: taskId, contextId, status: { state: TaskState.TASK_STATE_SUBMITTED, message: undefined, timestamp: now() }, artifacts: [], history: [message], metadata: undefined };
      bus.publish(AgentEvent.task(task));
      const refusal = this.#refusal(request);
      if (refusal !== undefined) return this.#finish(taskId, TaskState.TASK_STATE_REJECTED, `INVALID_ARGUMENT: ${refusal}`, { code: 'INVALID_ARGUMENT' });
      const caller = request.context.user?.userName ?? '';
      const sender = this.#config.callers.get(caller)!;
      const skill = this.#config.skills.get(message.metadata!['skill'] as string)!;
      const payload = (valueOfParts(message.parts) as { value: unknown }).value;
      const abort = new AbortController();
      running.abort = abort;
      const options = this.#config.timeoutMs === undefined ? { signal: abort.signal } : { signal: abort.signal, timeoutMs: this.#config.timeoutMs };
      // The message id is learnt from `message:sent`, emitted while the send runs: an ask is a
      // plain promise without one, and approvals are announced by message id.
      let messageId = '';
      const onSent = ({ envelope }: { envelope: { id: string; from: string } }) => {
        if (envelope.from === sender.id) messageId = envelope.id;
      };
      this.#config.events.on('message:sent', onSent);
      let reply: Promise<unknown>;
      try {
        reply = skill.type === 'ask' ? sender.ask(this.#config.agent, skill.id, payload as never, options) : sender.delegate(this.#config.agent, skill.id, payload as never, options);
      } finally {
        this.#config.events.off('message:sent', onSent);
      }
      if (messageId !== '') {
        this.#byMessage.set(messageId, taskId);
        this.#status(taskId, undefined, { messageId });
      }
      if (skill.type === 'delegate') {
        // Every report is one message id: the SDK appends a status message to the task's history
        // once per id, so a handler that reports often updates the status without growing the task.
        const progressId = `${taskId}:progress`;
        (reply as Job).onProgress(({ fraction, note }) => this.#status(taskId, note === undefined ? `progress ${Math.round(fraction * 100)}%` : clip(note), { progress: fraction }, progressId));
      }
      try {
        const value = await reply;
        if (running.settled) return;
        bus.publish(
          AgentEvent.artifactUpdate({
            taskId,
            contextId,
            artifact: { artifactId: `reply-${messageId || taskId}`, name: 'reply', description: `The reply of ${this.#config.agent} to "${skill.id}"`, parts: [partOf(value)], metadata: undefined, extensions: [] },
            append: false,
            lastChunk: true,
            metadata: undefined,
          }),
        );
        this.#finish(taskId, TaskState.TASK_STATE_COMPLETED, undefined, { messageId });
      } catch (error) {
        const code: ErrorCode = isBusError(error) ? error.code : 'HANDLER_FAILED';
        const reason = isBusError(error) ? error.message : 'the request failed';
        this.#finish(taskId, finalStateOf(code), `${code}: ${clip(reason)}`, { code, messageId });
      } finally {
        this.#byMessage.delete(messageId);
      }
    } catch (error) {
      // The send itself threw (a closed bus, a dead stand-in): the task fails with the code only.
      const code: ErrorCode = isBusError(error) ? error.code : 'HANDLER_FAILED';
      this.#finish(taskId, finalStateOf(code), `${code}: ${isBusError(error) ? clip(error.message) : 'the request could not be sent'}`, { code });
    } finally {
      this.#running.delete(taskId);
    }
  };

  readonly cancelTask = async (taskId: string, bus: ExecutionEventBus): Promise<void> => {
    const running = this.#running.get(taskId);
    if (running === undefined) {
      // Nothing of ours runs it any more: the SDK still needs the canceled state to settle.
      bus.publish(AgentEvent.statusUpdate({ taskId, contextId: '', status: { state: TaskState.TASK_STATE_CANCELED, message: undefined, timestamp: now() }, metadata: undefined }));
      return;
    }
    this.#finish(taskId, TaskState.TASK_STATE_CANCELED, 'CANCELLED: the caller cancelled the task', { code: 'CANCELLED' });
    running.abort?.abort(new Error('the A2A caller cancelled the task'));
  };

  /** Why a request cannot become a send, before anything reaches the bus; undefined when it can. */
  #refusal(request: RequestContext): string | undefined {
    const skill = request.userMessage.metadata?.['skill'];
    if (typeof skill !== 'string' || skill.length === 0) {
      return `name the skill in message.metadata.skill (one of ${[...this.#config.skills.keys()].map((s) => JSON.stringify(s)).join(', ')})`;
    }
    if (!this.#config.skills.has(skill)) return `no skill ${JSON.stringify(skill.slice(0, 64))} (skills: ${[...this.#config.skills.keys()].map((s) => JSON.stringify(s)).join(', ')})`;
    const value = valueOfParts(request.userMessage.parts);
    if (!value.ok) return value.reason;
    if (!this.#config.callers.has(request.context.user?.userName ?? '')) return 'the caller is not known';
    return undefined;
  }

  #held(approval: PendingApproval): void {
    const taskId = this.#byMessage.get(approval.envelope.id);
    const running = taskId === undefined ? undefined : this.#running.get(taskId);
    if (running === undefined || running.held) return;
    running.held = true;
    this.#status(taskId, `held for approval ${approval.id}${approval.rule === undefined ? '' : ` (rule ${approval.rule})`}: the task stays working until an operator decides`, {
      approval: approval.id,
      expiresAt: approval.expiresAt,
    });
  }

  /** A working status update, with a message when there is something to say. */
  #status(taskId: string | undefined, text: string | undefined, metadata: Record<string, unknown>, messageId?: string): void {
    const running = taskId === undefined ? undefined : this.#running.get(taskId);
    if (running === undefined || running.settled || taskId === undefined) return;
    running.bus.publish(
      AgentEvent.statusUpdate({
        taskId,
        contextId: running.contextId,
        status: { state: TaskState.TASK_STATE_WORKING, message: text === undefined ? undefined : agentMessage(running.contextId, taskId, text, metadata, messageId), timestamp: now() },
        metadata,
      }),
    );
  }

  #finish(taskId: string, state: TaskState, text: string | undefined, metadata: Record<string, unknown>): void {
    const running = this.#running.get(taskId);
    if (running === undefined || running.settled) return;
    running.settled = true;
    running.bus.publish(
      AgentEvent.statusUpdate({
        taskId,
        contextId: running.contextId,
        status: { state, message: text === undefined ? undefined : agentMessage(running.contextId, taskId, text, metadata), timestamp: now() },
        metadata,
      }),
    );
  }
}

// Status text carries the agent's words (error messages, progress notes, rule names), and a
// client shows it on a terminal or a page: escaped here, as every such text is.
function agentMessage(contextId: string, taskId: string | undefined, text: string, metadata: Record<string, unknown>, messageId: string = randomUUID()): Message {
  return { messageId, contextId, taskId: taskId ?? '', role: Role.ROLE_AGENT, parts: [textPart(escapeText(text))], metadata, extensions: [], referenceTaskIds: [] };
}

function clip(text: string): string {
  return text.length <= MAX_REASON ? text : `${text.slice(0, MAX_REASON)}…`;
}

function now(): string {
  return new Date().toISOString();
}
