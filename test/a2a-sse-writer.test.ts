// The write side of an a2aServer stream: backpressure and a bound for a slow reader.
import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import { SseWriter, type SseSink } from '../src/a2a/sse-writer.js';

/** A response whose socket takes `room` bytes before write() returns false, until drained. */
class SlowSink extends EventEmitter implements SseSink {
  written: string[] = [];
  buffered = 0;
  ended = false;
  destroyed = false;
  constructor(readonly room: number) {
    super();
  }
  write(chunk: string): boolean {
    this.written.push(chunk);
    this.buffered += chunk.length;
    return this.buffered < this.room;
  }
  ends = 0;
  end(): void {
    this.ended = true;
    this.ends++;
  }
  destroy(): void {
    this.destroyed = true;
    this.emit('close');
  }
  /** The reader took everything written so far. */
  drain(): void {
    this.buffered = 0;
    this.emit('drain');
  }
}

describe('SseWriter', () => {
  it("writes nothing more after write() returns false until 'drain', then the waiting frames in order", () => {
    const sink = new SlowSink(10);
    const writer = new SseWriter(sink, 1024);
    writer.write('aaaaaaaaaa'); // fills the room: write() returns false
    writer.write('b');
    writer.write('c');
    expect(sink.written).toEqual(['aaaaaaaaaa']);
    expect(writer.buffered).toBe(2);
    sink.drain();
    expect(sink.written).toEqual(['aaaaaaaaaa', 'b', 'c']);
    expect(writer.buffered).toBe(0);
  });

  it('ends the response only once the waiting frames are written', () => {
    const sink = new SlowSink(1);
    const writer = new SseWriter(sink, 1024);
    writer.write('first');
    writer.write('last');
    writer.end();
    expect(sink.ended).toBe(false);
    sink.drain();
    expect(sink.written).toEqual(['first', 'last']);
    expect(sink.ended).toBe(true);
    sink.drain();
    expect(sink.ends).toBe(1);
  });

  it('destroys the response rather than keep more than maxBuffered bytes for a slow reader', () => {
    const sink = new SlowSink(1);
    const writer = new SseWriter(sink, 1024);
    writer.write('x');
    for (let i = 0; i < 10_000; i++) writer.write('y'.repeat(100));
    expect(writer.buffered).toBe(0);
    expect(sink.destroyed).toBe(true);
    expect(writer.open).toBe(false);
    expect(sink.written).toEqual(['x']);
  });

  it('drops the waiting frames when the reader goes away', () => {
    const sink = new SlowSink(1);
    const writer = new SseWriter(sink, 1024);
    writer.write('x');
    writer.write('y');
    sink.emit('close');
    expect(writer.buffered).toBe(0);
    writer.write('z');
    sink.drain();
    expect(sink.written).toEqual(['x']);
  });
});
