/**
 * Durable time, awakeables and workflow promises, driven with frames as the kernel would send them:
 * which entries the SDK writes (and with which fields), and what the handler sees when the kernel
 * completes them.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as restate from "@holdfast/sdk";
import { CancelledError, TerminalError, type Context, type ObjectContext, type WorkflowContext, type WorkflowSharedContext } from "@holdfast/sdk";
import { awakeableId } from "@holdfast/sdk/protocol";
import { AWAKEABLE_KEY, INVOCATION_ID, completion, exchange, failed, input, ok, openStream, start, view } from "./harness.js";

const Greeter = restate.service({ name: "Greeter", handlers: { greet: async (_ctx: Context, name: string) => `Hello ${name}` } });
const Counter = restate.object({ name: "Counter", handlers: { add: async (_ctx: ObjectContext, _n: number) => undefined } });

/** What a handler caught, as plain data. */
const caught = (e: unknown) => ({
  name: (e as Error).constructor.name,
  terminal: e instanceof TerminalError,
  cancelled: e instanceof CancelledError,
  code: (e as TerminalError).code,
  message: (e as Error).message,
});

const Timers = restate.service({
  name: "Timers",
  handlers: {
    // entries: 1 sleep(ms), 2 sleep(Duration), 3 sleep with a name
    sleeps: async (ctx: Context) => {
      await ctx.sleep(250);
      await ctx.sleep({ minutes: 1, seconds: 30, milliseconds: 5 });
      await ctx.sleep({ hours: 1 }, "nap");
      return "awake";
    },
    long: async (ctx: Context) => {
      await ctx.sleep({ hours: 1 });
      return "awake";
    },
    badSleep: async (ctx: Context) => {
      await ctx.sleep(Number.POSITIVE_INFINITY);
      return "unreachable";
    },
    // entries 1-6: sends, one written per form
    sends: async (ctx: Context) => {
      ctx.serviceSendClient(Greeter).greet("a", restate.rpc.sendOpts({ delay: 1000 }));
      ctx.objectSendClient(Counter, "c1").add(1, restate.rpc.sendOpts({ delay: { minutes: 5 }, idempotencyKey: "once" }));
      ctx.workflowSendClient(Signup, "w1").confirm("yes", restate.rpc.sendOpts({ delay: { days: 1 } }));
      ctx.serviceSendClient(Greeter, { delay: 2000 }).greet("b");
      ctx.serviceSendClient(Greeter, { delay: 2000 }).greet("c", restate.rpc.sendOpts({ delay: 10 }));
      ctx.genericSend({ service: "Greeter", method: "greet", parameter: new TextEncoder().encode('"d"'), delay: { seconds: 3 } });
      ctx.serviceSendClient(Greeter).greet("now");
      return "sent";
    },
  },
});

const Awakeables = restate.service({
  name: "Awakeables",
  handlers: {
    // entries: 1 awakeable, 2 run (publishes the id)
    wait: async (ctx: Context) => {
      const { id, promise } = ctx.awakeable<{ ok: boolean }>();
      await ctx.run("publish", () => id);
      try {
        return { id, value: await promise };
      } catch (e) {
        return { id, error: caught(e) };
      }
    },
    // entries: 1 complete_awakeable (resolve), 2 complete_awakeable (reject)
    complete: async (ctx: Context, id: string) => {
      ctx.resolveAwakeable(id, { ok: true });
      ctx.rejectAwakeable(id, "changed my mind");
      return "done";
    },
    completeMalformed: async (ctx: Context, id: string) => {
      try {
        ctx.resolveAwakeable(id, 1);
      } catch (e) {
        try {
          ctx.rejectAwakeable(id, "no");
        } catch (again) {
          return [caught(e), caught(again)];
        }
      }
      return "accepted";
    },
    uncaughtMalformed: async (ctx: Context) => {
      ctx.resolveAwakeable("awk_not_an_id");
      return "unreachable";
    },
    create: async (ctx: Context) => ctx.awakeable().id,
  },
});

const Signup = restate.workflow({
  name: "Signup",
  handlers: {
    // entries: 1 get_promise (awaited directly), 2 peek_promise
    run: async (ctx: WorkflowContext, email: string) => {
      const confirmed = await ctx.promise<string>("confirmed");
      const other = await ctx.promise<string>("other").peek();
      return `${email}: ${confirmed} (other: ${String(other)})`;
    },
    confirm: async (ctx: WorkflowSharedContext, v: string) => {
      try {
        await ctx.promise<string>("confirmed").resolve(v);
        return "ok";
      } catch (e) {
        return caught(e);
      }
    },
    refuse: restate.handlers.workflow.shared(async (ctx: WorkflowSharedContext, reason: string) => {
      await ctx.promise("confirmed").reject(reason);
      return "refused";
    }),
    // entries: 1 get_promise, then awaiting the same promise again writes nothing more
    twice: async (ctx: WorkflowSharedContext) => {
      const p = ctx.promise<number>("n");
      const a = await p;
      const b = await p.get();
      return a + b;
    },
    failedPromise: async (ctx: WorkflowSharedContext) => {
      try {
        return await ctx.promise("confirmed").get();
      } catch (e) {
        return caught(e);
      }
    },
  },
});

