// Tells Rust about user activity so the idle lock waits, at most once per `intervalMs`.

/** Returns a function to call on every pointerdown/keydown; it calls `touch` throttled. */
export function throttledTouch(
  touch: () => Promise<unknown>,
  intervalMs = 15_000,
  now: () => number = Date.now,
): () => void {
  let last = -Infinity;
  return () => {
    const t = now();
    if (t - last < intervalMs) return;
    last = t;
    touch().catch(() => {
      // Locked already: the `locked` event reloads the page.
    });
  };
}
