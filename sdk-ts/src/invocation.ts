/**
 * One attempt of one invocation, as seen by the SDK: it collects the start message and the journal,
 * runs the handler, matches the handler's steps against the journal while replaying, emits new
 * entries, and ends the attempt with an output, a suspension or an error (docs/protocol.md).
 */
import { AsyncLocalStorage } from "node:async_hooks";
import {
  COMPLETABLE,
  FLAG_ACK,
  HEADER_LEN,
  MAX_MESSAGE_BYTES,
  encodeMessage,
  isEntry,
  type Body,
  type Message,
  type MessageName,
  type MessageOf,
  type Failure,
  type Outcome,
} from "./protocol/index.js";
import { ErrorCodes, TerminalError, errorFromFailure, messageOf } from "./errors.js";
import { DurablePromise, decide, type CombinatorKind, type PromiseHost, type Settled } from "./promise.js";
import { entryMillis, millis, type Duration } from "./duration.js";
import type { Serde } from "./serde.js";

/** Names of journal entries the handler creates. */
type EntryName = Exclude<MessageName, "start" | "completion" | "entry_ack" | "suspension" | "error" | "end" | "input">;

/** Retry policy of a `run` whose action throws a retryable error. */
export interface RunOptions<T> {
  /** Serde of the result (JSON by default). */
  serde?: Serde<T>;
  /** Total executions of the action before its failure is recorded as terminal. */
  maxRetryAttempts?: number;
  /** Time since the first failure after which the failure is recorded as terminal. */
  maxRetryDuration?: Duration;
  /** Delay before the first retry (default 50 ms). */
  initialRetryInterval?: Duration;
  /** Multiplier of the delay after each retry (default 2). */
  retryIntervalFactor?: number;
  /** Upper bound of the delay (default 10 s). */
  maxRetryInterval?: Duration;
}

/** Where the attempt's frames go, and how it is closed. */
export interface Transport {
  write(frame: Uint8Array): void;
  close(): void;
}

/** Runs the user's handler for a started attempt and returns the serialized output. */
export type HandlerBody = (invocation: Invocation) => Promise<Uint8Array>;

/** Thrown into user code once the attempt has ended, so that it stops at its next step. */
class AttemptEnded extends Error {
  constructor() {
    super("the attempt has ended");
  }
}

const inRun = new AsyncLocalStorage<boolean>();

/**
 * Calls a `run` action and settles with its result, as an async function returning `action()`
 * would (a throw becomes a rejection; a returned promise is followed), at the same ticks.
 */
function startAction<T>(action: () => T | Promise<T>): Promise<T> {
  return new Promise<T>((resolve) => resolve(action()));
}
const COMBINATOR_PREFIX = "holdfast:";
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** The state machine of one attempt; see the module comment. */
export class Invocation implements PromiseHost {
  start?: Body<"start">;
  /** The input entry's value (entry 0). */
  input: Uint8Array = new Uint8Array(0);
  private journal: MessageOf<EntryName | "input">[] = [];
  private nextIndex = 1;
  // The maps and sets below are made when first needed: many attempts never use most of them.
  private completions?: Map<number, Outcome>;
  private acked?: Set<number>;
  private leaves?: Map<number, (outcome: Outcome) => void>;
  private ackWaiters?: Map<number, () => void>;
  private awaited?: Set<DurablePromise<unknown>>;
  private state?: Map<string, Uint8Array | null>;
  private stateComplete = false;
  private seq = 0;
  private runningActions = 0;
  private inputClosed = false;
  private ended = false;
  private started = false;
  private checkScheduled = false;
  private suspendTimer?: NodeJS.Timeout;
  /** Roughly when each sleep entry of this attempt ends (the kernel's deadline is authoritative). */
  private wakeAt?: Map<number, number>;
  private readonly attemptStartedAt = Date.now();
  private donePromise?: Promise<void>;
  private markDone?: () => void;

  constructor(
    private readonly transport: Transport,
    private readonly body: HandlerBody,
    private readonly suspendAfterMs: number,
  ) {}

  /** Resolves when the attempt has ended (output, suspension or error written and closed). */
  get done(): Promise<void> {
    this.donePromise ??= this.ended ? Promise.resolve() : new Promise((resolve) => (this.markDone = resolve));
    return this.donePromise;
  }

  // ---- input from the kernel -------------------------------------------------------------------

