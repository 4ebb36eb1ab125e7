/**
 * A kernel stand-in for protocol tests: builds messages, drives an endpoint with frames (in memory
 * through its Fetch handler, or over real HTTP/2 and HTTP/1.1), and reads back what the SDK sends.
 */
import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import {
  FrameDecoder,
  INVOCATION_CONTENT_TYPE,
  MODE_HEADER,
  concatFrames,
  decodeMessages,
  encodeMessage,
  type Body,
  type Message,
  type Outcome,
} from "@holdfast/sdk/protocol";

const te = new TextEncoder();
const td = new TextDecoder();

/** JSON bytes of a value (the default serde). */
export const json = (value: unknown): Uint8Array => (value === undefined ? new Uint8Array(0) : te.encode(JSON.stringify(value)));
/** The JSON value of bytes. */
export const unjson = (bytes: Uint8Array | undefined): unknown => (bytes && bytes.length > 0 ? JSON.parse(td.decode(bytes)) : undefined);

/** A successful outcome carrying a JSON value. */
export const ok = (value: unknown): Outcome => ({ value: json(value) });
/** A failed outcome. */
export const failed = (code: number, message: string): Outcome => ({ failure: { code, message } });

/** The invocation id `start` uses unless told otherwise. */
export const INVOCATION_ID = "inv_0123456789abcdeffedcba98765432100011223344556677";
/**
 * The awakeable key `start` uses unless told otherwise: the one the kernel derives from the secret
 * 000102…0f (see tests/protocol-vectors/awakeable-ids.json).
 */
export const AWAKEABLE_KEY = new Uint8Array(Buffer.from("3fdac108c6b36f48bdaf359e51d7a4ac104bbb807976b9603a7db4df7554954c", "hex"));

/** A start message; `known` counts the entries that follow, the input included. */
export function start(known: number, extra: Partial<Body<"start">> = {}): Message {
  const body: Body<"start"> = {
    id: INVOCATION_ID,
    attempt: 1,
    known_entries: known,
    state: [],
    state_complete: true,
    headers: [],
    retry_count: 0,
    retry_elapsed_ms: 0,
    awakeable_key: AWAKEABLE_KEY,
    ...extra,
  };
  return { type: "start", body };
}

/** The input entry with a JSON value. */
export const input = (value: unknown): Message => ({ type: "input", body: { value: json(value) } });
/** A completion of `entry`. */
export const completion = (entry: number, result: Outcome): Message => ({ type: "completion", body: { entry, result } });
/** An acknowledgement of `entry`. */
export const ack = (entry: number): Message => ({ type: "entry_ack", body: { entry } });

/** A message with its binary fields shown as JSON values, for readable assertions. */
export function view(message: Message): unknown {
  const show = (v: unknown): unknown =>
    v instanceof Uint8Array ? unjson(v) : Array.isArray(v) ? v.map(show) : v && typeof v === "object" ? Object.fromEntries(Object.entries(v).map(([k, x]) => [k, show(x)])) : v;
  return { type: message.type, ...(message.flags ? { flags: message.flags } : {}), ...(show(message.body) as object) };
}

/** Frames received from the SDK, consumed one by one as they arrive. */
class Inbox {
  private queue: Message[] = [];
  private waiting?: () => void;
  private closed = false;
  private readonly decoder = new FrameDecoder();

  push(chunk: Uint8Array): void {
    this.queue.push(...this.decoder.push(chunk));
    this.waiting?.();
  }

  close(): void {
    this.closed = true;
    this.waiting?.();
  }

