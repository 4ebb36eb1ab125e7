// Example services, registered by `make run`:
//  - greeter: the founding post's hello world — a keyed handler counting calls per name;
//  - TicketService + UserSession: the ticket-reservation flow — a user session reserves a ticket
//    through a durable call to the ticket's own virtual object, keeps it in its cart, and sends
//    itself a delayed `expireTicket` that releases the ticket unless the user checked out first
//    (TICKET_EXPIRY_MS, default 15 minutes).
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

const EXPIRY_MS = Number(process.env.TICKET_EXPIRY_MS ?? 15 * 60 * 1000);

const TicketService = holdfast.object({
  name: "TicketService",
  handlers: {
    // A ticket can be reserved once; later reservations by anyone else fail.
    reserve: async (ctx, userId) => {
      const holder = await ctx.get("holder");
      if (holder && holder !== userId) return false;
      ctx.set("holder", userId);
      ctx.set("status", "reserved");
      return true;
    },
    // Releases a reservation that was not sold.
    unreserve: async (ctx, userId) => {
      if ((await ctx.get("holder")) === userId && (await ctx.get("status")) === "reserved") {
        ctx.clearAll();
      }
    },
    markAsSold: async (ctx, userId) => {
      if ((await ctx.get("holder")) === userId) ctx.set("status", "sold");
    },
    holder: holdfast.handlers.object.shared(async (ctx) => (await ctx.get("holder")) ?? null),
    status: holdfast.handlers.object.shared(async (ctx) => (await ctx.get("status")) ?? "available"),
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
        // The reservation expires unless the user checks out first.
        ctx.objectSendClient(UserSession, ctx.key).expireTicket(ticketId, holdfast.rpc.sendOpts({ delay: EXPIRY_MS }));
      }
      return success;
    },
    expireTicket: async (ctx, ticketId) => {
      const tickets = (await ctx.get("cart")) ?? [];
      if (!tickets.includes(ticketId)) return;
      ctx.set("cart", tickets.filter((t) => t !== ticketId));
      ctx.objectSendClient(TicketService, ticketId).unreserve(ctx.key);
    },
    checkout: async (ctx) => {
      const tickets = (await ctx.get("cart")) ?? [];
      for (const ticketId of tickets) {
        await ctx.objectClient(TicketService, ticketId).markAsSold(ctx.key);
      }
      ctx.set("cart", []);
      return tickets;
    },
    cart: holdfast.handlers.object.shared(async (ctx) => (await ctx.get("cart")) ?? []),
  },
});

const port = Number(process.env.PORT ?? 9080);
const handler = holdfast.endpoint().bind(greeter).bind(TicketService).bind(UserSession).http2Handler();
http2.createServer(handler).listen(port, "127.0.0.1", () =>
  console.log(`example services listening on 127.0.0.1:${port}`),
);