  /** Handles one message from the kernel. */
  receive(message: Message): void {
    if (this.ended) return;
    if (message.type === "start") {
      if (this.start) return this.violation("a second start message");
      this.start = message.body;
      this.stateComplete = message.body.state_complete;
    } else if (!this.start) {
      return this.violation(`${message.type} before start`);
    } else if (isEntry(message.type)) {
      if (this.journal.length >= this.start.known_entries) return this.violation("more entries than announced");
      if (this.journal.length === 0 && message.type !== "input") return this.violation("the first entry must be input");
      this.journal.push(message as MessageOf<EntryName | "input">);
    } else if (message.type === "completion") {
      this.complete(message.body.entry, message.body.result);
    } else if (message.type === "entry_ack") {
      (this.acked ??= new Set()).add(message.body.entry);
      this.ackWaiters?.get(message.body.entry)?.();
    } else {
      return this.violation(`unexpected ${message.type} from the kernel`);
    }
    this.maybeStart();
    this.scheduleCheck();
  }

  /** The kernel will send nothing more: from now on, being blocked means suspending at once. */
  closeInput(): void {
    this.inputClosed = true;
    if (this.ended) return;
    if (!this.started) return this.violation("input ended before the journal was complete");
    this.scheduleCheck();
  }

  /** Reports a protocol violation (also used for undecodable input) and ends the attempt. */
  violation(reason: string): void {
    this.fail(ErrorCodes.PROTOCOL_VIOLATION, `protocol violation: ${reason}`);
  }

  /** Drops the attempt without writing anything (the connection is gone). */
  abort(): void {
    this.finish();
  }

  // ---- steps used by the context ---------------------------------------------------------------

  /** Index of the entry created last. */
  get lastIndex(): number {
    return this.nextIndex - 1;
  }

  /**
   * Journals an entry whose result comes later (or now, from `eager`); `decode` maps a successful
   * outcome, `failure` a failed one (by default to the `TerminalError` its code stands for).
   */
  completable<N extends EntryName, T>(
    type: N,
    body: Body<N>,
    decode: (outcome: Outcome) => T,
    failure: (failure: Failure) => unknown = errorFromFailure,
  ): DurablePromise<T> {
    const { index, replayed, recorded } = this.command(type, body);
    const promise = this.leaf<T>(index);
    const settleWith = (outcome: Outcome) => promise.settle(this.settledFrom(outcome, decode, failure));
    const eager = replayed ? undefined : (body as { result?: Outcome }).result;
    const known = recorded ?? eager ?? this.completions?.get(index);
    if (known) settleWith(known);
    else (this.leaves ??= new Map()).set(index, settleWith);
    return promise;
  }

  /** Journals an entry that has no result. */
  oneWay<N extends EntryName>(type: N, body: Body<N>): void {
    this.command(type, body);
  }

  /** Journals a side effect, runs it unless replayed, and releases its result once acknowledged. */
  run<T>(name: string, action: () => T | Promise<T>, serde: Serde<T>, options?: RunOptions<T>): DurablePromise<T> {
    const { index, recorded } = this.command("run", { name });
    const promise = this.leaf<T>(index);
    const fromOutcome = (outcome: Outcome) => this.settledFrom(outcome, (o) => serde.deserialize(o.value ?? new Uint8Array(0)));
    if (recorded) {
      promise.settle(fromOutcome(recorded));
      return promise;
    }
    (this.leaves ??= new Map()).set(index, (outcome: Outcome) => promise.settle(fromOutcome(outcome)));
    this.runningActions++;
    const done = () => {
      this.runningActions--;
      this.scheduleCheck();
    };
    // Settles like an async function returning `action()`, inside the run's context.
    const running: Promise<T> = inRun.run(true, startAction<T>, action);
    void running.then(
      (value) => {
        try {
          let result: Outcome;
          try {
            result = { value: serde.serialize(value) };
          } catch (error) {
            return this.runFailed(index, name, error, options, promise, fromOutcome);
          }
          this.propose(index, name, result, promise, fromOutcome);
        } finally {
          done();
        }
      },
      (error: unknown) => {
        try {
          this.runFailed(index, name, error, options, promise, fromOutcome);
        } finally {
          done();
        }
      },
    );
    return promise;
  }

