/**
 * The 2023 API of the founding post, as thin aliases over the current one: routers become services
 * (unkeyed) or virtual objects (keyed), `ctx.rpc/send/sendDelayed` become calls and sends by name,
 * `ctx.sideEffect` is `ctx.run`. Import it as `@holdfast/sdk/legacy`.
 */
import { object, service, type AnyHandler, type Definition } from "./definitions.js";
import { endpoint, type EndpointOptions, type NodeHandler } from "./endpoint.js";
import { methodProxy, type ObjectContext } from "./context.js";
import { serde } from "./serde.js";
import type { Duration } from "./duration.js";

export { TerminalError } from "./errors.js";

/** Names a router by its path; `keyed` is optional when the router is bound in this process. */
export interface ServiceApi<M = any> {
  path: string;
  keyed?: boolean;
  /** @internal Carries the router type for typed clients. */
  readonly __router?: M;
}

type Fn = (ctx: any, ...args: any[]) => any;
/** A client of a router: the context parameter dropped, keyed methods taking the key first. */
export type RpcClient<M> = { [K in keyof M]: M[K] extends (ctx: any, ...args: infer A) => infer O ? (...args: A) => Promise<Awaited<O>> : never };
/** A one-way client of a router. */
export type SendClient<M> = { [K in keyof M]: M[K] extends (ctx: any, ...args: infer A) => any ? (...args: A) => void : never };

/** The 2023 context: the object context plus `rpc`, `send`, `sendDelayed` and `sideEffect`. */
export interface RpcContext extends ObjectContext {
  rpc<M>(api: ServiceApi<M>): RpcClient<M>;
  send<M>(api: ServiceApi<M>): SendClient<M>;
  sendDelayed<M>(api: ServiceApi<M>, delay: Duration): SendClient<M>;
  sideEffect<T>(action: () => T | Promise<T>): Promise<T>;
}

/** An unkeyed router: handlers `(ctx, request)`. */
export interface Router<M> {
  readonly keyed: false;
  readonly handlers: M;
}
/** A keyed router: handlers `(ctx, key, request)`, invocations serialized per key. */
export interface KeyedRouter<M> {
  readonly keyed: true;
  readonly handlers: M;
}

/** Makes an unkeyed router. */
export function router<M extends Record<string, Fn>>(handlers: M): Router<M> {
  return { keyed: false, handlers };
}

/** Makes a keyed router. */
export function keyedRouter<M extends Record<string, Fn>>(handlers: M): KeyedRouter<M> {
  return { keyed: true, handlers };
}

/** Which bound paths are keyed, so that `ctx.rpc({path})` knows whether the first argument is a key. */
const boundKeyed = new Map<string, boolean>();

function isKeyed(api: ServiceApi, args: unknown[]): boolean {
  return api.keyed ?? boundKeyed.get(api.path) ?? args.length >= 2;
}

function target(api: ServiceApi, args: unknown[]): { key?: string; parameter: unknown } {
  if (!isKeyed(api, args)) return { parameter: args[0] };
  const key = args[0];
  return { key: typeof key === "string" ? key : JSON.stringify(key), parameter: args[1] };
}

function legacyContext(ctx: ObjectContext): RpcContext {
  const sender = (api: ServiceApi, delay?: Duration) =>
    methodProxy((method, args) =>
      ctx.genericSend({ service: api.path, method, ...target(api, args), inputSerde: serde.json, delay }),
    );
  const extras = {
    rpc: (api: ServiceApi) =>
      methodProxy((method, args) =>
        ctx.genericCall({ service: api.path, method, ...target(api, args), inputSerde: serde.json, outputSerde: serde.json }),
      ),
    send: (api: ServiceApi) => sender(api),
    sendDelayed: (api: ServiceApi, delay: Duration) => sender(api, delay),
    sideEffect: <T>(action: () => T | Promise<T>) => ctx.run("sideEffect", action),
  };
  return Object.assign(Object.create(ctx) as ObjectContext, extras) as RpcContext;
}

function toDefinition(path: string, r: Router<Record<string, Fn>> | KeyedRouter<Record<string, Fn>>): Definition {
  const handlers: Record<string, AnyHandler> = {};
  for (const [name, fn] of Object.entries(r.handlers)) {
    handlers[name] = r.keyed
      ? (ctx: ObjectContext, request: unknown) => fn(legacyContext(ctx), ctx.key, request)
      : (ctx: ObjectContext, request: unknown) => fn(legacyContext(ctx), request);
  }
  return r.keyed ? object({ name: path, handlers }) : service({ name: path, handlers });
}

/** The 2023 server: bind routers under paths, then `listen`. */
export class RestateServer {
  private readonly ep;

  constructor(options?: EndpointOptions) {
    this.ep = endpoint(options);
  }

  /** Binds an unkeyed router as a service named `path`. */
  bindRouter<M>(path: string, r: Router<M>): this {
    boundKeyed.set(path, false);
    this.ep.bind(toDefinition(path, r as Router<Record<string, Fn>>));
    return this;
  }

  /** Binds a keyed router as a virtual object named `path`. */
  bindKeyedRouter<M>(path: string, r: KeyedRouter<M>): this {
    boundKeyed.set(path, true);
    this.ep.bind(toDefinition(path, r as KeyedRouter<Record<string, Fn>>));
    return this;
  }

  /** Serves discovery and invocations on `port` (HTTP/2 and HTTP/1.1) of `host` (default loopback). */
  listen(port?: number, host?: string): Promise<number> {
    return this.ep.listen(port, host);
  }

  /** A Node handler for the caller's own `http2` server. */
  http2Handler(): NodeHandler {
    return this.ep.http2Handler();
  }

  /** A Fetch API handler. */
  handler(): { fetch: (request: globalThis.Request) => Promise<Response> } {
    return this.ep.handler();
  }
}

/** Creates a 2023-style server. */
export function createServer(options?: EndpointOptions): RestateServer {
  return new RestateServer(options);
}
