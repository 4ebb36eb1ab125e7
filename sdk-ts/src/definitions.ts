/**
 * Service definitions: `service`, `object` and `workflow`, and the `handlers` helpers that attach a
 * handler's kind and serdes. A definition is plain data the endpoint binds and clients are typed by.
 */
import type { AttemptSettingsManifest, HandlerKind, HandlerScheduleManifest, RetryPolicyManifest, ServiceType } from "./protocol/index.js";
import { millis, type Duration } from "./duration.js";
import { serde, type Serde } from "./serde.js";

/**
 * How the kernel retries failed attempts (Restate's `RetryPolicy` shape). Unset fields keep the
 * service's value, then the kernel node's configuration (50 ms doubling up to 60 s, 70 attempts,
 * then pause).
 */
export interface RetryPolicy {
  /** Attempts, the first included, before `onMaxAttempts` applies (at least 1). */
  maxAttempts?: number;
  /** Once the attempts are used up: keep the invocation paused until resumed, or fail it. */
  onMaxAttempts?: "pause" | "kill";
  /** Delay before the first retry. */
  initialInterval?: Duration;
  /** Upper bound of any delay. */
  maxInterval?: Duration;
  /** Each further delay is the previous one times this factor (at least 1). */
  exponentiationFactor?: number;
}

/** Retry and timeout options of a service (every handler) or of one handler. */
export interface AttemptOptions {
  /** Backoff between failed attempts and what happens once they are used up. */
  retryPolicy?: RetryPolicy;
  /** Silence after which the kernel asks an attempt to suspend. */
  inactivityTimeout?: Duration;
  /** Time after that request at which the kernel aborts a still running attempt. */
  abortTimeout?: Duration;
}

/** Per-service options: retry policy and attempt timeouts of all its handlers. */
export type ServiceOptions = AttemptOptions;

/**
 * A schedule declared with its handler: the kernel invokes the handler on a cron expression (in
 * an IANA time zone) or at a fixed interval, exactly once per tick, from the moment the
 * deployment is registered until the handler no longer declares it. Build one with
 * `handlers.cron(...)` or `handlers.every(...)`.
 */
export interface ScheduleOptions {
  /** Unique name; default `<service>.<handler>` (then `.2`, `.3`… for a handler's further ones). */
  name?: string;
  /** A cron expression: 5 fields, 6 (seconds first) or an alias such as `@hourly`. */
  cron?: string;
  /** The IANA time zone the cron expression is read in (default `UTC`). */
  timezone?: string;
  /** A fixed interval instead of `cron`, at its multiples since the Unix epoch. */
  every?: Duration;
  /** The object's key, or a workflow's key with `{tick}` or `{tick_ms}` in it. */
  key?: string;
  /** The input every tick sends (JSON). */
  input?: unknown;
  /** Ticks missed while the kernel was down: none (`skip`, default), the newest, or `all` up to `catchUpMax`. */
  catchUp?: "skip" | "latest" | "all";
  /** With `catchUp: "all"`, the most missed ticks fired (default 10). */
  catchUpMax?: number;
  /** A tick while the previous one's run goes on: `skip` (default), `queue` or `allow`. */
  overlap?: "skip" | "queue" | "allow";
}

/** Per-handler options: serdes of input and output (JSON by default), retries, timeouts, schedules. */
export interface HandlerOptions extends AttemptOptions {
  input?: Serde<any>;
  output?: Serde<any>;
  /** Schedules that invoke this handler (see {@link ScheduleOptions}). */
  schedule?: ScheduleOptions | ScheduleOptions[];
}

/** The manifest's `schedules` of a handler; a TypeError names the handler and the option at fault. */
export function scheduleSettings(schedules: ScheduleOptions[] | undefined, owner: string): { schedules?: HandlerScheduleManifest[] } {
  if (!schedules || schedules.length === 0) return {};
  return {
    schedules: schedules.map((s, i) => {
      const where = `${owner}: schedule ${s.name ?? i + 1}`;
      if ((s.cron === undefined) === (s.every === undefined)) throw new TypeError(`${where}: give either cron or every`);
      if (s.timezone !== undefined && s.cron === undefined) throw new TypeError(`${where}: timezone applies to cron only`);
      const out: HandlerScheduleManifest = {};
      if (s.name !== undefined) out.name = s.name;
      if (s.cron !== undefined) out.cron = s.cron;
      if (s.timezone !== undefined) out.timezone = s.timezone;
      if (s.every !== undefined) out.every_ms = positiveMillis(s.every, `${where}: every`);
      if (s.key !== undefined) out.key = s.key;
      if (s.input !== undefined) out.input = JSON.parse(JSON.stringify(s.input));
      if (s.catchUp !== undefined) out.catch_up = s.catchUp;
      if (s.catchUpMax !== undefined) {
        if (!Number.isInteger(s.catchUpMax) || s.catchUpMax < 1) throw new TypeError(`${where}: catchUpMax must be an integer >= 1`);
        out.catch_up_max = s.catchUpMax;
      }
      if (s.overlap !== undefined) out.overlap = s.overlap;
      return out;
    }),
  };
}

