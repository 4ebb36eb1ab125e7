/**
 * Service definitions: `service`, `object` and `workflow`, and the `handlers` helpers that attach a
 * handler's kind and serdes. A definition is plain data the endpoint binds and clients are typed by.
 */
import type { AttemptSettingsManifest, HandlerKind, RetryPolicyManifest, ServiceType } from "./protocol/index.js";
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

/** Per-handler options: serdes of input and output (JSON by default), retries and timeouts. */
export interface HandlerOptions extends AttemptOptions {
  input?: Serde<any>;
  output?: Serde<any>;
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

/** Handler helpers: `handlers.handler` for services, `object.exclusive/shared`, `workflow.workflow/shared`. */
export const handlers = {
  handler: helper(undefined),
  object: { exclusive: helper("exclusive"), shared: helper("shared") },
  workflow: { workflow: helper("workflow"), shared: helper("shared") },
};

/** The handler metadata of a definition's handler, with the defaults of its service type. */
export function handlerMeta(type: ServiceType, name: string, handler: AnyHandler): Required<Omit<HandlerMeta, "attempts">> & Pick<HandlerMeta, "attempts"> {
  const meta = (handler as Tagged)[META];
  const fallback: HandlerKind = type === "object" ? "exclusive" : type === "workflow" && name === "run" ? "workflow" : "shared";
  return {
    kind: type === "service" ? "shared" : (meta?.kind ?? fallback),
    input: meta?.input ?? serde.json,
    output: meta?.output ?? serde.json,
    attempts: meta?.attempts,
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
