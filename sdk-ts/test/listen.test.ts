/**
 * `endpoint().listen(port)` binds loopback unless a host is given: an endpoint started without one
 * accepts connections on 127.0.0.1 only, one started with `"0.0.0.0"` on every address.
 */
import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import type { ChildProcess } from "node:child_process";
import { SOURCE_FIXTURES, startProcess } from "./harness.js";

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