/** A positive whole number of milliseconds, or a TypeError naming the option. */
function positiveMillis(value: Duration, option: string): number {
  const ms = millis(value);
  if (!Number.isFinite(ms) || ms < 1) throw new TypeError(`${option} must be at least 1 ms`);
  return ms;
}

/** The manifest's retry and timeout fields for `options`; only the options that are set appear. */
export function attemptSettings(options: AttemptOptions | undefined, owner: string): AttemptSettingsManifest {
  const out: AttemptSettingsManifest = {};
  if (!options) return out;
  const policy = options.retryPolicy;
  if (policy) {
    const retry: RetryPolicyManifest = {};
    if (policy.initialInterval !== undefined) retry.initial_interval_ms = positiveMillis(policy.initialInterval, `${owner}: retryPolicy.initialInterval`);
    if (policy.exponentiationFactor !== undefined) {
      const factor = policy.exponentiationFactor;
      if (!Number.isFinite(factor) || factor < 1) throw new TypeError(`${owner}: retryPolicy.exponentiationFactor must be a number >= 1`);
      retry.factor = factor;
    }
    if (policy.maxInterval !== undefined) retry.max_interval_ms = positiveMillis(policy.maxInterval, `${owner}: retryPolicy.maxInterval`);
    if (policy.maxAttempts !== undefined) {
      const attempts = policy.maxAttempts;
      if (!Number.isInteger(attempts) || attempts < 1) throw new TypeError(`${owner}: retryPolicy.maxAttempts must be an integer >= 1`);
      retry.max_attempts = attempts;
    }
    if (policy.onMaxAttempts !== undefined) {
      if (policy.onMaxAttempts !== "pause" && policy.onMaxAttempts !== "kill") {
        throw new TypeError(`${owner}: retryPolicy.onMaxAttempts must be "pause" or "kill"`);
      }
      retry.on_max_attempts = policy.onMaxAttempts;
    }
    out.retry_policy = retry;
  }
  if (options.inactivityTimeout !== undefined) out.inactivity_timeout_ms = positiveMillis(options.inactivityTimeout, `${owner}: inactivityTimeout`);
  if (options.abortTimeout !== undefined) out.abort_timeout_ms = positiveMillis(options.abortTimeout, `${owner}: abortTimeout`);
  return out;
}

/** Any handler function: `(ctx, input) => Promise<output>`. */
export type AnyHandler = (ctx: any, input?: any) => any;

/** What the SDK knows about one handler. */
export interface HandlerMeta {
  kind?: HandlerKind;
  input: Serde<any>;
  output: Serde<any>;
  /** Retry and timeout options declared with the handler. */
  attempts?: AttemptOptions;
  /** Schedules declared with the handler. */
  schedules?: ScheduleOptions[];
}

const META = Symbol.for("holdfast.handler");

type Tagged = AnyHandler & { [META]?: HandlerMeta };

function tag<F extends AnyHandler>(kind: HandlerKind | undefined, optsOrFn: HandlerOptions | F, fn?: F): F {
  const [options, handler] = typeof optsOrFn === "function" ? [{}, optsOrFn] : [optsOrFn, fn];
  if (typeof handler !== "function") throw new TypeError("a handler function is required");
  const wrapped = ((ctx: unknown, input: unknown) => handler(ctx, input)) as Tagged;
  const { retryPolicy, inactivityTimeout, abortTimeout } = options;
  wrapped[META] = {
    kind,
    input: options.input ?? serde.json,
    output: options.output ?? serde.json,
    attempts: { retryPolicy, inactivityTimeout, abortTimeout },
    schedules: options.schedule === undefined ? undefined : [options.schedule].flat(),
  };
  return wrapped as F;
}

