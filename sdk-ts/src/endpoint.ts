/**
 * Endpoints: bind definitions and serve discovery (`GET /discover`) and invocations
 * (`POST /invoke/{service}/{handler}`) in both protocol modes, over Node's HTTP/1.1 and HTTP/2
 * (cleartext, prior knowledge) servers or any framework speaking the Fetch API.
 */
import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import { Duplex } from "node:stream";
import {
  FrameDecoder,
  INVOCATION_CONTENT_TYPE,
  MANIFEST_CONTENT_TYPE,
  MAX_PROTOCOL_VERSION,
  MIN_PROTOCOL_VERSION,
  MODE_HEADER,
  concatFrames,
  type Manifest,
  type ProtocolMode,
} from "./protocol/index.js";
import { ErrorCodes, TerminalError, messageOf } from "./errors.js";
import { ContextImpl, type AttemptHeaders } from "./context.js";
import { Invocation, type HandlerBody, type Transport } from "./invocation.js";
import { attemptSettings, handlerMeta, scheduleSettings, type AnyHandler, type Definition } from "./definitions.js";
import { IdentityVerifier } from "./identity.js";
import { SDK_VERSION_NAME } from "./version.js";

/** Endpoint settings. */
export interface EndpointOptions {
  /**
   * In streaming mode, how long a handler blocked only on the kernel waits before suspending
   * (default 30 s). In request/response mode it suspends at once.
   */
  suspendAfterMs?: number;
  /**
   * The kernel's request-identity public keys (`publickeyv1_…`, printed by `holdfast keys
   * public`); when any is given, requests not signed by one of them are answered 401.
   */
  identityKeys?: string[];
}

/** A Node request handler usable with `http.createServer` and `http2.createServer` alike. */
export type NodeHandler = (
  req: http.IncomingMessage | http2.Http2ServerRequest,
  res: http.ServerResponse | http2.Http2ServerResponse,
) => void;

/** A handler an invocation path leads to, with what the SDK knows about it. */
interface Target {
  kind: "invoke";
  def: Definition;
  handler: AnyHandler;
  name: string;
  meta: ReturnType<typeof handlerMeta>;
}

type Route = { kind: "discover" } | Target | { kind: "refuse"; status: number; message: string };

/** How many invocation paths the endpoint remembers the target of. */
const MAX_CACHED_TARGETS = 1024;

const DEFAULT_SUSPEND_AFTER_MS = 30_000;
const HTTP2_PREFACE = Buffer.from("PRI * HTTP/2.0\r\n");

/** Binds definitions and serves them; build one with `endpoint()`. */
/** Where `listen` binds unless told otherwise: loopback, reachable from this machine only. */
const LOOPBACK = "127.0.0.1";

/** The path of a request target, without its query. */
function pathOf(url: string | undefined): string {
  if (url === undefined) return "/";
  const query = url.indexOf("?");
  return query < 0 ? url : url.slice(0, query);
}

export class Endpoint {
  private readonly defs = new Map<string, Definition>();
  /** The targets of invocation paths already routed (the definitions bound are fixed by then). */
  private readonly targets = new Map<string, Target>();
  private options: EndpointOptions = {};
  private verifier = new IdentityVerifier([]);
  private warnedUnverified = false;

  /** Adds a service, object or workflow definition. */
  bind(def: Definition<string, any>): this {
    if (this.defs.has(def.name)) throw new Error(`service ${def.name} is already bound`);
    this.defs.set(def.name, def as Definition);
    this.targets.clear();
    return this;
  }

  /** Changes endpoint settings. */
  withOptions(options: EndpointOptions): this {
    this.options = { ...this.options, ...options };
    if (options.identityKeys) this.verifier = new IdentityVerifier(this.options.identityKeys ?? []);
    return this;
  }

  /**
   * Accepts only requests signed by one of `keys` (Restate's request identity v1; each key is a
   * `publickeyv1_…` string, see `holdfast keys public`); several keys allow rotation. Every other
   * request is answered 401. Throws on a malformed key.
   */
  withIdentityV1(...keys: string[]): this {
    const all = [...(this.options.identityKeys ?? []), ...keys];
    this.verifier = new IdentityVerifier(all);
    this.options = { ...this.options, identityKeys: all };
    return this;
  }