const ep = restate.endpoint({ suspendAfterMs: 60_000 }).bind(Timers).bind(Awakeables).bind(Signup).handler();

test("a handler blocked only on a sleep longer than the suspension delay suspends at once", async () => {
  const started = Date.now();
  const s = await openStream(ep, "/invoke/Timers/long", start(1), input(undefined));
  assert.deepEqual(view(await s.next()), { type: "sleep", duration_ms: 3_600_000 });
  assert.deepEqual(view(await s.next()), { type: "suspension", waiting_on: [1] });
  assert.ok(Date.now() - started < 10_000, "suspended only after the suspension delay");
  s.closeInput();
});

test("ctx.sleep takes milliseconds or a Duration and writes sleep entries completed with {}", async () => {
  const s = await openStream(ep, "/invoke/Timers/sleeps", start(1), input(undefined));
  assert.deepEqual(view(await s.next()), { type: "sleep", duration_ms: 250 });
  s.send(completion(1, {}));
  assert.deepEqual(view(await s.next()), { type: "sleep", duration_ms: 90_005 });
  s.send(completion(2, {}));
  assert.deepEqual(view(await s.next()), { type: "sleep", duration_ms: 3_600_000 });
  s.send(completion(3, {}));
  assert.deepEqual(view(await s.next()), { type: "output", result: { value: "awake" } });
  s.closeInput();

  const replayed = await exchange(
    ep,
    "/invoke/Timers/sleeps",
    start(4),
    input(undefined),
    { type: "sleep", body: { duration_ms: 250, result: {} } },
    { type: "sleep", body: { duration_ms: 90_005, result: {} } },
    { type: "sleep", body: { duration_ms: 3_600_000, result: {} } },
  );
  assert.deepEqual(replayed.map(view), [{ type: "output", result: { value: "awake" } }, { type: "end" }]);
});

test("a sleep that cannot be written is an error of the attempt, not a malformed entry", async () => {
  const out = await exchange(ep, "/invoke/Timers/badSleep", start(1), input(undefined));
  assert.equal(out.length, 1);
  const error = view(out[0]!) as { type: string; code: number; retryable: boolean; message: string };
  assert.deepEqual([error.type, error.code, error.retryable], ["error", 500, true]);
  assert.match(error.message, /sleep must be a finite duration/);
});

test("delayed sends carry delay_ms from sendOpts, client options and genericSend", async () => {
  const out = await exchange(ep, "/invoke/Timers/sends", start(1), input(undefined));
  assert.deepEqual(out.map(view), [
    { type: "send", service: "Greeter", handler: "greet", headers: [], parameter: "a", delay_ms: 1000 },
    { type: "send", service: "Counter", handler: "add", key: "c1", headers: [], idempotency_key: "once", parameter: 1, delay_ms: 300_000 },
    { type: "send", service: "Signup", handler: "confirm", key: "w1", headers: [], parameter: "yes", delay_ms: 86_400_000 },
    { type: "send", service: "Greeter", handler: "greet", headers: [], parameter: "b", delay_ms: 2000 },
    { type: "send", service: "Greeter", handler: "greet", headers: [], parameter: "c", delay_ms: 10 },
    { type: "send", service: "Greeter", handler: "greet", headers: [], parameter: "d", delay_ms: 3000 },
    { type: "send", service: "Greeter", handler: "greet", headers: [], parameter: "now" },
    { type: "output", result: { value: "sent" } },
    { type: "end" },
  ]);
});

