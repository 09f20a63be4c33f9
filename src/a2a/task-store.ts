// The tasks a2aServer remembers for tasks/get and tasks/cancel: per caller, at most `max` in
// all (the oldest go first), so callers cannot grow the server's memory without bound.
import { TaskState, type ListTasksRequest, type ListTasksResponse, type Task } from '@a2a-js/sdk';
import type { ServerCallContext, TaskStore } from '@a2a-js/sdk/server';

export class BoundedTaskStore implements TaskStore {
  readonly #max: number;
  /** `owner \0 taskId` → task, in insertion order (a save moves it to the end). */
  readonly #tasks = new Map<string, Task>();

  constructor(max: number) {
    this.#max = max;
  }

  async load(taskId: string, context: ServerCallContext): Promise<Task | undefined> {
    const task = this.#tasks.get(keyOf(context, taskId));
    return task === undefined ? undefined : structuredClone(task);
  }

  async save(task: Task, context: ServerCallContext): Promise<void> {
    const key = keyOf(context, task.id);
    this.#tasks.delete(key);
    this.#tasks.set(key, structuredClone(task));
    while (this.#tasks.size > this.#max) this.#tasks.delete(this.#tasks.keys().next().value!);
  }

  /** The caller's tasks, newest first, one page (`pageSize`, default 50, at most 100). */
  async list(params: ListTasksRequest, context: ServerCallContext): Promise<ListTasksResponse> {
    const prefix = `${ownerOf(context)}\0`;
    let tasks = [...this.#tasks].filter(([key]) => key.startsWith(prefix)).map(([, task]) => task).reverse();
    if (params.contextId) tasks = tasks.filter((t) => t.contextId === params.contextId);
    if (params.status !== undefined && params.status !== TaskState.TASK_STATE_UNSPECIFIED) tasks = tasks.filter((t) => t.status?.state === params.status);
    const pageSize = Math.min(Math.max(params.pageSize ?? 50, 1), 100);
    const page = tasks.slice(0, pageSize).map((t) => (params.includeArtifacts ? structuredClone(t) : { ...structuredClone(t), artifacts: [] }));
    return { tasks: page, nextPageToken: '', pageSize, totalSize: tasks.length };
  }
}

function ownerOf(context: ServerCallContext): string {
  return context.user?.userName ?? '';
}

function keyOf(context: ServerCallContext, taskId: string): string {
  return `${ownerOf(context)}\0${taskId}`;
}