  /** Says once, when the endpoint starts serving, that requests are not verified. */
  private announceVerification(): void {
    if (this.verifier.enabled || this.warnedUnverified) return;
    this.warnedUnverified = true;
    console.warn("holdfast endpoint: no identity keys configured (withIdentityV1), accepting requests without verifying their signatures");
  }

  /** Why the request to `url` with these headers is refused (401), or `undefined`. */
  private identityRefusal(url: string | undefined, header: (name: string) => string | undefined): string | undefined {
    if (!this.verifier.enabled) return undefined;
    return this.verifier.check(pathOf(url), header);
  }

  /** The discovery manifest of the bound definitions. */
  manifest(): Manifest {
    return {
      min_protocol_version: MIN_PROTOCOL_VERSION,
      max_protocol_version: MAX_PROTOCOL_VERSION,
      sdk_version: SDK_VERSION_NAME,
      protocol_modes: ["stream", "request-response"],
      services: [...this.defs.values()].map((def) => ({
        name: def.name,
        type: def.type,
        handlers: Object.entries(def.handlers).map(([name, fn]) => {
          const meta = handlerMeta(def.type, name, fn);
          return {
            name,
            kind: meta.kind,
            input: meta.input.contentType ?? "application/octet-stream",
            output: meta.output.contentType ?? "application/octet-stream",
            ...attemptSettings(meta.attempts, `${def.name}/${name}`),
            ...scheduleSettings(meta.schedules, `${def.name}/${name}`),
          };
        }),
        ...attemptSettings(def.options, def.name),
      })),
    };
  }

  /** A handler for Node's `http` and `http2` servers (e.g. an `http2` server bound to 127.0.0.1). */
  http2Handler(): NodeHandler {
    this.announceVerification();
    return (req, res) => this.serveNode(req, res);
  }

  /** A request handler for Fetch API frameworks; request/response mode unless the mode header asks to stream. */
  handler(): { fetch: (request: globalThis.Request) => Promise<Response> } {
    this.announceVerification();
    return { fetch: (request) => this.serveFetch(request) };
  }

  /**
   * Serves HTTP/2 (cleartext, prior knowledge; streaming by default) and HTTP/1.1 (request/response
   * by default) on one port; resolves with the port once listening.
   *
   * Binds `host` if given, else loopback only (`127.0.0.1`): nothing but processes on this machine
   * can reach the endpoint. Pass `"0.0.0.0"` (or `"::"`) to serve a kernel on another machine,
   * together with `withIdentityV1(...)` so that only the kernel may call it.
   */
  listen(port?: number, host: string = LOOPBACK): Promise<number> {
    const handler = this.http2Handler();
    const h1 = http.createServer(handler);
    // Messages up to 16 MiB may be in flight on one session: above Node's 10 MB default, the
    // session would refuse streams with ENHANCE_YOUR_CALM.
    const h2 = http2.createServer({ maxSessionMemory: 64 }, handler);
    const server = net.createServer((socket) => sniffProtocol(socket, h1, h2));
    return new Promise((resolve, reject) => {
      server.once("error", reject);
      server.listen(port ?? Number(process.env.PORT ?? 9080), host, () => {
        const address = server.address();
        resolve(typeof address === "object" && address ? address.port : 0);
      });
    });
  }

