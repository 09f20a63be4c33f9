/** Where the bus reads the time. Inject one in tests; the default is `Date.now`. */
export interface Clock {
  /** Epoch milliseconds. */
  now(): number;
}

/** The wall clock. Under vitest fake timers `Date.now` is faked too, so this follows them. */
export const systemClock: Clock = { now: () => Date.now() };
