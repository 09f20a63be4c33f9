/**
 * Freezing the faces: a class whose instances are handed to agents (a handle, a handler's
 * ctx) or across the transport seam is frozen with its prototype and every method, getter
 * and setter on it, so code holding one instance cannot patch what every other instance
 * calls (`Object.getPrototypeOf(ctx).ask = …` would otherwise run as the next agent that
 * asks). Built-ins (`Promise.prototype`, `Function.prototype`) are the platform's: code
 * that patches those is outside what one process can defend (see docs/architecture.md).
 */

/** Freezes `cls`, its prototype, and every function defined on either. Returns `cls`. */
export function freezeClass<T extends abstract new (...args: never[]) => unknown>(cls: T): T {
  for (const target of [cls.prototype as object, cls as object]) {
    for (const key of Reflect.ownKeys(target)) {
      const d = Object.getOwnPropertyDescriptor(target, key);
      if (d === undefined) continue;
      for (const f of [d.value, d.get, d.set]) if (typeof f === 'function' && f !== cls) Object.freeze(f);
    }
    Object.freeze(target);
  }
  return cls;
}

/** Freezes an object handed out and each of its own methods (a job's `cancel`, a port's `receive`). */
export function freezeObject<T extends object>(o: T): T {
  for (const key of Reflect.ownKeys(o)) {
    const d = Object.getOwnPropertyDescriptor(o, key);
    if (d !== undefined && typeof d.value === 'function') Object.freeze(d.value);
  }
  return Object.freeze(o);
}
