// The tasks a2aServer remembers for tasks/get and tasks/cancel: per caller, at most `max` in
// all and at most `maxBytes` of them (the oldest go first), so callers cannot grow the
// server's memory without bound: a task keeps the caller's message and the reply, each as
// large as a body may be.
import { TaskState, type ListTasksRequest, type ListTasksResponse, type Task } from '@a2a-js/sdk';
import type { ServerCallContext, TaskStore } from '@a2a-js/sdk/server';

interface Kept {
  readonly task: Task;
  readonly bytes: number;
}

export class BoundedTaskStore implements TaskStore {
  readonly #max: number;
  readonly #maxBytes: number;
  /** `owner \0 taskId` → task, in insertion order (a save moves it to the end). */
  readonly #tasks = new Map<string, Kept>();
  #bytes = 0;

  constructor(max: number, maxBytes: number) {
    this.#max = max;
    this.#maxBytes = maxBytes;
  }

  async load(taskId: string, context: ServerCallContext): Promise<Task | undefined> {
    const kept = this.#tasks.get(keyOf(context, taskId));
    return kept === undefined ? undefined : structuredClone(kept.task);
  }

  async save(task: Task, context: ServerCallContext): Promise<void> {
    const key = keyOf(context, task.id);
    this.#drop(key);
    const kept = { task: structuredClone(task), bytes: sizeOf(task) };
    this.#tasks.set(key, kept);
    this.#bytes += kept.bytes;
    // The newest stays even alone over the budget: the task running now must be found.
    while (this.#tasks.size > 1 && (this.#tasks.size > this.#max || this.#bytes > this.#maxBytes)) this.#drop(this.#tasks.keys().next().value!);
  }

  /**
   * The caller's tasks, newest first, one page (`pageSize`, default 50, at most 100). The page
   * token is the position of the page's first task in that order; a token that is not one
   * starts at the first task.
   */
  async list(params: ListTasksRequest, context: ServerCallContext): Promise<ListTasksResponse> {
    const prefix = `${ownerOf(context)}\0`;
    let tasks = [...this.#tasks].filter(([key]) => key.startsWith(prefix)).map(([, kept]) => kept.task).reverse();
    if (params.contextId) tasks = tasks.filter((t) => t.contextId === params.contextId);
    if (params.status !== undefined && params.status !== TaskState.TASK_STATE_UNSPECIFIED) tasks = tasks.filter((t) => t.status?.state === params.status);
    const pageSize = Math.min(Math.max(params.pageSize ?? 50, 1), 100);
    const start = /^\d{1,9}$/.test(params.pageToken ?? '') ? Number(params.pageToken) : 0;
    const page = tasks.slice(start, start + pageSize).map((t) => (params.includeArtifacts ? structuredClone(t) : { ...structuredClone(t), artifacts: [] }));
    const next = start + pageSize < tasks.length ? String(start + pageSize) : '';
    return { tasks: page, nextPageToken: next, pageSize, totalSize: tasks.length };
  }

  #drop(key: string): void {
    const kept = this.#tasks.get(key);
    if (kept === undefined) return;
    this.#tasks.delete(key);
    this.#bytes -= kept.bytes;
  }
}

/** About what a task holds, in bytes (its JSON's length; a value JSON cannot write counts as the whole budget would). */
function sizeOf(task: Task): number {
  try {
    return JSON.stringify(task).length;
  } catch {
    return Number.MAX_SAFE_INTEGER;
  }
}

function ownerOf(context: ServerCallContext): string {
  return context.user?.userName ?? '';
}

function keyOf(context: ServerCallContext, taskId: string): string {
  return `${ownerOf(context)}\0${taskId}`;
}
