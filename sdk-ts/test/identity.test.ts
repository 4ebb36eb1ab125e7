/**
 * Request identity (Restate's scheme v1): an endpoint configured with `withIdentityV1` serves only
 * requests signed by one of its keys and answers 401 to everything else; without keys it serves all.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import http2 from "node:http2";
import { generateKeyPairSync, sign, type KeyObject } from "node:crypto";
import * as restate from "@holdfast/sdk";
import { INVOCATION_CONTENT_TYPE, MANIFEST_CONTENT_TYPE, MODE_HEADER, concatFrames, decodeMessages, encodeMessage } from "@holdfast/sdk/protocol";
import { base58Decode, base58Encode, normalisePath } from "../src/identity.js";
import { input, start, view } from "./harness.js";

interface Key {
  privateKey: KeyObject;
  publicKey: string;
}

function newKey(): Key {
  const { privateKey, publicKey } = generateKeyPairSync("ed25519");
  const raw = Buffer.from(publicKey.export({ format: "jwk" }).x as string, "base64url");
  return { privateKey, publicKey: "publickeyv1_" + base58Encode(raw) };
}

const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url");
const now = () => Math.floor(Date.now() / 1000);

/** A JWT as the kernel makes it; `claims` overrides the defaults. */
function token(key: Key, aud: string, claims: Record<string, unknown> = {}): string {
  const t = now();
  const input = `${b64({ typ: "JWT", alg: "EdDSA", kid: key.publicKey })}.${b64({ aud, exp: t + 60, iat: t, nbf: t - 60, ...claims })}`;
  return `${input}.${sign(null, Buffer.from(input), key.privateKey).toString("base64url")}`;
}

const signed = (jwt: string) => ({ "x-restate-signature-scheme": "v1", "x-restate-jwt-v1": jwt });

const greeter = restate.service({
  name: "greeter",
  handlers: { greet: async (_ctx: restate.Context, name: string) => `Hello ${name}` },
});

const kernelKey = newKey();
const nextKey = newKey();
const strangerKey = newKey();

/** Invokes greeter/greet through the Fetch handler with `headers`; status and body. */
async function invoke(ep: restate.Endpoint, headers: Record<string, string>, path = "/invoke/greeter/greet") {
  const response = await ep.handler().fetch(
    new Request(`http://endpoint${path}`, {
      method: "POST",
      headers: { "content-type": INVOCATION_CONTENT_TYPE, ...headers },
      body: concatFrames([start(1), input("Ada")].map(encodeMessage)),
    }),
  );
  const bytes = new Uint8Array(await response.arrayBuffer());
  return { status: response.status, contentType: response.headers.get("content-type"), bytes };
}

const verified = () => restate.endpoint().bind(greeter).withIdentityV1(kernelKey.publicKey);