  /** The next message, failing if none arrives within `ms`. */
  async next(ms = 2000): Promise<Message> {
    const deadline = Date.now() + ms;
    while (this.queue.length === 0) {
      if (this.closed) throw new Error("the SDK closed the stream");
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no message within ${ms} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiting = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    return this.queue.shift() as Message;
  }

  /** Everything until the SDK closes its side. */
  async rest(ms = 2000): Promise<Message[]> {
    const out: Message[] = [];
    for (;;) {
      try {
        out.push(await this.next(ms));
      } catch (error) {
        if (this.closed && this.queue.length === 0) return out;
        throw error;
      }
    }
  }

  /** True if nothing arrives within `ms` (used to show that the SDK waits). */
  async quiet(ms: number): Promise<boolean> {
    await new Promise((resolve) => setTimeout(resolve, ms));
    return this.queue.length === 0;
  }
}

/** One invocation in streaming mode: send frames, read frames, close the kernel's side. */
export interface Stream {
  send(...messages: Message[]): void;
  closeInput(): void;
  next(ms?: number): Promise<Message>;
  rest(ms?: number): Promise<Message[]>;
  quiet(ms: number): Promise<boolean>;
}

function streamOver(inbox: Inbox, write: (b: Uint8Array) => void, end: () => void): Stream {
  return {
    send: (...messages) => messages.forEach((m) => write(encodeMessage(m))),
    closeInput: end,
    next: (ms) => inbox.next(ms),
    rest: (ms) => inbox.rest(ms),
    quiet: (ms) => inbox.quiet(ms),
  };
}

type Fetcher = { fetch: (request: Request) => Promise<Response> };

/** Opens a streaming invocation in memory through a Fetch handler. */
export async function openStream(endpoint: Fetcher, path: string, ...messages: Message[]): Promise<Stream> {
  let controller!: ReadableStreamDefaultController<Uint8Array>;
  const body = new ReadableStream<Uint8Array>({ start: (c) => void (controller = c) });
  const request = new Request(`http://endpoint${path}`, {
    method: "POST",
    headers: { "content-type": INVOCATION_CONTENT_TYPE, [MODE_HEADER]: "stream" },
    body,
    duplex: "half",
  } as RequestInit);
  const inbox = new Inbox();
  const stream = streamOver(inbox, (b) => controller.enqueue(b), () => controller.close());
  stream.send(...messages);
  const response = await endpoint.fetch(request);
  void (async () => {
    for await (const chunk of response.body as ReadableStream<Uint8Array>) inbox.push(chunk);
    inbox.close();
  })();
  return stream;
}

/** One request/response exchange in memory: the request carries `messages`, the response is decoded. */
export async function exchange(endpoint: Fetcher, path: string, ...messages: Message[]): Promise<Message[]> {
  const response = await endpoint.fetch(
    new Request(`http://endpoint${path}`, {
      method: "POST",
      headers: { "content-type": INVOCATION_CONTENT_TYPE },
      body: concatFrames(messages.map(encodeMessage)),
    }),
  );
  return decodeMessages(new Uint8Array(await response.arrayBuffer()));
}

/** Opens a streaming invocation over a real HTTP/2 connection. */
export function openHttp2Stream(session: http2.ClientHttp2Session, path: string, ...messages: Message[]): Stream {
  const req = session.request({ ":method": "POST", ":path": path, "content-type": INVOCATION_CONTENT_TYPE, [MODE_HEADER]: "stream" });
  const inbox = new Inbox();
  req.on("data", (chunk: Buffer) => inbox.push(chunk));
  req.on("end", () => inbox.close());
  const stream = streamOver(inbox, (b) => req.write(b), () => req.end());
  stream.send(...messages);
  return stream;
}

/** One request/response exchange over HTTP/2 (mode header) or HTTP/1.1 (the default mode there). */
export async function exchangeHttp(
  target: { port: number } | http2.ClientHttp2Session,
  path: string,
  ...messages: Message[]
): Promise<Message[]> {
  const body = concatFrames(messages.map(encodeMessage));
  const bytes = await new Promise<Buffer>((resolve, reject) => {
    const collect = (stream: NodeJS.ReadableStream) => {
      const chunks: Buffer[] = [];
      stream.on("data", (c: Buffer) => chunks.push(c));
      stream.on("end", () => resolve(Buffer.concat(chunks)));
      stream.on("error", reject);
    };
    if ("port" in target) {
      const req = http.request({ port: target.port, host: "127.0.0.1", method: "POST", path, headers: { "content-type": INVOCATION_CONTENT_TYPE } }, collect);
      req.on("error", reject);
      req.end(body);
    } else {
      const req = target.request({ ":method": "POST", ":path": path, "content-type": INVOCATION_CONTENT_TYPE, [MODE_HEADER]: "request-response" });
      collect(req);
      req.end(body);
    }
  });
  return decodeMessages(bytes);
}

/** A free TCP port on 127.0.0.1. */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Source fixtures (plain JavaScript, not compiled). */
export const SOURCE_FIXTURES = "../../test/fixtures/";
/** Fixtures compiled from TypeScript next to the tests. */
export const COMPILED_FIXTURES = "./fixtures/";

/** Starts a fixture as its own Node process and waits until it prints a line matching `ready`. */
/** Fixture processes still running; killed when the test file's process exits, whatever happened. */
const running = new Set<ChildProcess>();
process.once("exit", () => {
  for (const child of running) child.kill("SIGKILL");
});

export async function startProcess(
  fixture: string,
  env: Record<string, string>,
  ready: RegExp,
  nodeArgs: string[] = [],
): Promise<{ child: ChildProcess; line: string }> {
  const file = fileURLToPath(new URL(fixture, import.meta.url));
  const child = spawn(process.execPath, [...nodeArgs, file], { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "inherit"] });
  running.add(child);
  child.once("exit", () => running.delete(child));
  // A fixture never keeps the test file alive: a test stuck on it fails instead of hanging the run.
  child.unref();
  (child.stdout as (NodeJS.ReadableStream & { unref?: () => void }) | null)?.unref?.();
  const line = await new Promise<string>((resolve, reject) => {
    let out = "";
    const timer = setTimeout(() => reject(new Error(`${fixture} did not start: ${out}`)), 10_000);
    child.stdout?.on("data", (chunk: Buffer) => {
      out += chunk.toString();
      const found = out.split("\n").find((l) => ready.test(l));
      if (found) {
        clearTimeout(timer);
        resolve(found);
      }
    });
    child.once("exit", (code) => reject(new Error(`${fixture} exited with ${code}: ${out}`)));
  });
  return { child, line };
}

/** Resolves once something accepts TCP connections on 127.0.0.1:`port` (within 10 s). */
export async function waitForPort(port: number): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const open = await new Promise<boolean>((resolve) => {
      const socket = net.connect(port, "127.0.0.1", () => {
        socket.destroy();
        resolve(true);
      });
      socket.once("error", () => resolve(false));
    });
    if (open) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on port ${port}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** GETs a URL over HTTP/1.1 or an HTTP/2 session and parses the JSON body. */
export async function getJson(target: { port: number } | http2.ClientHttp2Session, path: string): Promise<{ status: number; contentType: string; body: unknown }> {
  return new Promise((resolve, reject) => {
    const finish = (status: number, contentType: string, stream: NodeJS.ReadableStream) => {
      let text = "";
      stream.on("data", (c: Buffer) => (text += c.toString()));
      stream.on("end", () => resolve({ status, contentType, body: JSON.parse(text) }));
      stream.on("error", reject);
    };
    if ("port" in target) {
      http.get({ port: target.port, host: "127.0.0.1", path }, (res) => finish(res.statusCode ?? 0, String(res.headers["content-type"]), res)).on("error", reject);
    } else {
      const req = target.request({ ":path": path });
      req.on("response", (headers) => finish(Number(headers[":status"]), String(headers["content-type"]), req));
      req.end();
    }
  });
}
