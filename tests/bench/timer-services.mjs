// The endpoint of the timer benchmark (tests/bench/timers.sh): `Tick/at` prints when each
// invocation started (and the send time it was given, if any), so the benchmark can compare it
// with the timer's deadline.
import http2 from "node:http2";
import * as holdfast from "../../sdk-ts/dist/src/index.js";

const Tick = holdfast.service({
  name: "Tick",
  handlers: {
    at: async (_ctx, sentAt) => {
      console.log(sentAt ? `fired ${Date.now()} ${sentAt}` : `fired ${Date.now()}`);
    },
  },
});

const port = Number(process.env.PORT ?? 9080);
http2
  .createServer(holdfast.endpoint().bind(Tick).http2Handler())
  .listen(port, "127.0.0.1", () => console.log(`listening on ${port}`));