describe("endpoint identity", () => {
  test("a request signed by the configured key runs the handler", async () => {
    const { status, bytes } = await invoke(verified(), signed(token(kernelKey, "/invoke/greeter/greet")));
    assert.equal(status, 200);
    assert.deepEqual(decodeMessages(bytes).map(view), [{ type: "output", result: { value: "Hello Ada" } }, { type: "end" }]);
  });

  test("an unsigned request gets 401 with a JSON body", async () => {
    const cases: Record<string, string>[] = [{}, { "x-restate-signature-scheme": "unsigned" }, { "x-restate-signature-scheme": "v1" }, { "x-restate-signature-scheme": "v2" }];
    for (const headers of cases) {
      const { status, contentType, bytes } = await invoke(verified(), headers);
      assert.equal(status, 401, JSON.stringify(headers));
      assert.equal(contentType, "application/json");
      assert.match((JSON.parse(Buffer.from(bytes).toString()) as { message: string }).message, /unauthorized/);
    }
  });

  test("an expired token gets 401", async () => {
    const t = now();
    const { status, bytes } = await invoke(verified(), signed(token(kernelKey, "/invoke/greeter/greet", { iat: t - 120, nbf: t - 180, exp: t - 1 })));
    assert.equal(status, 401);
    assert.match(Buffer.from(bytes).toString(), /expired/);
  });

  test("a token not valid yet gets 401", async () => {
    const t = now();
    const { status } = await invoke(verified(), signed(token(kernelKey, "/invoke/greeter/greet", { nbf: t + 60, exp: t + 120 })));
    assert.equal(status, 401);
  });

  test("a token for another path gets 401", async () => {
    for (const aud of ["/invoke/greeter/other", "/discover", "/invoke/greeter/greetx"]) {
      const { status, bytes } = await invoke(verified(), signed(token(kernelKey, aud)));
      assert.equal(status, 401, aud);
      assert.match(Buffer.from(bytes).toString(), /audience/);
    }
  });

  test("a token signed by another key gets 401", async () => {
    const { status, bytes } = await invoke(verified(), signed(token(strangerKey, "/invoke/greeter/greet")));
    assert.equal(status, 401);
    assert.match(Buffer.from(bytes).toString(), /not signed by any configured key/);
  });

  test("a tampered token gets 401", async () => {
    const good = token(kernelKey, "/invoke/greeter/other");
    const [head, , signature] = good.split(".") as [string, string, string];
    const t = now();
    // The claims changed to this path, the signature kept.
    const claims = b64({ aud: "/invoke/greeter/greet", exp: t + 60, iat: t, nbf: t - 60 });
    assert.equal((await invoke(verified(), signed(`${head}.${claims}.${signature}`))).status, 401);
    // A flipped signature bit, an algorithm swapped for none, and garbage.
    const sig = Buffer.from(signature, "base64url");
    sig[0] = (sig[0] as number) ^ 1;
    const flipped = token(kernelKey, "/invoke/greeter/greet").split(".").slice(0, 2).join(".") + "." + sig.toString("base64url");
    assert.equal((await invoke(verified(), signed(flipped))).status, 401);
    const none = `${b64({ typ: "JWT", alg: "none" })}.${claims}.`;
    assert.equal((await invoke(verified(), signed(none))).status, 401);
    assert.equal((await invoke(verified(), signed("not.a.jwt"))).status, 401);
  });

  test("discovery must be signed too", async () => {
    const ep = verified();
    const refused = await ep.handler().fetch(new Request("http://endpoint/discover"));
    assert.equal(refused.status, 401);
    const served = await ep.handler().fetch(new Request("http://endpoint/discover", { headers: signed(token(kernelKey, "/discover")) }));
    assert.equal(served.status, 200);
    assert.equal(served.headers.get("content-type"), MANIFEST_CONTENT_TYPE);
  });

  test("rotation: with two keys configured, requests signed by either run", async () => {
    const ep = restate.endpoint().bind(greeter).withIdentityV1(kernelKey.publicKey, nextKey.publicKey);
    assert.equal((await invoke(ep, signed(token(kernelKey, "/invoke/greeter/greet")))).status, 200);
    assert.equal((await invoke(ep, signed(token(nextKey, "/invoke/greeter/greet")))).status, 200);
    assert.equal((await invoke(ep, signed(token(strangerKey, "/invoke/greeter/greet")))).status, 401);
    // Calls add up, and the option form works the same.
    const added = restate.endpoint().bind(greeter).withIdentityV1(kernelKey.publicKey).withIdentityV1(nextKey.publicKey);
    assert.equal((await invoke(added, signed(token(nextKey, "/invoke/greeter/greet")))).status, 200);
    const optioned = restate.endpoint({ identityKeys: [nextKey.publicKey] }).bind(greeter);
    assert.equal((await invoke(optioned, signed(token(nextKey, "/invoke/greeter/greet")))).status, 200);
    assert.equal((await invoke(optioned, {})).status, 401);
  });

  test("an endpoint mounted under a prefix accepts the full path or Restate's normalised one", async () => {
    const path = "/api/v1/invoke/greeter/greet";
    assert.equal(normalisePath(path), "/invoke/greeter/greet");
    assert.equal(normalisePath("/api/discover"), "/discover");
    assert.equal((await invoke(verified(), signed(token(kernelKey, path)), path)).status, 200);
    assert.equal((await invoke(verified(), signed(token(kernelKey, "/invoke/greeter/greet")), path)).status, 200);
  });

  test("without keys every request is served, and the endpoint says so once", async () => {
    const warnings: unknown[] = [];
    const warn = console.warn;
    console.warn = (...args: unknown[]) => void warnings.push(args);
    try {
      const ep = restate.endpoint().bind(greeter);
      assert.equal((await invoke(ep, {})).status, 200);
      assert.equal((await invoke(ep, signed("garbage"))).status, 200);
    } finally {
      console.warn = warn;
    }
    assert.equal(warnings.length, 1);
    assert.match(String((warnings[0] as unknown[])[0]), /without verifying/);
  });

  test("malformed keys are refused when configured", () => {
    assert.throws(() => restate.endpoint().withIdentityV1("not-a-key"), /publickeyv1_/);
    assert.throws(() => restate.endpoint().withIdentityV1("publickeyv1_abc"), /32 bytes/);
    assert.throws(() => restate.endpoint().withIdentityV1("publickeyv1_0OIl"), /base58/);
  });

  test("base58 round-trips, leading zeros included", () => {
    for (const bytes of [new Uint8Array([]), new Uint8Array([0, 0, 1, 2, 255]), new Uint8Array(32).fill(7)]) {
      assert.deepEqual(base58Decode(base58Encode(bytes)), bytes);
    }
    assert.equal(base58Encode(Buffer.from("hello world")), "StV1DL6CwTryKyV");
  });
});

