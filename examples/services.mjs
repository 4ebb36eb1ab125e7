// Example services, registered by `make run`:
//  - greeter: the founding post's hello world — a keyed handler counting calls per name;
//  - TicketService + UserSession: the ticket-reservation flow — a user session reserves a ticket
//    through a durable call to the ticket's own virtual object and keeps it in its cart.
// Served over HTTP/2 on 127.0.0.1:$PORT (default 9080).
import http2 from "node:http2";
import * as holdfast from "../sdk-ts/dist/src/index.js";

const greeter = holdfast.object({
  name: "greeter",
  handlers: {
    greet: async (ctx) => {
      const seen = (await ctx.get("count")) ?? 0;
      ctx.set("count", seen + 1);
      return `Hello ${ctx.key} for the ${seen + 1}-th time!`;
    },
  },
});

const TicketService = holdfast.object({
  name: "TicketService",
  handlers: {
    // A ticket can be reserved once; later reservations by anyone fail.
    reserve: async (ctx, userId) => {
      const holder = await ctx.get("holder");
      if (holder && holder !== userId) return false;
      ctx.set("holder", userId);
      return true;
    },
    holder: holdfast.handlers.object.shared(async (ctx) => (await ctx.get("holder")) ?? null),
  },
});

const UserSession = holdfast.object({
  name: "UserSession",
  handlers: {
    addTicket: async (ctx, ticketId) => {
      const success = await ctx.objectClient(TicketService, ticketId).reserve(ctx.key);
      if (success) {
        const tickets = (await ctx.get("cart")) ?? [];
        tickets.push(ticketId);
        ctx.set("cart", tickets);
      }
      return success;
    },
    cart: holdfast.handlers.object.shared(async (ctx) => (await ctx.get("cart")) ?? []),
  },
});

const port = Number(process.env.PORT ?? 9080);
const handler = holdfast.endpoint().bind(greeter).bind(TicketService).bind(UserSession).http2Handler();
http2.createServer(handler).listen(port, "127.0.0.1", () =>
  console.log(`example services listening on 127.0.0.1:${port}`),
);