  private runFailed<T>(
    index: number,
    name: string,
    error: unknown,
    options: RunOptions<T> | undefined,
    promise: DurablePromise<T>,
    fromOutcome: (outcome: Outcome) => Settled<T>,
  ): void {
    if (error instanceof TerminalError) return this.propose(index, name, { failure: { code: error.code, message: error.message } }, promise, fromOutcome);
    const delay = this.retryDelay(index, options);
    if (delay === "exhausted") return this.propose(index, name, { failure: { code: ErrorCodes.INTERNAL, message: messageOf(error) } }, promise, fromOutcome);
    this.fail(ErrorCodes.INTERNAL, `run '${name}' failed: ${messageOf(error)}`, true, index, delay);
  }

  /** Sends the result of the `run` entry at `index`; it is released to the handler once acknowledged. */
  private propose<T>(index: number, name: string, produced: Outcome, promise: DurablePromise<T>, fromOutcome: (outcome: Outcome) => Settled<T>): void {
    if (this.ended || promise.settled) return;
    // A result larger than the kernel accepts fails the step terminally instead.
    const size = produced.value?.length ?? 0;
    const result: Outcome =
      size > MAX_MESSAGE_BYTES
        ? { failure: { code: 413, message: `ctx.run ${name}: a result of ${size} bytes exceeds the limit of ${MAX_MESSAGE_BYTES} bytes (the kernel's invocation.max_message_bytes)` } }
        : produced;
    this.transport.write(encodeMessage({ type: "completion", flags: FLAG_ACK, body: { entry: index, result } }));
    const release = () => promise.settle(fromOutcome(result));
    if (this.acked?.has(index)) release();
    else (this.ackWaiters ??= new Map()).set(index, release);
  }

  /** The mutable state cache: the eager snapshot plus this attempt's writes. */
  stateCache(): { values: Map<string, Uint8Array | null>; complete: boolean } {
    // The eager snapshot becomes a map when state is first used.
    return { values: (this.state ??= new Map(this.start?.state)), complete: this.stateComplete };
  }

  /** Marks the whole state as known (after `clearAll`). */
  markStateComplete(): void {
    this.stateComplete = true;
  }

  /** Deterministic clock-free ordering for combinators. */
  nextSeq(): number {
    return ++this.seq;
  }

  awaiting(promise: DurablePromise<unknown>): void {
    (this.awaited ??= new Set()).add(promise);
    this.scheduleCheck();
  }

  sleep(duration: Duration): DurablePromise<void> {
    const ms = entryMillis(duration, "a sleep");
    const promise = this.completable<"sleep", void>("sleep", { duration_ms: ms }, () => undefined);
    (this.wakeAt ??= new Map()).set(this.lastIndex, Date.now() + ms);
    return promise;
  }

  combine(kind: CombinatorKind, promises: readonly DurablePromise<unknown>[]): DurablePromise<unknown> {
    const { index, recorded } = this.command("run", { name: COMBINATOR_PREFIX + kind });
    const combined = new DurablePromise<unknown>(this, () => [...new Set(promises.flatMap((p) => p.pending()))]);
    const inputs: Settled<unknown>[] = [];
    const order: number[] = [];
    const feed = (i: number) => {
      inputs[i] = promises[i]?.settled as Settled<unknown>;
      order.push(i);
    };
    if (recorded?.value) {
      // Replay: wait until the recorded inputs are settled, then decide in the recorded order.
      const recordedOrder = JSON.parse(decoder.decode(recorded.value)) as number[];
      let missing = recordedOrder.length;
      const replay = () => {
        recordedOrder.forEach(feed);
        const decision = decide(kind, inputs, order);
        if (decision) combined.settle(decision);
        else this.journalMismatch(index, `the recorded ${kind} combinator does not decide on replay`);
      };
      if (missing === 0) replay();
      for (const i of recordedOrder) promises[i]?.onSettle(() => --missing === 0 && replay());
      return combined;
    }
    const record = (decision: Settled<unknown>) => {
      if (this.ended) return;
      const value = encoder.encode(JSON.stringify(order));
      this.transport.write(encodeMessage({ type: "completion", body: { entry: index, result: { value } } }));
      combined.settle(decision);
    };
    const indexed = promises.map((p, i) => ({ p, i }));
    const alreadySettled = indexed.filter(({ p }) => p.settled).sort((a, b) => a.p.settleOrder - b.p.settleOrder);
    for (const { i } of alreadySettled) feed(i);
    const decision = decide(kind, inputs, order);
    if (decision) {
      record(decision);
      return combined;
    }
    for (const { p, i } of indexed) {
      if (p.settled) continue;
      p.onSettle(() => {
        if (combined.settled) return;
        feed(i);
        const next = decide(kind, inputs, order);
        if (next) record(next);
      });
    }
    return combined;
  }