describe("endpoint identity over HTTP/2", () => {
  let port: number;
  let session: http2.ClientHttp2Session;
  let server: { close(): void } | undefined;

  before(async () => {
    const ep = verified();
    const h2 = http2.createServer(ep.http2Handler());
    await new Promise<void>((resolve) => h2.listen(0, "127.0.0.1", resolve));
    const address = h2.address();
    port = typeof address === "object" && address ? address.port : 0;
    server = h2;
    session = http2.connect(`http://127.0.0.1:${port}`);
  });

  after(() => {
    session.destroy();
    server?.close();
  });

  function request(headers: http2.OutgoingHttpHeaders, body?: Uint8Array): Promise<{ status: number; body: Buffer }> {
    return new Promise((resolve, reject) => {
      const req = session.request(headers);
      const chunks: Buffer[] = [];
      let status = 0;
      req.on("response", (h) => void (status = Number(h[":status"])));
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => resolve({ status, body: Buffer.concat(chunks) }));
      req.on("error", reject);
      req.end(body);
    });
  }

  test("an unsigned discovery gets 401, a signed one the manifest", async () => {
    const refused = await request({ ":method": "GET", ":path": "/discover" });
    assert.equal(refused.status, 401);
    assert.match(refused.body.toString(), /unauthorized/);
    const served = await request({ ":method": "GET", ":path": "/discover", ...signed(token(kernelKey, "/discover")) });
    assert.equal(served.status, 200);
  });

  test("a signed invocation runs, an unsigned one gets 401", async () => {
    const body = concatFrames([start(1), input("Ada")].map(encodeMessage));
    const headers = { ":method": "POST", ":path": "/invoke/greeter/greet", "content-type": INVOCATION_CONTENT_TYPE, [MODE_HEADER]: "request-response" };
    assert.equal((await request(headers, body)).status, 401);
    const ok = await request({ ...headers, ...signed(token(kernelKey, "/invoke/greeter/greet")) }, body);
    assert.equal(ok.status, 200);
    assert.deepEqual(decodeMessages(new Uint8Array(ok.body)).map(view), [{ type: "output", result: { value: "Hello Ada" } }, { type: "end" }]);
  });
});
