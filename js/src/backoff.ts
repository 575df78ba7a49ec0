/**
 * Reconnect delays: exponential backoff with full jitter, so a hub restarting under many clients
 * is not met by all of them in the same instant. Owns only the arithmetic; never sleeps or
 * schedules anything itself.
 */

/** Bounds of the delays, in milliseconds. */
export interface BackoffOptions {
  /** The first delay's upper bound. Default 1000. */
  initialDelayMs?: number;
  /** No delay is longer than this. Default 30 000. */
  maxDelayMs?: number;
}

/**
 * The delay before retry number `attempt` (0 for the first retry): a random value between half
 * and all of `min(max, initial * 2^attempt)`, so it never drops to zero and never exceeds the cap.
 */
export function backoffDelay(attempt: number, options: BackoffOptions = {}, random = Math.random): number {
  const initial = options.initialDelayMs ?? 1000;
  const max = options.maxDelayMs ?? 30_000;
  const ceiling = Math.min(max, initial * 2 ** Math.min(attempt, 30));
  return Math.round(ceiling / 2 + random() * (ceiling / 2));
}