  private route(method: string | undefined, url: string | undefined, contentType: string | undefined): Route {
    const path = pathOf(url);
    let target = this.targets.get(path);
    if (target !== undefined && (target.def.handlers as Record<string, AnyHandler>)[target.name] !== target.handler) {
      this.targets.delete(path);
      target = undefined;
    }
    if (target === undefined) {
      if (/\/discover\/?$/.test(path)) {
        return method === "GET" ? { kind: "discover" } : { kind: "refuse", status: 405, message: "use GET /discover" };
      }
      const match = /\/invoke\/([^/]+)\/([^/]+)\/?$/.exec(path);
      if (!match) return { kind: "refuse", status: 404, message: `no route for ${path}` };
      const [service, handler] = [decodeURIComponent(match[1] as string), decodeURIComponent(match[2] as string)];
      const def = this.defs.get(service);
      const fn = def && Object.hasOwn(def.handlers, handler) ? (def.handlers as Record<string, AnyHandler>)[handler] : undefined;
      if (!def || !fn) return { kind: "refuse", status: 404, message: `no handler ${service}/${handler}` };
      target = { kind: "invoke", def, handler: fn, name: handler, meta: handlerMeta(def.type, handler, fn) };
      if (this.targets.size < MAX_CACHED_TARGETS) this.targets.set(path, target);
    }
    if (method !== "POST") return { kind: "refuse", status: 405, message: "use POST to invoke" };
    if (contentType !== INVOCATION_CONTENT_TYPE && contentType?.split(";")[0]?.trim() !== INVOCATION_CONTENT_TYPE) {
      return { kind: "refuse", status: 415, message: `expected content-type ${INVOCATION_CONTENT_TYPE}` };
    }
    return target;
  }

  private handlerBody(route: Target, attemptHeaders: AttemptHeaders): HandlerBody {
    const meta = route.meta;
    return async (inv) => {
      let input: unknown;
      try {
        input = meta.input.deserialize(inv.input);
      } catch (error) {
        throw new TerminalError(`Failed to deserialize input: ${messageOf(error)}`, { errorCode: ErrorCodes.BAD_REQUEST });
      }
      const output: unknown = await route.handler(new ContextImpl(inv, meta.kind, attemptHeaders), input);
      return meta.output.serialize(output);
    };
  }

  private invocation(route: Target, headers: AttemptHeaders, transport: Transport) {
    const inv = new Invocation(transport, this.handlerBody(route, headers), this.options.suspendAfterMs ?? DEFAULT_SUSPEND_AFTER_MS);
    const decoder = new FrameDecoder();
    return {
      inv,
      push(chunk: Uint8Array) {
        try {
          for (const message of decoder.push(chunk)) inv.receive(message);
        } catch (error) {
          inv.violation(messageOf(error));
        }
      },
      end() {
        try {
          decoder.finish();
          inv.closeInput();
        } catch (error) {
          inv.violation(messageOf(error));
        }
      },
    };
  }

  private serveNode(req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse): void {
    const header = (name: string) => {
      const v = req.headers[name];
      return Array.isArray(v) ? v[0] : v;
    };
    const reply = res as http.ServerResponse;
    const refusal = this.identityRefusal(req.url, header);
    if (refusal !== undefined) {
      reply.writeHead(401, { "content-type": "application/json" });
      reply.end(JSON.stringify({ message: `unauthorized: ${refusal}` }));
      return;
    }
    const route = this.route(req.method, req.url, header("content-type"));
    if (route.kind === "refuse") {
      reply.writeHead(route.status, { "content-type": "application/json" });
      reply.end(JSON.stringify({ message: route.message }));
      return;
    }
    if (route.kind === "discover") {
      reply.writeHead(200, { "content-type": MANIFEST_CONTENT_TYPE });
      reply.end(JSON.stringify(this.manifest()));
      return;
    }
    const mode = requestedMode(header(MODE_HEADER), req.httpVersionMajor === 2 ? "stream" : "request-response");
    if (mode === undefined) {
      reply.writeHead(400, { "content-type": "application/json" });
      reply.end(JSON.stringify({ message: `unknown ${MODE_HEADER}` }));
      return;
    }
    let gone = false;
    let transport: Transport;
    if (mode === "request-response") {
      const frames: Uint8Array[] = [];
      transport = {
        write: (frame) => frames.push(frame),
        close: () => {
          const body = concatFrames(frames);
          reply.writeHead(200, { "content-type": INVOCATION_CONTENT_TYPE, "content-length": body.length });
          reply.end(body);
        },
      };
    } else if (res instanceof http2.Http2ServerResponse) {
      // Straight on the HTTP/2 stream: the compatibility layer would add an empty trailers frame.
      // The headers go with the first frames, in one write: the kernel is woken once, not twice.
      const stream = res.stream;
      let responded = false;
      const respond = () => {
        if (responded || stream.destroyed || stream.closed) return;
        responded = true;
        stream.respond({ ":status": 200, "content-type": INVOCATION_CONTENT_TYPE });
      };
      transport = batchedWrites(
        (bytes) => {
          if (gone) return;
          respond();
          stream.write(bytes);
        },
        (bytes) => {
          if (gone) return;
          respond();
          if (bytes === undefined) stream.end();
          else stream.end(bytes);
        },
      );
    } else {
      reply.writeHead(200, { "content-type": INVOCATION_CONTENT_TYPE });
      reply.flushHeaders();
      transport = batchedWrites(
        (bytes) => void (gone || reply.write(bytes)),
        (bytes) => void (bytes === undefined || gone ? reply.end() : reply.end(bytes)),
      );
    }
    const attempt = this.invocation(route, () => new Map(Object.entries(req.headers)), transport);
    req.on("data", (chunk: Buffer) => attempt.push(chunk));
    req.on("end", () => attempt.end());
    reply.on("close", () => {
      gone = true;
      attempt.inv.abort();
    });
  }

