// The write side of one SSE stream of a2aServer. The SDK's event queue is read as fast as it
// fills (it is unbounded, and the task store records states as they are read), so a slow
// reader cannot be made to wait by not reading: its frames wait here instead, bounded.

/** What SseWriter needs of a `ServerResponse`. */
export interface SseSink {
  write(chunk: string): boolean;
  end(chunk?: string): unknown;
  destroy(): unknown;
  readonly destroyed: boolean;
  once(event: 'drain' | 'close', listener: () => void): unknown;
}

/**
 * Writes SSE frames to one response as fast as its reader takes them: after `write()`
 * returns false, frames wait for 'drain'; when more than `maxBuffered` bytes would wait, the
 * reader is too slow for the stream and the response is destroyed (the task goes on; the
 * peer can read its state with tasks/get).
 */
export class SseWriter {
  readonly #sink: SseSink;
  readonly #maxBuffered: number;
  #pending: string[] = [];
  #pendingBytes = 0;
  #waiting = false;
  #ending = false;
  #ended = false;
  #gone = false;

  constructor(sink: SseSink, maxBuffered: number) {
    this.#sink = sink;
    this.#maxBuffered = maxBuffered;
    sink.once('close', () => this.#drop());
  }

  /** Bytes of frames waiting for the reader. */
  get buffered(): number {
    return this.#pendingBytes;
  }

  /** False once the response is gone (closed by the peer, or cut off as too slow). */
  get open(): boolean {
    return !this.#gone && !this.#sink.destroyed;
  }

  write(frame: string): void {
    if (!this.open || this.#ending) return;
    if (this.#waiting) return this.#queue(frame);
    if (!this.#sink.write(frame)) this.#wait();
  }

  /** Ends the response once every waiting frame is written. */
  end(): void {
    if (!this.open || this.#ending) return;
    this.#ending = true;
    if (this.#pending.length === 0) this.#finish();
  }

  #finish(): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#sink.end();
  }

  #queue(frame: string): void {
    const bytes = Buffer.byteLength(frame);
    if (this.#pendingBytes + bytes > this.#maxBuffered) {
      this.#drop();
      this.#sink.destroy();
      return;
    }
    this.#pending.push(frame);
    this.#pendingBytes += bytes;
  }

  #wait(): void {
    this.#waiting = true;
    this.#sink.once('drain', this.#flush);
  }

  readonly #flush = (): void => {
    this.#waiting = false;
    if (!this.open) return;
    let room = true;
    while (room && this.#pending.length > 0) {
      const frame = this.#pending.shift()!;
      this.#pendingBytes -= Buffer.byteLength(frame);
      room = this.#sink.write(frame);
    }
    // A write that returned false was still taken: end() may follow it.
    if (this.#pending.length === 0 && this.#ending) this.#finish();
    else if (!room) this.#wait();
  };

  #drop(): void {
    this.#gone = true;
    this.#pending = [];
    this.#pendingBytes = 0;
  }
}
