import { escapeText } from './escape-text.js';

/** Single warnings per window; beyond them, refusals are counted into the window's summary. */
const BURST = 10;
/** How long a window lasts. */
const WINDOW_MS = 60_000;

/**
 * Process warnings about refusals that a peer can cause at will (a forged operator request):
 * the first {@link BURST} of each minute are written one by one, the rest are counted and
 * written as one warning when the minute ends (or at {@link close}), naming how many and
 * their codes. A flood therefore costs a few lines a minute, never one per refusal.
 */
export class WarningSummary {
  readonly #code: string;
  readonly #what: string;
  #windowStart = 0;
  #inWindow = 0;
  #counted = 0;
  readonly #codes = new Map<string, number>();
  #timer: ReturnType<typeof setTimeout> | undefined;
  readonly #now: () => number;

  /**
   * @param code the warning's code, e.g. `SWITCHBOARD_OPERATOR_REFUSED`
   * @param what what is refused, plural, for the summary ("operator requests")
   */
  constructor(code: string, what: string, now: () => number = Date.now) {
    this.#code = code;
    this.#what = what;
    this.#now = now;
  }

  /** One refusal: written at once (escaped: it quotes a peer's text) or counted. */
  warn(code: string, message: string): void {
    const now = this.#now();
    if (now - this.#windowStart >= WINDOW_MS && this.#timer === undefined) {
      this.#windowStart = now;
      this.#inWindow = 0;
    }
    if (this.#inWindow < BURST) {
      this.#inWindow++;
      process.emitWarning(`agent-switchboard: ${escapeText(message)}`, { code: this.#code });
      return;
    }
    this.#counted++;
    this.#codes.set(code, (this.#codes.get(code) ?? 0) + 1);
    if (this.#timer === undefined) {
      this.#timer = setTimeout(() => this.flush(), Math.max(0, this.#windowStart + WINDOW_MS - now));
      this.#timer.unref?.();
    }
  }

  /** Writes the summary of what was counted, if anything, and starts a new window. */
  flush(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#counted === 0) return;
    const codes = [...this.#codes].map(([code, n]) => `${code} ×${n}`).join(', ');
    process.emitWarning(`agent-switchboard: ${this.#counted} more ${this.#what} refused since ${new Date(this.#windowStart).toISOString()} (${codes}); only the first ${BURST} of a minute are written one by one`, {
      code: this.#code,
    });
    this.#counted = 0;
    this.#codes.clear();
    this.#windowStart = this.#now();
    this.#inWindow = 0;
  }

  /** Writes what is counted; nothing is kept. */
  close(): void {
    this.flush();
  }
}
