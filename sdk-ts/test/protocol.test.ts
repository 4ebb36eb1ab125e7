/**
 * Protocol-level behaviour of the SDK, driven with frames as the kernel would send them (no kernel,
 * no network): replay, divergence, completions, suspension, runs and their acknowledgements, errors,
 * combinators and cancellation.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  CancelledError,
  DurablePromise,
  TerminalError,
  endpoint,
  object,
  service,
  type Context,
  type ObjectContext,
} from "@holdfast/sdk";
import { FLAG_ACK, type Message } from "@holdfast/sdk/protocol";
import { ack, completion, exchange, failed, input, ok, openStream, start, view } from "./harness.js";

/** Side effects actually executed, to tell replays from re-executions. */
const executed: string[] = [];

const Greeter = service({ name: "Greeter", handlers: { greet: async (_ctx: Context, name: string) => `Hello ${name}` } });

const Flow = object({
  name: "Flow",
  handlers: {
    // entries: 1 call, 2 run, 3 set_state, 4 sleep, 5 output
    go: async (ctx: ObjectContext, name: string) => {
      const greeting = await ctx.serviceClient(Greeter).greet(name);
      const n = await ctx.run("step", () => {
        executed.push("step");
        return 42;
      });
      ctx.set("last", greeting);
      await ctx.sleep(100);
      return `${greeting}/${n}`;
    },
  },
});

const Misc = service({
  name: "Misc",
  handlers: {
    // entries: 1 sleep, 2 call; awaited in the opposite order
    outOfOrder: async (ctx: Context) => {
      const timer = ctx.sleep(10);
      const call = ctx.serviceClient(Greeter).greet("b");
      const greeting = await call;
      await timer;
      return greeting;
    },
    flaky: async (ctx: Context) => {
      try {
        await ctx.run(
          "flaky",
          () => {
            executed.push("flaky");
            throw new Error("boom");
          },
          { maxRetryAttempts: 3, initialRetryInterval: 100 },
        );
        return "unreachable";
      } catch (e) {
        return `caught ${(e as Error).constructor.name}: ${(e as Error).message}`;
      }
    },
    terminal: async () => {
      throw new TerminalError("nope", { errorCode: 418 });
    },
    transient: async () => {
      throw new Error("transient");
    },
    callerSeesTerminal: async (ctx: Context) => {
      try {
        return await ctx.serviceClient(Greeter).greet("x");
      } catch (e) {
        return { terminal: e instanceof TerminalError, code: (e as TerminalError).code, message: (e as Error).message };
      }
    },
    // entries: 1 sleep, 2 call, 3 run (the race's record)
    race: async (ctx: Context) => {
      const timer = ctx.sleep(1000).map(() => "timer");
      const call = ctx.serviceClient(Greeter).greet("race");
      return DurablePromise.race([timer, call]);
    },
    // entries: 1 sleep, then 2 run "compensate" once cancelled
    cancellable: async (ctx: Context) => {
      try {
        await ctx.sleep(60_000);
        return "slept";
      } catch (e) {
        if (!(e instanceof CancelledError)) throw e;
        await ctx.run("compensate", () => {
          executed.push("compensate");
          return "undone";
        });
        throw e;
      }
    },
    sleepy: async (ctx: Context) => {
      await ctx.sleep(5000);
      return "woke";
    },
    runThenSet: async (ctx: ObjectContext) => {
      const v = await ctx.run("r", () => 7);
      return v + 1;
    },
  },
});

const ep = endpoint({ suspendAfterMs: 60_000 }).bind(Greeter).bind(Flow).bind(Misc).handler();
const quickSuspend = endpoint({ suspendAfterMs: 50 }).bind(Misc).handler();

const drain = () => executed.splice(0, executed.length);

test("a fresh run emits each step and waits for the kernel where it must", async () => {
  drain();
  const s = await openStream(ep, "/invoke/Flow/go", start(1, { key: "k1" }), input("Bob"));
  assert.deepEqual(view(await s.next()), { type: "call", service: "Greeter", handler: "greet", headers: [], parameter: "Bob" });
  s.send(completion(1, ok("Hello Bob")));
  assert.deepEqual(view(await s.next()), { type: "run", name: "step" });
  assert.deepEqual(view(await s.next()), { type: "completion", flags: FLAG_ACK, entry: 2, result: { value: 42 } });
  s.send(ack(2));
  assert.deepEqual(view(await s.next()), { type: "set_state", key: "last", value: "Hello Bob" });
  assert.deepEqual(view(await s.next()), { type: "sleep", duration_ms: 100 });
  s.send(completion(4, {}));
  assert.deepEqual(view(await s.next()), { type: "output", result: { value: "Hello Bob/42" } });
  assert.deepEqual(view(await s.next()), { type: "end" });
  s.closeInput();
  assert.deepEqual(drain(), ["step"]);
});