test("ctx.awakeable writes an awakeable entry and hands out the id signed with start.awakeable_key", async () => {
  const s = await openStream(ep, "/invoke/Awakeables/wait", start(1), input(undefined));
  const id = awakeableId(INVOCATION_ID, 1, AWAKEABLE_KEY);
  assert.deepEqual(view(await s.next()), { type: "awakeable" });
  assert.deepEqual(view(await s.next()), { type: "run", name: "publish" });
  const proposed = view(await s.next()) as { type: string; result: { value: string } };
  assert.deepEqual([proposed.type, proposed.result.value], ["completion", id]);
  assert.equal(id.length, 92);
  assert.ok(id.startsWith(`awk_${INVOCATION_ID.slice(4)}00000001`));
  s.send(completion(2, ok(id)), { type: "entry_ack", body: { entry: 2 } });
  s.send(completion(1, ok({ ok: true })));
  assert.deepEqual(view(await s.next()), { type: "output", result: { value: { id, value: { ok: true } } } });
  s.closeInput();

  // Another key, another id: the id cannot be derived from the invocation id alone.
  const other = await exchange(ep, "/invoke/Awakeables/create", start(1, { awakeable_key: new Uint8Array(32).fill(7) }), input(undefined));
  const otherId = (view(other[1]!) as { result: { value: string } }).result.value;
  assert.notEqual(otherId, awakeableId(INVOCATION_ID, 1, AWAKEABLE_KEY));
  assert.equal(otherId, awakeableId(INVOCATION_ID, 1, new Uint8Array(32).fill(7)));
});

test("a rejected awakeable reaches its handler as a TerminalError with the reason and code 500", async () => {
  const id = awakeableId(INVOCATION_ID, 1, AWAKEABLE_KEY);
  const out = await exchange(
    ep,
    "/invoke/Awakeables/wait",
    start(3),
    input(undefined),
    { type: "awakeable", body: { result: failed(500, "changed my mind") } },
    { type: "run", body: { name: "publish", result: ok(id) } },
  );
  assert.deepEqual(out.map(view), [
    { type: "output", result: { value: { id, error: { name: "TerminalError", terminal: true, cancelled: false, code: 500, message: "changed my mind" } } } },
    { type: "end" },
  ]);
});

test("resolveAwakeable and rejectAwakeable write complete_awakeable entries", async () => {
  const id = awakeableId(INVOCATION_ID, 4, AWAKEABLE_KEY);
  const out = await exchange(ep, "/invoke/Awakeables/complete", start(1), input(id));
  assert.deepEqual(out.map(view), [
    { type: "complete_awakeable", id, result: { value: { ok: true } } },
    { type: "complete_awakeable", id, result: { failure: { code: 500, message: "changed my mind" } } },
    { type: "output", result: { value: "done" } },
    { type: "end" },
  ]);
});

test("a malformed awakeable id is refused with a TerminalError (400) before anything is written", async () => {
  const good = awakeableId(INVOCATION_ID, 4, AWAKEABLE_KEY);
  for (const bad of ["awk_aW52XzFhMmIzYw_3", good.slice(0, -2), good.toUpperCase(), `${good}00`, ""]) {
    const out = await exchange(ep, "/invoke/Awakeables/completeMalformed", start(1), input(bad));
    assert.equal(out.length, 2, bad);
    const [first, second] = (view(out[0]!) as { result: { value: ReturnType<typeof caught>[] } }).result.value;
    for (const e of [first!, second!]) {
      assert.deepEqual([e.terminal, e.code], [true, 400], bad);
      assert.match(e.message, /^malformed awakeable id .*: expected awk_ followed by 88 lower-case hex digits$/, bad);
    }
  }
  const uncaught = await exchange(ep, "/invoke/Awakeables/uncaughtMalformed", start(1), input(undefined));
  assert.deepEqual(uncaught.map((m) => m.type), ["output", "end"]);
  assert.equal((view(uncaught[0]!) as { result: { failure: { code: number } } }).result.failure.code, 400);
});

test("no awakeable is written when start carries no usable id or awakeable key", async () => {
  for (const extra of [{ id: "inv_test" }, { awakeable_key: new Uint8Array(16) }, { awakeable_key: new Uint8Array(33) }]) {
    const out = await exchange(ep, "/invoke/Awakeables/create", start(1, extra), input(undefined));
    assert.deepEqual(out.map((m) => m.type), ["error"], JSON.stringify(extra));
    assert.equal((view(out[0]!) as { retryable: boolean }).retryable, true);
  }
});

test("a workflow is defined with run and shared handlers", () => {
  const manifest = restate.endpoint().bind(Signup).manifest();
  assert.deepEqual(
    manifest.services.map((s) => [s.name, s.type, s.handlers.map((h) => [h.name, h.kind])]),
    [["Signup", "workflow", [["run", "workflow"], ["confirm", "shared"], ["refuse", "shared"], ["twice", "shared"], ["failedPromise", "shared"]]]],
  );
});