  // ---- attempt lifecycle -----------------------------------------------------------------------

  private maybeStart(): void {
    if (this.started || !this.start || this.journal.length < this.start.known_entries) return;
    this.started = true;
    const input = this.journal[0];
    if (input?.type !== "input") return this.violation("the journal does not start with an input entry");
    this.input = input.body.value;
    this.body(this).then(
      (output) => this.output({ value: output }),
      (error: unknown) => {
        if (this.ended || error instanceof AttemptEnded) return;
        if (error instanceof TerminalError) this.output({ failure: { code: error.code, message: error.message } });
        else this.fail(ErrorCodes.INTERNAL, messageOf(error), true);
      },
    );
  }

  private output(result: Outcome): void {
    if (this.ended) return;
    this.command("output", { result });
    this.transport.write(encodeMessage({ type: "end", body: {} }));
    this.finish();
  }

  private fail(code: number, message: string, retryable = true, related?: number, delay?: number): void {
    if (this.ended) return;
    const body: Body<"error"> = { code, message, retryable };
    if (related !== undefined) body.related_entry = related;
    if (delay !== undefined) body.next_retry_delay_ms = delay;
    this.transport.write(encodeMessage({ type: "error", body }));
    this.finish();
  }

  private journalMismatch(index: number, detail: string): void {
    this.fail(ErrorCodes.JOURNAL_MISMATCH, `journal mismatch at entry ${index}: ${detail}`, true, index);
  }

  private finish(): void {
    if (this.ended) return;
    this.ended = true;
    clearTimeout(this.suspendTimer);
    this.transport.close();
    this.markDone?.();
  }

  /** Records a step: checks it against the journal while replaying, else sends it to the kernel. */
  private command<N extends EntryName>(type: N, body: Body<N>): { index: number; replayed: boolean; recorded?: Outcome } {
    if (inRun.getStore()) throw new TerminalError(`ctx.${type} cannot be used inside ctx.run`);
    if (this.ended) throw new AttemptEnded();
    const index = this.nextIndex++;
    const message = { type, body } as MessageOf<N>;
    const recorded = this.journal[index];
    if (recorded === undefined) {
      const frame = encodeMessage(message);
      const size = frame.length - HEADER_LEN;
      if (size > MAX_MESSAGE_BYTES) {
        this.nextIndex--;
        throw new TerminalError(
          `ctx.${type}: a message of ${size} bytes exceeds the limit of ${MAX_MESSAGE_BYTES} bytes (the kernel's invocation.max_message_bytes)`,
          { errorCode: 413 },
        );
      }
      this.transport.write(frame);
      return { index, replayed: false };
    }
    if (!sameCommand(recorded, message)) {
      this.journalMismatch(index, `the journal has ${describe(recorded)}, the code produced ${describe(message)}`);
      throw new AttemptEnded();
    }
    const result = COMPLETABLE.has(type) ? (recorded.body as { result?: Outcome }).result : undefined;
    return { index, replayed: true, recorded: result };
  }

  private leaf<T>(index: number): DurablePromise<T> {
    return new DurablePromise<T>(this, () => [index]);
  }

  private complete(index: number, outcome: Outcome): void {
    (this.completions ??= new Map()).set(index, outcome);
    const settle = this.leaves?.get(index);
    if (settle) {
      this.leaves?.delete(index);
      settle(outcome);
    }
  }

  private settledFrom<T>(outcome: Outcome, decode: (outcome: Outcome) => T, failure: (failure: Failure) => unknown = errorFromFailure): Settled<T> {
    if (outcome.failure) return { ok: false, error: failure(outcome.failure) };
    try {
      return { ok: true, value: decode(outcome) };
    } catch (error) {
      return { ok: false, error: new TerminalError(`cannot decode result: ${messageOf(error)}`) };
    }
  }

