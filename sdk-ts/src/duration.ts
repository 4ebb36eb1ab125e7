/** Durations as accepted by `sleep`, `orTimeout` and send delays: milliseconds or a unit object. */
export type Duration =
  | number
  | { days?: number; hours?: number; minutes?: number; seconds?: number; milliseconds?: number };

/** The duration in whole milliseconds (never negative). */
export function millis(duration: Duration): number {
  const ms =
    typeof duration === "number"
      ? duration
      : (duration.days ?? 0) * 86_400_000 +
        (duration.hours ?? 0) * 3_600_000 +
        (duration.minutes ?? 0) * 60_000 +
        (duration.seconds ?? 0) * 1000 +
        (duration.milliseconds ?? 0);
  return Math.max(0, Math.round(ms));
}

/**
 * The duration in whole milliseconds for a journal entry (`sleep.duration_ms`, `send.delay_ms`):
 * like `millis`, but a TypeError naming `what` if it is not finite or not below 2^53.
 */
export function entryMillis(duration: Duration, what: string): number {
  const ms = millis(duration);
  if (!Number.isSafeInteger(ms)) throw new TypeError(`${what} must be a finite duration below 2^53 ms, got ${String(ms)}`);
  return ms;
}