test("awaiting a workflow promise writes get_promise; peek writes peek_promise and sees {} as undefined", async () => {
  const s = await openStream(ep, "/invoke/Signup/run", start(1, { key: "w1" }), input("a@b.c"));
  assert.deepEqual(view(await s.next()), { type: "get_promise", name: "confirmed" });
  assert.ok(await s.quiet(50), "waits for the promise");
  s.send(completion(1, ok("yes")));
  assert.deepEqual(view(await s.next()), { type: "peek_promise", name: "other" });
  s.send(completion(2, {}));
  assert.deepEqual(view(await s.next()), { type: "output", result: { value: "a@b.c: yes (other: undefined)" } });
  s.closeInput();

  const suspended = await exchange(ep, "/invoke/Signup/run", start(1, { key: "w1" }), input("a@b.c"));
  assert.deepEqual(suspended.map(view), [{ type: "get_promise", name: "confirmed" }, { type: "suspension", waiting_on: [1] }]);

  const twice = await exchange(ep, "/invoke/Signup/twice", start(2, { key: "w1" }), input(undefined), { type: "get_promise", body: { name: "n", result: ok(20) } });
  assert.deepEqual(twice.map(view), [{ type: "output", result: { value: 40 } }, { type: "end" }], "one entry for both awaits");
});

test("resolve and reject write complete_promise; the kernel's {} accepts", async () => {
  const s = await openStream(ep, "/invoke/Signup/confirm", start(1, { key: "w1" }), input("yes"));
  assert.deepEqual(view(await s.next()), { type: "complete_promise", name: "confirmed", completion: { value: "yes" } });
  s.send(completion(1, {}));
  assert.deepEqual(view(await s.next()), { type: "output", result: { value: "ok" } });
  s.closeInput();

  const refused = await openStream(ep, "/invoke/Signup/refuse", start(1, { key: "w1" }), input("no thanks"));
  assert.deepEqual(view(await refused.next()), { type: "complete_promise", name: "confirmed", completion: { failure: { code: 500, message: "no thanks" } } });
  refused.send(completion(1, {}));
  assert.deepEqual(view(await refused.next()), { type: "output", result: { value: "refused" } });
  refused.closeInput();
});

test("completing an already completed promise surfaces as a TerminalError with code 409 in the handler", async () => {
  const s = await openStream(ep, "/invoke/Signup/confirm", start(1, { key: "w1" }), input("again"));
  assert.deepEqual(view(await s.next()), { type: "complete_promise", name: "confirmed", completion: { value: "again" } });
  s.send(completion(1, failed(409, "promise was already completed")));
  assert.deepEqual(view(await s.next()), {
    type: "output",
    result: { value: { name: "TerminalError", terminal: true, cancelled: false, code: 409, message: "promise was already completed" } },
  });
  s.closeInput();

  // The cancellation failure is still a cancellation.
  const cancelled = await exchange(ep, "/invoke/Signup/confirm", start(2, { key: "w1" }), input("again"), {
    type: "complete_promise",
    body: { name: "confirmed", completion: ok("again"), result: failed(409, "cancelled") },
  });
  assert.deepEqual(view(cancelled[0]!), {
    type: "output",
    result: { value: { name: "CancelledError", terminal: true, cancelled: true, code: 409, message: "cancelled" } },
  });
});

test("a rejected workflow promise reaches get() as a TerminalError", async () => {
  const out = await exchange(ep, "/invoke/Signup/failedPromise", start(2, { key: "w1" }), input(undefined), {
    type: "get_promise",
    body: { name: "confirmed", result: failed(500, "no thanks") },
  });
  assert.deepEqual(view(out[0]!), {
    type: "output",
    result: { value: { name: "TerminalError", terminal: true, cancelled: false, code: 500, message: "no thanks" } },
  });
});

const Oversized = restate.object({
  name: "Oversized",
  handlers: {
    // entry 1 would be a set_state above the kernel's message limit
    setHuge: async (ctx: ObjectContext) => {
      ctx.set("huge", "x".repeat(17 * 1024 * 1024));
      return "unreachable";
    },
  },
});

test("a state value above the message limit fails the invocation terminally with 413, unsent", async () => {
  const endpoint = restate.endpoint().bind(Oversized).handler();
  const out = await exchange(endpoint, "/invoke/Oversized/setHuge", start(1, { key: "k" }), input(undefined));
  // Nothing of the value was written: the invocation ends with a 413 failure as its output.
  const [output, end] = out.map(view) as [{ type: string; result: { failure: { code: number; message: string } } }, { type: string }];
  assert.equal(out.length, 2, JSON.stringify(out.map(view)));
  assert.deepEqual([output.type, output.result.failure.code, end.type], ["output", 413, "end"]);
  assert.match(output.result.failure.message, /max_message_bytes/);
});