  /** The delay before retrying a failed run at `index`, undefined for the kernel's policy, or exhausted. */
  private retryDelay(index: number, options?: RunOptions<unknown>): number | undefined | "exhausted" {
    const start = this.start as Body<"start">;
    const previous = start.retry_entry === index ? start.retry_count : 0;
    const elapsed = (start.retry_entry === index ? start.retry_elapsed_ms : 0) + (Date.now() - this.attemptStartedAt);
    if (options?.maxRetryAttempts !== undefined && previous + 1 >= options.maxRetryAttempts) return "exhausted";
    if (options?.maxRetryDuration !== undefined && elapsed >= millis(options.maxRetryDuration)) return "exhausted";
    if (options === undefined) return undefined;
    const initial = millis(options.initialRetryInterval ?? 50);
    const delay = initial * (options.retryIntervalFactor ?? 2) ** previous;
    return Math.round(Math.min(delay, millis(options.maxRetryInterval ?? 10_000)));
  }

  // ---- suspension ------------------------------------------------------------------------------

  /** Re-evaluates suspension once the current microtasks have run (in the event loop's check phase). */
  private scheduleCheck(): void {
    if (this.checkScheduled || this.ended || !this.started) return;
    this.checkScheduled = true;
    if (checksDue.push(this) === 1) setImmediate(runDueChecks);
  }

  /** The check `scheduleCheck` asked for. */
  runScheduledCheck(): void {
    this.checkScheduled = false;
    this.checkSuspension();
  }

  /** Entries the handler is blocked on, or undefined if it is not blocked only on the kernel. */
  private blockedOn(): number[] | undefined {
    const awaited = this.awaited;
    if (awaited === undefined) return undefined;
    for (const p of awaited) if (p.settled) awaited.delete(p);
    if (awaited.size === 0 || this.runningActions > 0) return undefined;
    const waiting: number[] = [];
    for (const p of awaited) for (const i of p.pending()) waiting.push(i);
    if (waiting.length <= 1) return waiting.length === 1 ? waiting : undefined;
    return [...new Set(waiting)].sort((a, b) => a - b);
  }

  private checkSuspension(): void {
    if (this.ended) return;
    const blocked = this.blockedOn();
    if (blocked === undefined) {
      clearTimeout(this.suspendTimer);
      this.suspendTimer = undefined;
      return;
    }
    if (this.inputClosed || this.sleepsPastSuspension(blocked)) return this.suspend(blocked);
    this.suspendTimer ??= setTimeout(() => {
      this.suspendTimer = undefined;
      const still = this.blockedOn();
      if (still) this.suspend(still);
    }, this.suspendAfterMs);
  }

  /**
   * Blocked only on sleeps that end after the suspension delay: waiting would only hold the
   * stream and the endpoint's resources until the suspension anyway, so suspend at once.
   */
  private sleepsPastSuspension(blocked: number[]): boolean {
    const horizon = Date.now() + this.suspendAfterMs;
    return blocked.every((index) => (this.wakeAt?.get(index) ?? 0) > horizon);
  }

  private suspend(waitingOn: number[]): void {
    this.transport.write(encodeMessage({ type: "suspension", body: { waiting_on: waitingOn } }));
    this.finish();
  }
}

/** Invocations waiting for their suspension check; one immediate runs the checks of all. */
let checksDue: Invocation[] = [];

function runDueChecks(): void {
  const due = checksDue;
  checksDue = [];
  for (const invocation of due) {
    try {
      invocation.runScheduledCheck();
    } catch (error) {
      // As if thrown by an immediate of its own: the other checks still run.
      queueMicrotask(() => {
        throw error;
      });
    }
  }
}

/** Two entries are the same step if they have the same type and fields, results of completable entries aside. */
function sameCommand(a: Message, b: Message): boolean {
  const strip = (m: Message) => {
    if (!COMPLETABLE.has(m.type)) return encodeMessage({ ...m, flags: 0 } as Message);
    const { result: _result, ...command } = m.body as { result?: unknown };
    return encodeMessage({ ...m, flags: 0, body: command } as Message);
  };
  return a.type === b.type && Buffer.from(strip(a)).equals(strip(b));
}

function describe(message: Message): string {
  const body = message.body as { name?: string; key?: string; service?: string; handler?: string };
  const detail = body.name ?? body.key ?? (body.service ? `${body.service}/${body.handler}` : undefined);
  return detail === undefined ? message.type : `${message.type}(${detail})`;
}
