/**
 * `endpoint().listen(port)` binds loopback unless a host is given: another machine cannot reach an
 * endpoint started without one, and can when it is started with `"0.0.0.0"`.
 */
import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import os from "node:os";
import type { ChildProcess } from "node:child_process";
import { SOURCE_FIXTURES, startProcess } from "./harness.js";

/** An IPv4 address of this machine that is not loopback, if it has one. */
function externalAddress(): string | undefined {
  for (const addresses of Object.values(os.networkInterfaces())) {
    for (const address of addresses ?? []) {
      if (address.family === "IPv4" && !address.internal) return address.address;
    }
  }
  return undefined;
}

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

  test("without a host: reachable on 127.0.0.1 only", async () => {
    const { child, port } = await start({});
    children.push(child);
    assert.equal(await reachable("127.0.0.1", port), true);
    const external = externalAddress();
    if (external !== undefined) assert.equal(await reachable(external, port), false, `reachable on ${external}`);
  });

  test("with a host: bound there", async (t) => {
    const external = externalAddress();
    if (external === undefined) {
      t.skip("this machine has no non-loopback IPv4 address");
      return;
    }
    const { child, port } = await start({ LISTEN_HOST: "0.0.0.0" });
    children.push(child);
    assert.equal(await reachable(external, port), true);
    assert.equal(await reachable("127.0.0.1", port), true);
  });
});
