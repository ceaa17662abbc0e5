// Bun's pub/sub (uWebSockets topics inside), for `ringstream bench broadcast`: a connection to
// /ws/broadcast/NAME subscribes to NAME, and every message is published to the topic with
// server.publish, which reaches every subscriber, the sender too (ringstream's
// echo_to_sender = true). Backpressure limit 1 MiB, closing a slow subscriber, like
// ringstream's default. With "deflate" after the port, permessage-deflate is offered and every
// publish asks for compression. Usage: bun bun_broadcast.js PORT [deflate]
const port = Number(process.argv[2]);
const deflate = process.argv[3] === "deflate";
const prefix = "/ws/broadcast/";
const server = Bun.serve({
  hostname: "127.0.0.1",
  port,
  fetch(req, server) {
    const path = new URL(req.url).pathname;
    if (!path.startsWith(prefix) || path.length === prefix.length) {
      return new Response("not found", { status: 404 });
    }
    if (server.upgrade(req, { data: { topic: path.slice(prefix.length) } })) return;
    return new Response("WebSocket only", { status: 400 });
  },
  websocket: {
    perMessageDeflate: deflate,
    maxPayloadLength: 64 * 1024,
    backpressureLimit: 1024 * 1024,
    closeOnBackpressureLimit: true,
    open(ws) {
      ws.subscribe(ws.data.topic);
    },
    message(ws, message) {
      server.publish(ws.data.topic, message, deflate);
    },
  },
});
