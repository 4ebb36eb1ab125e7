/**
 * Durable promises: the result of a journaled step. They settle from the journal on replay and from
 * completions live, and their combinators record which inputs settled first, so a replay takes the
 * same branch as the original execution.
 */
import { TerminalError, TimeoutError } from "./errors.js";
import { millis, type Duration } from "./duration.js";

/** How a durable promise settled. */
export type Settled<T> = { ok: true; value: T } | { ok: false; error: unknown };

/** The kinds of combinator; each decides from the inputs settled so far, in observed order. */
export type CombinatorKind = "all" | "race" | "any" | "allSettled";

/** What a durable promise needs from the invocation that owns it. */
export interface PromiseHost {
  /** Notes that user code awaits `promise` (a suspension candidate). */
  awaiting(promise: DurablePromise<unknown>): void;
  /** A global, increasing counter giving the order in which promises settled. */
  nextSeq(): number;
  /** Journals a combinator over `promises`. */
  combine(kind: CombinatorKind, promises: readonly DurablePromise<unknown>[]): DurablePromise<unknown>;
  /** A durable timer, for `orTimeout`. */
  sleep(duration: Duration): DurablePromise<void>;
}

/** Result shape of `allSettled`, as for native promises. */
export type SettledResult<T> = { status: "fulfilled"; value: T } | { status: "rejected"; reason: unknown };

type Values<T extends readonly unknown[]> = { -readonly [P in keyof T]: Awaited<T[P]> };

/**
 * A promise whose result is journaled. Await it like any promise; combine it only with the static
 * combinators of this class (native `Promise.race` would not replay deterministically).
 */
export class DurablePromise<T> implements Promise<T> {
  readonly [Symbol.toStringTag] = "DurablePromise";
  private outcome?: Settled<T>;
  private order = 0;
  // Typed loosely so that DurablePromise<T> stays covariant in T, like a native promise.
  private listeners: ((settled: Settled<any>) => void)[] = [];
  private native?: { promise: Promise<T>; resolve: (v: any) => void; reject: (e: unknown) => void };

  /** @internal Created by the SDK only; `pendingOn` lists the unsettled entries it depends on. */
  constructor(
    readonly host: PromiseHost,
    private readonly pendingOn: () => number[],
  ) {}

  then<R1 = T, R2 = never>(
    onfulfilled?: ((value: T) => R1 | PromiseLike<R1>) | null,
    onrejected?: ((reason: unknown) => R2 | PromiseLike<R2>) | null,
  ): Promise<R1 | R2> {
    if (this.outcome === undefined) this.host.awaiting(this as DurablePromise<unknown>);
    return this.promise().then(onfulfilled, onrejected);
  }

  catch<R = never>(onrejected?: ((reason: unknown) => R | PromiseLike<R>) | null): Promise<T | R> {
    return this.then(undefined, onrejected);
  }

  finally(onfinally?: (() => void) | null): Promise<T> {
    return this.then().finally(onfinally);
  }

  /** Transforms the result; the mapper gets `(value)` on success and `(undefined, error)` on failure. */
  map<U>(mapper: (value?: T, failure?: TerminalError) => U): DurablePromise<U> {
    const mapped = new DurablePromise<U>(this.host, () => this.pending());
    this.onSettle((s) => {
      try {
        mapped.settle({ ok: true, value: s.ok ? mapper(s.value) : mapper(undefined, asTerminal(s.error)) });
      } catch (error) {
        mapped.settle({ ok: false, error });
      }
    });
    return mapped;
  }

  /** Fails with a `TimeoutError` if not settled within `duration` (a durable timer races it). */
  orTimeout(duration: Duration): DurablePromise<T> {
    const timer = this.host.sleep(millis(duration)).map(() => {
      throw new TimeoutError(`timed out after ${millis(duration)} ms`);
    });
    return this.host.combine("race", [this as DurablePromise<unknown>, timer]) as DurablePromise<T>;
  }

  /** Settles when all succeed, or fails with the first failure (in observed order). */
  static all<const P extends readonly DurablePromise<unknown>[]>(promises: P): DurablePromise<Values<P>> {
    return combine("all", promises) as DurablePromise<Values<P>>;
  }