/** Options-or-function overloads shared by every handler helper. */
interface HandlerHelper {
  <F extends AnyHandler>(fn: F): F;
  <F extends AnyHandler>(options: HandlerOptions, fn: F): F;
}

const helper =
  (kind: HandlerKind | undefined): HandlerHelper =>
  <F extends AnyHandler>(optsOrFn: HandlerOptions | F, fn?: F) =>
    tag(kind, optsOrFn, fn);

/**
 * Handler helpers: `handlers.handler` for services, `object.exclusive/shared`,
 * `workflow.workflow/shared`; `cron` and `every` build the `schedule` option.
 */
export const handlers = {
  handler: helper(undefined),
  object: { exclusive: helper("exclusive"), shared: helper("shared") },
  workflow: { workflow: helper("workflow"), shared: helper("shared") },
  /** A schedule on cron `expression`: `schedule: handlers.cron("0 3 * * *", { timezone: "Europe/Berlin" })`. */
  cron: (expression: string, options: Omit<ScheduleOptions, "cron" | "every"> = {}): ScheduleOptions => ({ ...options, cron: expression }),
  /** A schedule every `period`: `schedule: handlers.every({ minutes: 5 })`. */
  every: (period: Duration, options: Omit<ScheduleOptions, "cron" | "every" | "timezone"> = {}): ScheduleOptions => ({ ...options, every: period }),
};

/** The handler metadata of a definition's handler, with the defaults of its service type. */
export function handlerMeta(type: ServiceType, name: string, handler: AnyHandler): Required<Omit<HandlerMeta, "attempts" | "schedules">> & Pick<HandlerMeta, "attempts" | "schedules"> {
  const meta = (handler as Tagged)[META];
  const fallback: HandlerKind = type === "object" ? "exclusive" : type === "workflow" && name === "run" ? "workflow" : "shared";
  return {
    kind: type === "service" ? "shared" : (meta?.kind ?? fallback),
    input: meta?.input ?? serde.json,
    output: meta?.output ?? serde.json,
    attempts: meta?.attempts,
    schedules: meta?.schedules,
  };
}

/** A bound-able definition: name, type and handlers. */
export interface Definition<P extends string = string, M = Record<string, AnyHandler>> {
  readonly name: P;
  readonly type: ServiceType;
  readonly handlers: M;
  /** Retry and timeout options of all its handlers. */
  readonly options?: ServiceOptions;
}

/** A stateless service. */
export interface ServiceDefinition<P extends string, M> extends Definition<P, M> {
  readonly type: "service";
}
/** A virtual object: keyed state, exclusive handlers serialized per key. */
export interface ObjectDefinition<P extends string, M> extends Definition<P, M> {
  readonly type: "object";
}
/** A workflow: a `run` handler executed once per key, plus shared handlers. */
export interface WorkflowDefinition<P extends string, M> extends Definition<P, M> {
  readonly type: "workflow";
}

function check(name: string, handlerMap: Record<string, unknown>): void {
  if (!name || typeof name !== "string") throw new TypeError("a definition needs a name");
  for (const [h, fn] of Object.entries(handlerMap)) {
    if (typeof fn !== "function") throw new TypeError(`handler ${name}.${h} is not a function`);
  }
}

/** Defines a stateless service. */
export function service<P extends string, M extends Record<string, AnyHandler>>(def: { name: P; handlers: M; options?: ServiceOptions }): ServiceDefinition<P, M> {
  check(def.name, def.handlers);
  attemptSettings(def.options, def.name);
  return def.options ? { name: def.name, type: "service", handlers: def.handlers, options: def.options } : { name: def.name, type: "service", handlers: def.handlers };
}

/** Defines a virtual object. */
export function object<P extends string, M extends Record<string, AnyHandler>>(def: { name: P; handlers: M; options?: ServiceOptions }): ObjectDefinition<P, M> {
  check(def.name, def.handlers);
  attemptSettings(def.options, def.name);
  return def.options ? { name: def.name, type: "object", handlers: def.handlers, options: def.options } : { name: def.name, type: "object", handlers: def.handlers };
}

/** Defines a workflow; its `run` handler is the workflow, the others are shared. */
export function workflow<P extends string, M extends Record<string, AnyHandler>>(def: { name: P; handlers: M; options?: ServiceOptions }): WorkflowDefinition<P, M> {
  check(def.name, def.handlers);
  attemptSettings(def.options, def.name);
  return def.options ? { name: def.name, type: "workflow", handlers: def.handlers, options: def.options } : { name: def.name, type: "workflow", handlers: def.handlers };
}
