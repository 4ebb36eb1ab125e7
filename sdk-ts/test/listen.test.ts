/**
 * `endpoint().listen(port)` binds loopback unless a host is given: an endpoint started without one
 * accepts connections on 127.0.0.1 only, one started with `"0.0.0.0"` on every address.
 */
import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import http2 from "node:http2";
import type { ChildProcess } from "node:child_process";
import { INVOCATION_CONTENT_TYPE, MANIFEST_CONTENT_TYPE, MODE_HEADER, concatFrames, decodeMessages, encodeMessage } from "@holdfast/sdk/protocol";
import { SOURCE_FIXTURES, input, start as startMessage, startProcess, view } from "./harness.js";

/** Whether a TCP connection to `host:port` is accepted. */
function reachable(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    socket.setTimeout(2000);
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("timeout", () => {
      socket.destroy();
      resolve(false);
    });
    socket.once("error", () => resolve(false));
  });
}

async function start(env: Record<string, string>): Promise<{ child: ChildProcess; port: number }> {
  const started = await startProcess(SOURCE_FIXTURES + "listen-default.mjs", env, /listening on \d+/);
  return { child: started.child, port: Number(/listening on (\d+)/.exec(started.line)?.[1]) };
}

describe("endpoint().listen() binds loopback by default", () => {
  const children: ChildProcess[] = [];
  after(() => {
    for (const child of children) child.kill();
  });

  // All of 127.0.0.0/8 is loopback on Linux, but a socket bound to 127.0.0.1 accepts nothing sent to
  // 127.0.0.2: reaching the port there shows a wildcard bind without leaving the machine.
  test("without a host: reachable on 127.0.0.1 only", async () => {
    const { child, port } = await start({});
    children.push(child);
    assert.equal(await reachable("127.0.0.1", port), true);
    assert.equal(await reachable("127.0.0.2", port), false, "reachable on 127.0.0.2");
  });

  test("with a host: bound there", async () => {
    const { child, port } = await start({ LISTEN_HOST: "0.0.0.0" });
    children.push(child);
    assert.equal(await reachable("127.0.0.2", port), true);
    assert.equal(await reachable("127.0.0.1", port), true);
  });
});

/** One HTTP/2 request to `port`; its status, content type and body. */
function h2Request(
  port: number,
  headers: http2.OutgoingHttpHeaders,
  body?: Uint8Array,
): Promise<{ status: number; contentType: string | undefined; bytes: Buffer }> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on("error", reject);
    const request = session.request(headers);
    const chunks: Buffer[] = [];
    let status = 0;
    let contentType: string | undefined;
    request.on("response", (h) => {
      status = Number(h[":status"]);
      contentType = h["content-type"] as string | undefined;
    });
    request.on("data", (chunk: Buffer) => chunks.push(chunk));
    request.on("end", () => {
      session.close();
      resolve({ status, contentType, bytes: Buffer.concat(chunks) });
    });
    request.on("error", reject);
    request.end(body);
  });
}

const invokeHeaders = (extra: http2.OutgoingHttpHeaders = {}) => ({
  ":method": "POST",
  ":path": "/invoke/Greeter/greet",
  "content-type": INVOCATION_CONTENT_TYPE,
  ...extra,
});
const greetAda = () => concatFrames([startMessage(1), input("Ada")].map(encodeMessage));

/**
 * `listen()` serves HTTP/2 with prior knowledge: every answer a request can get arrives on its
 * stream, and a stream reset midway costs only its attempt.
 */
describe("endpoint().listen() serves HTTP/2 streams", () => {
  let port = 0;
  let child: ChildProcess | undefined;
  after(() => child?.kill());

  test("discovery, refusals and both protocol modes, each answered on its stream", async () => {
    ({ child, port } = await start({}));
    const manifest = await h2Request(port, { ":method": "GET", ":path": "/discover" });
    assert.equal(manifest.status, 200);
    assert.equal(manifest.contentType, MANIFEST_CONTENT_TYPE);
    assert.equal(JSON.parse(manifest.bytes.toString()).services[0].name, "Greeter");

    const missing = await h2Request(port, invokeHeaders({ ":path": "/invoke/Greeter/nope" }), greetAda());
    assert.deepEqual([missing.status, JSON.parse(missing.bytes.toString()).message], [404, "no handler Greeter/nope"]);
    const wrongType = await h2Request(port, invokeHeaders({ "content-type": "text/plain" }), greetAda());
    assert.equal(wrongType.status, 415);
    const badMode = await h2Request(port, invokeHeaders({ [MODE_HEADER]: "sideways" }), greetAda());
    assert.equal(badMode.status, 400);

    for (const mode of ["stream", "request-response"]) {
      const answer = await h2Request(port, invokeHeaders({ [MODE_HEADER]: mode }), greetAda());
      assert.equal(answer.status, 200, mode);
      assert.equal(answer.contentType, INVOCATION_CONTENT_TYPE);
      const messages = decodeMessages(new Uint8Array(answer.bytes)).map(view);
      assert.deepEqual(messages, [{ type: "output", result: { value: "Hello Ada" } }, { type: "end" }], mode);
    }
  });

  test("a stream the client resets leaves the endpoint serving", async () => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    const request = session.request(invokeHeaders());
    // Half a frame, then a reset: the attempt is abandoned, nothing is thrown.
    request.write(encodeMessage(startMessage(1)).subarray(0, 3));
    await new Promise((resolve) => setTimeout(resolve, 50));
    request.close(http2.constants.NGHTTP2_CANCEL);
    await new Promise((resolve) => request.on("close", resolve));
    session.close();
    const after = await h2Request(port, invokeHeaders(), greetAda());
    assert.equal(after.status, 200);
  });
});
