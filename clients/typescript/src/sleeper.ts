/**
 * An interruptible wait: a background loop sleeps until its delay passes or something
 * (a local write, a tickle, `stop()`) wakes it.
 * @module
 */

/** A wait that `wake()` ends early. */
export interface Sleeper {
  /** Wait `ms` (or until woken; `Infinity` waits for a wake only). */
  sleep(ms: number): Promise<void>;
  /** End the current wait, or make the next one return at once. */
  wake(): void;
}

/** A {@link Sleeper} on the given timer functions. */
export function createSleeper(
  setTimer: (fn: () => void, ms: number) => unknown = (fn, ms) => setTimeout(fn, ms),
  clearTimer: (handle: unknown) => void = (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
): Sleeper {
  let wakeCurrent: (() => void) | null = null;
  let woken = false;
  return {
    sleep(ms: number): Promise<void> {
      if (woken) {
        woken = false;
        return Promise.resolve();
      }
      return new Promise((resolve) => {
        const handle = Number.isFinite(ms) ? setTimer(() => finish(), Math.max(0, ms)) : undefined;
        const finish = () => {
          if (handle !== undefined) clearTimer(handle);
          wakeCurrent = null;
          resolve();
        };
        wakeCurrent = finish;
      });
    },
    wake(): void {
      if (wakeCurrent) wakeCurrent();
      else woken = true;
    },
  };
}
