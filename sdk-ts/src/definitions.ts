/**
 * Service definitions: `service`, `object` and `workflow`, and the `handlers` helpers that attach a
 * handler's kind and serdes. A definition is plain data the endpoint binds and clients are typed by.
 */
import type { HandlerKind, ServiceType } from "./protocol/index.js";
import { serde, type Serde } from "./serde.js";

/** Per-handler options: serdes of input and output (JSON by default). */
export interface HandlerOptions {
  input?: Serde<any>;
  output?: Serde<any>;
}

/** Any handler function: `(ctx, input) => Promise<output>`. */
export type AnyHandler = (ctx: any, input?: any) => any;

/** What the SDK knows about one handler. */
export interface HandlerMeta {
  kind?: HandlerKind;
  input: Serde<any>;
  output: Serde<any>;
}

const META = Symbol.for("holdfast.handler");

type Tagged = AnyHandler & { [META]?: HandlerMeta };

function tag<F extends AnyHandler>(kind: HandlerKind | undefined, optsOrFn: HandlerOptions | F, fn?: F): F {
  const [options, handler] = typeof optsOrFn === "function" ? [{}, optsOrFn] : [optsOrFn, fn];
  if (typeof handler !== "function") throw new TypeError("a handler function is required");
  const wrapped = ((ctx: unknown, input: unknown) => handler(ctx, input)) as Tagged;
  wrapped[META] = { kind, input: options.input ?? serde.json, output: options.output ?? serde.json };
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
export function handlerMeta(type: ServiceType, name: string, handler: AnyHandler): Required<HandlerMeta> {
  const meta = (handler as Tagged)[META];
  const fallback: HandlerKind = type === "object" ? "exclusive" : type === "workflow" && name === "run" ? "workflow" : "shared";
  return {
    kind: type === "service" ? "shared" : (meta?.kind ?? fallback),
    input: meta?.input ?? serde.json,
    output: meta?.output ?? serde.json,
  };
}

/** A bound-able definition: name, type and handlers. */
export interface Definition<P extends string = string, M = Record<string, AnyHandler>> {
  readonly name: P;
  readonly type: ServiceType;
  readonly handlers: M;
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
export function service<P extends string, M extends Record<string, AnyHandler>>(def: { name: P; handlers: M }): ServiceDefinition<P, M> {
  check(def.name, def.handlers);
  return { name: def.name, type: "service", handlers: def.handlers };
}

/** Defines a virtual object. */
export function object<P extends string, M extends Record<string, AnyHandler>>(def: { name: P; handlers: M }): ObjectDefinition<P, M> {
  check(def.name, def.handlers);
  return { name: def.name, type: "object", handlers: def.handlers };
}

/** Defines a workflow; its `run` handler is the workflow, the others are shared. */
export function workflow<P extends string, M extends Record<string, AnyHandler>>(def: { name: P; handlers: M }): WorkflowDefinition<P, M> {
  check(def.name, def.handlers);
  return { name: def.name, type: "workflow", handlers: def.handlers };
}
