// Bun's WebSocket echo (uWebSockets inside), for benches/ws_load.py. Usage: bun bun_echo.js PORT
const port = Number(process.argv[2]);
Bun.serve({
  hostname: "127.0.0.1",
  port,
  fetch(req, server) {
    if (server.upgrade(req)) return;
    return new Response("WebSocket only", { status: 400 });
  },
  websocket: {
    perMessageDeflate: false,
    maxPayloadLength: 64 * 1024,
    message(ws, message) {
      ws.send(message);
    },
  },
});
