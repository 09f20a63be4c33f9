// agent-switchboard/testing: the kit for unit-testing agent workflows on the real bus.
// A preset (createTestBus), scripted stub agents, a transcript of everything that crossed
// the bus, and idle helpers that work with vitest fake timers. See docs/testing.md.
export { createTestBus, closeBus, sequentialIds, fakeableClock, ALLOW_ALL, type TestBusOptions, type CloseBusOptions, type AnyContracts } from './preset.js';
export {
  stubAgent,
  fail,
  delay,
  never,
  manual,
  sequence,
  type StubAgent,
  type StubBehavior,
  type StubCall,
  type StubFunction,
  type StubResponse,
  type StubResult,
  type StubScript,
  type StubValue,
} from './stub-agent.js';
export {
  recordTranscript,
  formatEntry,
  type Transcript,
  type TranscriptEntry,
  type TranscriptEvent,
  type TranscriptQuery,
  type TranscriptAuditError,
  type TranscriptOptions,
  type TranscriptSource,
  type LineOptions,
} from './transcript.js';
export { runUntilIdle, advanceUntilIdle, flushMicrotasks, type FakeTimers, type AdvanceOptions, type IdleSource } from './idle.js';