  private async serveFetch(request: globalThis.Request): Promise<Response> {
    const pathname = new URL(request.url).pathname;
    const refusal = this.identityRefusal(pathname, (name) => request.headers.get(name) ?? undefined);
    if (refusal !== undefined) return Response.json({ message: `unauthorized: ${refusal}` }, { status: 401 });
    const route = this.route(request.method, pathname, request.headers.get("content-type") ?? undefined);
    if (route.kind === "refuse") return Response.json({ message: route.message }, { status: route.status });
    if (route.kind === "discover") {
      return new Response(JSON.stringify(this.manifest()), { headers: { "content-type": MANIFEST_CONTENT_TYPE } });
    }
    const mode = requestedMode(request.headers.get(MODE_HEADER) ?? undefined, "request-response");
    if (mode === undefined) return Response.json({ message: `unknown ${MODE_HEADER}` }, { status: 400 });
    const headers = () => new Map<string, string>(request.headers);
    const responseHeaders = { "content-type": INVOCATION_CONTENT_TYPE };
    if (mode === "request-response") {
      const frames: Uint8Array[] = [];
      const attempt = this.invocation(route, headers, { write: (f) => frames.push(f), close: () => undefined });
      attempt.push(new Uint8Array(await request.arrayBuffer()));
      attempt.end();
      await attempt.inv.done;
      return new Response(concatFrames(frames), { headers: responseHeaders });
    }
    let controller!: ReadableStreamDefaultController<Uint8Array>;
    const body = new ReadableStream<Uint8Array>({ start: (c) => void (controller = c) });
    const attempt = this.invocation(route, headers, { write: (f) => controller.enqueue(f), close: () => controller.close() });
    void pump(request.body, attempt);
    return new Response(body, { headers: responseHeaders });
  }
}

/**
 * A transport that sends the frames written in one turn of the event loop's work (the current
 * callback and the promise reactions it sets off) together, in one write, right after that turn;
 * closing sends what is pending along with the end of the stream.
 */
function batchedWrites(send: (bytes: Uint8Array) => void, end: (bytes: Uint8Array | undefined) => void): Transport {
  let pending: Uint8Array[] = [];
  const take = (): Uint8Array | undefined => {
    const frames = pending;
    if (frames.length === 0) return undefined;
    pending = [];
    return frames.length === 1 ? frames[0] : joinFrames(frames);
  };
  const flush = () => {
    const bytes = take();
    if (bytes !== undefined) send(bytes);
  };
  return {
    write(frame) {
      if (pending.push(frame) === 1) flushSoon(flush);
    },
    close() {
      end(take());
    },
  };
}

/** Flushes due after the current turn, of every transport: one microtask and one tick for all. */
let flushesDue: (() => void)[] = [];

function flushSoon(flush: () => void): void {
  if (flushesDue.push(flush) === 1) queueMicrotask(scheduleFlushes);
}

