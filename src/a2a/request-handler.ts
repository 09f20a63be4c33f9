// The SDK's request handler, with one rule of ours before it: a task is one message and its
// answer. A message naming an existing task is refused as an unsupported operation before
// the SDK looks it up, since the SDK would run it on the task's own event bus and, when it
// ends, settle that bus under the first message still in flight.
import type { SendMessageRequest, StreamResponse, Message, Task } from '@a2a-js/sdk';
import { UnsupportedOperationError } from '@a2a-js/sdk/errors';
import { DefaultRequestHandler, type ServerCallContext } from '@a2a-js/sdk/server';

export class OneMessageTasks extends DefaultRequestHandler {
  override async sendMessage(params: SendMessageRequest, context: ServerCallContext): Promise<Message | Task> {
    refuseFollowUp(params);
    return super.sendMessage(params, context);
  }

  override async *sendMessageStream(params: SendMessageRequest, context: ServerCallContext): AsyncGenerator<StreamResponse, void, undefined> {
    refuseFollowUp(params);
    yield* super.sendMessageStream(params, context);
  }
}

function refuseFollowUp(params: SendMessageRequest): void {
  if ((params.message?.taskId ?? '') !== '') {
    throw new UnsupportedOperationError({ message: 'a task here takes one message: send a new message without taskId' });
  }
  // The SDK would look each one up and write the ids it cannot find, the caller's text, to the console.
  if ((params.message?.referenceTaskIds?.length ?? 0) > 0) {
    throw new UnsupportedOperationError({ message: 'a task here takes one message: send it without referenceTaskIds' });
  }
}