  /** Settles like the first input to settle. */
  static race<const P extends readonly DurablePromise<unknown>[]>(promises: P): DurablePromise<Awaited<P[number]>> {
    return combine("race", promises) as DurablePromise<Awaited<P[number]>>;
  }

  /** Succeeds with the first success, or fails with an `AggregateError` when all fail. */
  static any<const P extends readonly DurablePromise<unknown>[]>(promises: P): DurablePromise<Awaited<P[number]>> {
    return combine("any", promises) as DurablePromise<Awaited<P[number]>>;
  }

  /** Settles when every input has settled, with each one's status. */
  static allSettled<const P extends readonly DurablePromise<unknown>[]>(
    promises: P,
  ): DurablePromise<{ -readonly [K in keyof P]: SettledResult<Awaited<P[K]>> }> {
    return combine("allSettled", promises) as DurablePromise<{ -readonly [K in keyof P]: SettledResult<Awaited<P[K]>> }>;
  }

  /** @internal Whether and how it settled. */
  get settled(): Settled<T> | undefined {
    return this.outcome;
  }

  /** @internal Position of this promise in the global settle order (0 while pending). */
  get settleOrder(): number {
    return this.order;
  }

  /** @internal Unsettled journal entries this promise waits on. */
  pending(): number[] {
    return this.outcome === undefined ? this.pendingOn() : [];
  }

  /** @internal Settles once; later calls are ignored. */
  settle(settled: Settled<T>): void {
    if (this.outcome !== undefined) return;
    this.outcome = settled;
    this.order = this.host.nextSeq();
    const listeners = this.listeners;
    this.listeners = [];
    for (const listener of listeners) listener(settled);
    if (this.native) {
      if (settled.ok) this.native.resolve(settled.value);
      else this.native.reject(settled.error);
    }
  }

  /** @internal Runs `listener` when settled (at once if already settled). */
  onSettle(listener: (settled: Settled<T>) => void): void {
    if (this.outcome !== undefined) listener(this.outcome);
    else this.listeners.push(listener);
  }

  private promise(): Promise<T> {
    if (this.native === undefined) {
      let resolve!: (v: T) => void;
      let reject!: (e: unknown) => void;
      const promise = new Promise<T>((res, rej) => {
        resolve = res;
        reject = rej;
      });
      this.native = { promise, resolve, reject };
      if (this.outcome !== undefined) {
        if (this.outcome.ok) resolve(this.outcome.value);
        else reject(this.outcome.error);
      }
    }
    return this.native.promise;
  }
}

/** Restate's name for the same thing, so code written against it keeps compiling. */
export { DurablePromise as RestatePromise };

function asTerminal(error: unknown): TerminalError {
  return error instanceof TerminalError ? error : new TerminalError(error instanceof Error ? error.message : String(error));
}

function combine(kind: CombinatorKind, promises: readonly DurablePromise<unknown>[]): DurablePromise<unknown> {
  const first = promises[0];
  if (first === undefined) throw new TypeError(`DurablePromise.${kind} needs at least one promise`);
  return first.host.combine(kind, promises);
}

/**
 * Decides a combinator from the inputs settled so far, given in observed order (positions into
 * `inputs`); returns undefined while undecided. Pure, so replay reaches the same decision.
 */
export function decide(kind: CombinatorKind, inputs: readonly Settled<unknown>[], order: readonly number[]): Settled<unknown> | undefined {
  const at = (i: number) => inputs[i] as Settled<unknown>;
  switch (kind) {
    case "race":
      return order.length > 0 ? at(order[0] as number) : undefined;
    case "all": {
      const failed = order.find((i) => !at(i).ok);
      if (failed !== undefined) return at(failed);
      if (order.length < inputs.length) return undefined;
      return { ok: true, value: inputs.map((s) => (s as { value: unknown }).value) };
    }
    case "any": {
      const won = order.find((i) => at(i).ok);
      if (won !== undefined) return at(won);
      if (order.length < inputs.length) return undefined;
      const errors = inputs.map((s) => (s as { error: unknown }).error);
      return { ok: false, error: new AggregateError(errors, "all promises failed") };
    }
    case "allSettled":
      if (order.length < inputs.length) return undefined;
      return {
        ok: true,
        value: inputs.map((s) => (s.ok ? { status: "fulfilled", value: s.value } : { status: "rejected", reason: s.error })),
      };
  }
}
