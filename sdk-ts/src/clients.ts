/**
 * A small ingress client for callers outside Holdfast: call and send (with delay and idempotency
 * key) to services, objects and workflows over the kernel's HTTP ingress, attach to invocations,
 * and complete awakeables. Failures arrive as `TerminalError` with the invocation's code and message.
 */
import { TerminalError } from "./errors.js";
import { entryMillis } from "./duration.js";
import { serde as serdes, type Serde } from "./serde.js";
import { CallOptions, SendOptions, checkAwakeableId, methodProxy, rpc } from "./context.js";
import type { Definition } from "./definitions.js";

export { rpc };

/** Where the ingress is, and headers to send with every request. */
export interface ConnectOptions {
  url: string;
  headers?: Record<string, string>;
}

/** What a send returns: the id of the new (or deduplicated) invocation. */
export interface SendResponse {
  invocationId: string;
  status: "Accepted" | "PreviouslyAccepted";
  executionTime?: string;
}

type Params<F> = F extends (ctx: any, ...args: infer A) => any ? A : never;
type Out<F> = F extends (...args: any[]) => infer O ? Awaited<O> : never;
/** An ingress client: one method per handler. */
export type IngressClient<M> = { [K in keyof M]: (...args: [...Params<M[K]>, CallOptions?]) => Promise<Out<M[K]>> };
/** An ingress send client: one method per handler. */
export type IngressSendClient<M> = { [K in keyof M]: (...args: [...Params<M[K]>, SendOptions?]) => Promise<SendResponse> };

/** A connection to the ingress of a Holdfast cluster. */
export class Ingress {
  constructor(private readonly options: ConnectOptions) {}

  serviceClient<M>(def: Definition<string, M>): IngressClient<M> {
    return this.caller(def.name, undefined) as IngressClient<M>;
  }
  objectClient<M>(def: Definition<string, M>, key: string): IngressClient<M> {
    return this.caller(def.name, key) as IngressClient<M>;
  }
  workflowClient<M>(def: Definition<string, M>, key: string): IngressClient<M> {
    return this.caller(def.name, key) as IngressClient<M>;
  }
  serviceSendClient<M>(def: Definition<string, M>): IngressSendClient<M> {
    return this.sender(def.name, undefined) as IngressSendClient<M>;
  }
  objectSendClient<M>(def: Definition<string, M>, key: string): IngressSendClient<M> {
    return this.sender(def.name, key) as IngressSendClient<M>;
  }
  workflowSendClient<M>(def: Definition<string, M>, key: string): IngressSendClient<M> {
    return this.sender(def.name, key) as IngressSendClient<M>;
  }

  /** Waits for an invocation's result (by id, or for a send's invocation). */
  async attach<T = unknown>(invocation: string | SendResponse, output: Serde<T> = serdes.json): Promise<T> {
    const id = typeof invocation === "string" ? invocation : invocation.invocationId;
    return output.deserialize(await this.request("GET", `/restate/invocation/${encodeURIComponent(id)}/attach`));
  }

  /** Resolves an awakeable from outside; a malformed id is refused (400) without a request. */
  async resolveAwakeable<T>(id: string, payload?: T, serde: Serde<T> = serdes.json): Promise<void> {
    checkAwakeableId(id);
    await this.request("POST", `/restate/awakeables/${encodeURIComponent(id)}/resolve`, serde.serialize(payload as T));
  }

  /** Rejects an awakeable from outside: its handler gets a `TerminalError` with `reason` (code 500). */
  async rejectAwakeable(id: string, reason: string): Promise<void> {
    checkAwakeableId(id);
    await this.request("POST", `/restate/awakeables/${encodeURIComponent(id)}/reject`, new TextEncoder().encode(reason), "text/plain");
  }

  private path(service: string, key: string | undefined, method: string): string {
    const parts = key === undefined ? [service, method] : [service, key, method];
    return "/" + parts.map(encodeURIComponent).join("/");
  }

  private caller(service: string, key: string | undefined) {
    return methodProxy(async (method, args) => {
      const opts = args.at(-1) instanceof CallOptions ? (args.pop() as CallOptions).options : {};
      const input = opts.input ?? serdes.json;
      const body = await this.request("POST", this.path(service, key, method), input.serialize(args[0]), input.contentType, {
        ...opts.headers,
        ...(opts.idempotencyKey ? { "idempotency-key": opts.idempotencyKey } : {}),
      });
      return (opts.output ?? serdes.json).deserialize(body);
    });
  }

  private sender(service: string, key: string | undefined) {
    return methodProxy(async (method, args) => {
      const opts = args.at(-1) instanceof SendOptions ? (args.pop() as SendOptions).options : {};
      const input = opts.input ?? serdes.json;
      // The ingress reads Restate's duration syntax (`10s`, `1h30m`, `500ms`); whole milliseconds always fit.
      const query = opts.delay === undefined ? "" : `?delay=${entryMillis(opts.delay, "a send delay")}ms`;
      const body = await this.request("POST", `${this.path(service, key, method)}/send${query}`, input.serialize(args[0]), input.contentType, {
        ...opts.headers,
        ...(opts.idempotencyKey ? { "idempotency-key": opts.idempotencyKey } : {}),
      });
      return JSON.parse(new TextDecoder().decode(body)) as SendResponse;
    });
  }

  private async request(method: string, path: string, body?: Uint8Array, contentType?: string, headers?: Record<string, string>): Promise<Uint8Array> {
    const response = await fetch(new URL(path, this.options.url), {
      method,
      headers: { ...this.options.headers, ...headers, ...(body && body.length > 0 && contentType ? { "content-type": contentType } : {}) },
      body: body && body.length > 0 ? body : undefined,
    });
    const bytes = new Uint8Array(await response.arrayBuffer());
    if (response.ok) return bytes;
    let failure: { code?: number; message?: string } = {};
    try {
      failure = JSON.parse(new TextDecoder().decode(bytes)) as typeof failure;
    } catch {
      failure = { message: new TextDecoder().decode(bytes) };
    }
    throw new TerminalError(failure.message ?? `HTTP ${response.status}`, { errorCode: failure.code ?? response.status });
  }
}

/** Connects to an ingress. */
export function connect(options: ConnectOptions): Ingress {
  return new Ingress(options);
}