/** A tick queued from a promise reaction runs once every reaction queued so far has run. */
function scheduleFlushes(): void {
  process.nextTick(runFlushes);
}

function runFlushes(): void {
  const due = flushesDue;
  flushesDue = [];
  for (const flush of due) {
    try {
      flush();
    } catch (error) {
      // As if thrown by a tick of its own: the other flushes still run.
      queueMicrotask(() => {
        throw error;
      });
    }
  }
}

/** The frames as one buffer: a view when they lie back to back in one buffer, else a copy. */
function joinFrames(frames: readonly Uint8Array[]): Uint8Array {
  const first = frames[0] as Uint8Array;
  let end = first.byteOffset + first.byteLength;
  for (let i = 1; i < frames.length; i++) {
    const frame = frames[i] as Uint8Array;
    if (frame.buffer !== first.buffer || frame.byteOffset !== end) return concatFrames(frames);
    end += frame.byteLength;
  }
  return new Uint8Array(first.buffer, first.byteOffset, end - first.byteOffset);
}

async function pump(body: ReadableStream<Uint8Array> | null, attempt: { push(c: Uint8Array): void; end(): void; inv: Invocation }) {
  try {
    if (body) for await (const chunk of body) attempt.push(chunk);
    attempt.end();
  } catch {
    attempt.inv.abort();
  }
}

function requestedMode(header: string | undefined, fallback: ProtocolMode): ProtocolMode | undefined {
  if (header === undefined) return fallback;
  return header === "stream" || header === "request-response" ? header : undefined;
}

/** Hands a fresh connection to the HTTP/2 server if it opens with the HTTP/2 preface, else to HTTP/1.1. */
function sniffProtocol(socket: net.Socket, h1: http.Server, h2: http2.Http2Server): void {
  let head = Buffer.alloc(0);
  const onData = (chunk: Buffer) => {
    head = Buffer.concat([head, chunk]);
    const n = Math.min(head.length, HTTP2_PREFACE.length);
    const isH2 = head.subarray(0, n).equals(HTTP2_PREFACE.subarray(0, n));
    if (isH2 && head.length < HTTP2_PREFACE.length) return;
    socket.off("data", onData);
    socket.pause();
    if (isH2) {
      // The HTTP/2 session reads the socket's handle directly and would miss bytes already read,
      // so it gets a stream that replays them first.
      h2.emit("connection", replaying(socket, head));
    } else {
      socket.unshift(head);
      h1.emit("connection", socket);
      socket.resume();
    }
  };
  socket.on("data", onData);
  socket.on("error", () => socket.destroy());
}

/** A duplex stream over `socket` whose readable side starts with `head`. */
function replaying(socket: net.Socket, head: Buffer): Duplex {
  const duplex = new Duplex({
    read: () => void socket.resume(),
    write: (chunk: Buffer, _encoding, callback) => void socket.write(chunk, callback),
    final: (callback) => void socket.end(callback),
    destroy: (error, callback) => {
      socket.destroy(error ?? undefined);
      callback(error);
    },
  });
  duplex.push(head);
  socket.on("data", (chunk: Buffer) => {
    if (!duplex.push(chunk)) socket.pause();
  });
  socket.on("end", () => duplex.push(null));
  socket.on("close", () => duplex.destroy());
  return duplex;
}

/** A new, empty endpoint. */
export function endpoint(options?: EndpointOptions): Endpoint {
  return new Endpoint().withOptions(options ?? {});
}

/** A Node handler for the given definitions, for `http2.createServer(handler)`. */
export function createEndpointHandler(options: { services: Definition<string, any>[] } & EndpointOptions): NodeHandler {
  const ep = endpoint(options);
  for (const def of options.services) ep.bind(def);
  return ep.http2Handler();
}

/**
 * Binds the definitions and listens on `port` (default `$PORT` or 9080) of `host` (default
 * `127.0.0.1`, loopback only); resolves with the port.
 */
export function serve(options: { services: Definition<string, any>[]; port?: number; host?: string } & EndpointOptions): Promise<number> {
  const ep = endpoint(options);
  for (const def of options.services) ep.bind(def);
  return ep.listen(options.port, options.host);
}
