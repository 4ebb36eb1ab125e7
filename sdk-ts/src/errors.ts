/**
 * Errors a handler can throw or see. A `TerminalError` fails the invocation without retry and
 * reaches the caller with its code and message; any other error is retried by the kernel.
 */

/** Options of a terminal error: the code the caller sees (HTTP-like, 500 by default). */
export interface TerminalErrorOptions {
  errorCode?: number;
}

/** Fails the invocation (or a `run`) for good: no retry, the code and message reach the caller. */
export class TerminalError extends Error {
  /** The error code the caller sees. */
  readonly code: number;

  constructor(message: string, options?: TerminalErrorOptions) {
    super(message);
    this.name = "TerminalError";
    this.code = options?.errorCode ?? 500;
  }
}

/** Delivered at the next await of a cancelled invocation (code 409). */
export class CancelledError extends TerminalError {
  constructor(message = "cancelled") {
    super(message, { errorCode: 409 });
    this.name = "CancelledError";
  }
}

/** Raised by `orTimeout` when the timer wins (code 408). */
export class TimeoutError extends TerminalError {
  constructor(message = "timeout") {
    super(message, { errorCode: 408 });
    this.name = "TimeoutError";
  }
}

/** Error codes of the protocol's `error` message. */
export const ErrorCodes = {
  /** A handler or run failed with a retryable error. */
  INTERNAL: 500,
  /** Input could not be deserialized. */
  BAD_REQUEST: 400,
  CANCELLED: 409,
  TIMEOUT: 408,
  /** Replayed code did not produce the entries recorded in the journal. */
  JOURNAL_MISMATCH: 570,
  /** The peer broke the protocol. */
  PROTOCOL_VIOLATION: 571,
} as const;

/** The terminal error a recorded failure stands for (409 maps to `CancelledError`). */
export function errorFromFailure(failure: { code: number; message: string }): TerminalError {
  if (failure.code === ErrorCodes.CANCELLED) return new CancelledError(failure.message);
  if (failure.code === ErrorCodes.TIMEOUT) return new TimeoutError(failure.message);
  return new TerminalError(failure.message, { errorCode: failure.code });
}

/** The message of anything thrown. */
export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
