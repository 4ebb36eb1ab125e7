/** The SDK's version constant follows its package, and endpoints announce it in discovery. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { SDK_VERSION, endpoint, service } from "@holdfast/sdk";

const pkg = JSON.parse(readFileSync(fileURLToPath(new URL("../../package.json", import.meta.url)), "utf8")) as { version: string };

test("SDK_VERSION is the package's version", () => {
  assert.equal(SDK_VERSION, pkg.version);
});

test("the manifest names this SDK and its version", () => {
  const ep = endpoint().bind(service({ name: "Greeter", handlers: { greet: async () => undefined } }));
  assert.equal(ep.manifest().sdk_version, `holdfast-sdk-typescript/${pkg.version}`);
});