const fullJournal: Message[] = [
  input("Bob"),
  { type: "call", body: { service: "Greeter", handler: "greet", headers: [], parameter: ok("Bob").value as Uint8Array, result: ok("Hello Bob") } },
  { type: "run", body: { name: "step", result: ok(42) } },
  { type: "set_state", body: { key: "last", value: ok("Hello Bob").value as Uint8Array } },
  { type: "sleep", body: { duration_ms: 100, result: {} } },
];

test("a full replay re-executes nothing and only emits the output", async () => {
  drain();
  const out = await exchange(ep, "/invoke/Flow/go", start(5, { key: "k1" }), ...fullJournal);
  assert.deepEqual(out.map(view), [{ type: "output", result: { value: "Hello Bob/42" } }, { type: "end" }]);
  assert.deepEqual(drain(), []);
});

test("a partial replay continues with new entries at the next index", async () => {
  drain();
  const s = await openStream(ep, "/invoke/Flow/go", start(3, { key: "k1" }), ...fullJournal.slice(0, 3));
  assert.deepEqual(view(await s.next()), { type: "set_state", key: "last", value: "Hello Bob" });
  assert.deepEqual(view(await s.next()), { type: "sleep", duration_ms: 100 });
  s.send(completion(4, {}));
  assert.deepEqual(view(await s.next()), { type: "output", result: { value: "Hello Bob/42" } });
  assert.deepEqual(view(await s.next()), { type: "end" });
  s.closeInput();
  assert.deepEqual(drain(), [], "the recorded run is not executed again");
});

test("a replay that diverges from the journal is reported as a retryable journal mismatch", async () => {
  const diverged: Message[] = [
    input("Bob"),
    { type: "call", body: { service: "Greeter", handler: "greet", headers: [], parameter: ok("Alice").value as Uint8Array, result: ok("Hello Alice") } },
  ];
  const out = await exchange(ep, "/invoke/Flow/go", start(2, { key: "k1" }), ...diverged);
  assert.equal(out.length, 1);
  const error = view(out[0]!) as { type: string; code: number; retryable: boolean; related_entry: number; message: string };
  assert.equal(error.type, "error");
  assert.equal(error.code, 570);
  assert.equal(error.retryable, true);
  assert.equal(error.related_entry, 1);
  assert.match(error.message, /journal mismatch at entry 1/);

  const wrongType = await exchange(ep, "/invoke/Flow/go", start(2, { key: "k1" }), input("Bob"), { type: "sleep", body: { duration_ms: 5, result: {} } });
  assert.deepEqual(
    wrongType.map((m) => [m.type, (m.body as { code?: number }).code]),
    [["error", 570]],
  );
});

test("completions arriving out of order settle the right entries", async () => {
  const s = await openStream(ep, "/invoke/Misc/outOfOrder", start(1), input(undefined));
  assert.equal((await s.next()).type, "sleep");
  assert.equal((await s.next()).type, "call");
  s.send(completion(2, ok("Hello b")));
  assert.ok(await s.quiet(50), "still waiting for the timer");
  s.send(completion(1, {}));
  assert.deepEqual(view(await s.next()), { type: "output", result: { value: "Hello b" } });
});

test("a blocked handler suspends at once in request/response mode", async () => {
  const out = await exchange(ep, "/invoke/Misc/sleepy", start(1), input(undefined));
  assert.deepEqual(out.map(view), [{ type: "sleep", duration_ms: 5000 }, { type: "suspension", waiting_on: [1] }]);
});

test("a blocked handler suspends after the inactivity timeout in streaming mode", async () => {
  const s = await openStream(quickSuspend, "/invoke/Misc/sleepy", start(1), input(undefined));
  assert.equal((await s.next()).type, "sleep");
  assert.deepEqual(view(await s.next(1000)), { type: "suspension", waiting_on: [1] });
  assert.deepEqual(await s.rest(), []);
});

test("a blocked handler suspends at once when the kernel closes its side of the stream", async () => {
  const s = await openStream(ep, "/invoke/Misc/sleepy", start(1), input(undefined));
  assert.equal((await s.next()).type, "sleep");
  s.closeInput();
  assert.deepEqual(view(await s.next(500)), { type: "suspension", waiting_on: [1] });
});

test("a run result reaches user code only after its acknowledgement", async () => {
  const s = await openStream(ep, "/invoke/Misc/runThenSet", start(1), input(undefined));
  assert.deepEqual(view(await s.next()), { type: "run", name: "r" });
  assert.deepEqual(view(await s.next()), { type: "completion", flags: FLAG_ACK, entry: 1, result: { value: 7 } });
  assert.ok(await s.quiet(100), "no output before the ack");
  s.send(ack(1));
  assert.deepEqual(view(await s.next()), { type: "output", result: { value: 8 } });

  const rr = await exchange(ep, "/invoke/Misc/runThenSet", start(1), input(undefined));
  assert.deepEqual(rr.map((m) => m.type), ["run", "completion", "suspension"], "request/response suspends on the unacknowledged run");
  assert.deepEqual(view(rr[2]!), { type: "suspension", waiting_on: [1] });
});

test("a failing run is retried per its options, then recorded as terminal", async () => {
  drain();
  const journal: Message[] = [input(undefined), { type: "run", body: { name: "flaky" } }];
  const first = await exchange(ep, "/invoke/Misc/flaky", start(1), input(undefined));
  assert.deepEqual(first.map(view), [
    { type: "run", name: "flaky" },
    { type: "error", code: 500, message: "run 'flaky' failed: boom", retryable: true, related_entry: 1, next_retry_delay_ms: 100 },
  ]);
  const second = await exchange(ep, "/invoke/Misc/flaky", start(2, { attempt: 2, retry_count: 1, retry_entry: 1, retry_elapsed_ms: 100 }), ...journal);
  assert.deepEqual(second.map(view), [
    { type: "error", code: 500, message: "run 'flaky' failed: boom", retryable: true, related_entry: 1, next_retry_delay_ms: 200 },
  ]);
  const s = await openStream(ep, "/invoke/Misc/flaky", start(2, { attempt: 3, retry_count: 2, retry_entry: 1, retry_elapsed_ms: 300 }), ...journal);
  assert.deepEqual(view(await s.next()), { type: "completion", flags: FLAG_ACK, entry: 1, result: { failure: { code: 500, message: "boom" } } });
  s.send(ack(1));
  assert.deepEqual(view(await s.next()), { type: "output", result: { value: "caught TerminalError: boom" } });
  assert.deepEqual(drain(), ["flaky", "flaky", "flaky"]);
});

test("a TerminalError ends the invocation with its code; any other error asks for a retry", async () => {
  const terminal = await exchange(ep, "/invoke/Misc/terminal", start(1), input(undefined));
  assert.deepEqual(terminal.map(view), [{ type: "output", result: { failure: { code: 418, message: "nope" } } }, { type: "end" }]);
  const transient = await exchange(ep, "/invoke/Misc/transient", start(1), input(undefined));
  assert.deepEqual(transient.map(view), [{ type: "error", code: 500, message: "transient", retryable: true }]);
  const caller = await exchange(
    ep,
    "/invoke/Misc/callerSeesTerminal",
    start(2),
    input(undefined),
    { type: "call", body: { service: "Greeter", handler: "greet", headers: [], parameter: ok("x").value as Uint8Array, result: failed(418, "failed: x") } },
  );
  assert.deepEqual(view(caller[0]!), { type: "output", result: { value: { terminal: true, code: 418, message: "failed: x" } } });
  const e = new TerminalError("m", { errorCode: 404 });
  assert.ok(e instanceof TerminalError && e instanceof Error);
  assert.deepEqual([e.code, e.message, new TerminalError("d").code], [404, "m", 500]);
});

test("a combinator records its winner and replays it even when both inputs are complete", async () => {
  const s = await openStream(ep, "/invoke/Misc/race", start(1), input(undefined));
  assert.equal((await s.next()).type, "sleep");
  assert.equal((await s.next()).type, "call");
  assert.deepEqual(view(await s.next()), { type: "run", name: "holdfast:race" });
  s.send(completion(2, ok("Hello race")));
  assert.deepEqual(view(await s.next()), { type: "completion", entry: 3, result: { value: [1] } });
  assert.deepEqual(view(await s.next()), { type: "output", result: { value: "Hello race" } });

  const replay = (order: number[]) =>
    exchange(
      ep,
      "/invoke/Misc/race",
      start(4),
      input(undefined),
      { type: "sleep", body: { duration_ms: 1000, result: {} } },
      { type: "call", body: { service: "Greeter", handler: "greet", headers: [], parameter: ok("race").value as Uint8Array, result: ok("Hello race") } },
      { type: "run", body: { name: "holdfast:race", result: ok(order) } },
    );
  assert.deepEqual(view((await replay([1]))[0]!), { type: "output", result: { value: "Hello race" } }, "same winner as the live run");
  assert.deepEqual(view((await replay([0]))[0]!), { type: "output", result: { value: "timer" } }, "the recorded order decides, not entry order");
});

test("cancellation reaches the handler at its await, and replays the same way", async () => {
  drain();
  const s = await openStream(ep, "/invoke/Misc/cancellable", start(1), input(undefined));
  assert.equal((await s.next()).type, "sleep");
  s.send(completion(1, failed(409, "cancelled")));
  assert.deepEqual(view(await s.next()), { type: "run", name: "compensate" });
  assert.equal((await s.next()).type, "completion");
  s.send(ack(2));
  assert.deepEqual(view(await s.next()), { type: "output", result: { failure: { code: 409, message: "cancelled" } } });
  assert.deepEqual(drain(), ["compensate"]);

  const replayed = await exchange(
    ep,
    "/invoke/Misc/cancellable",
    start(3),
    input(undefined),
    { type: "sleep", body: { duration_ms: 60_000, result: failed(409, "cancelled") } },
    { type: "run", body: { name: "compensate", result: ok("undone") } },
  );
  assert.deepEqual(replayed.map(view), [{ type: "output", result: { failure: { code: 409, message: "cancelled" } } }, { type: "end" }]);
  assert.deepEqual(drain(), []);
});
