// Socket.IO's broadcast across nodes (socket.io 4 with @socket.io/redis-adapter), for
// `ringstream bench broadcast --socketio`: a connection joins the room its handshake names
// (?room=NAME), and every event `m` a client emits goes back out with io.to(room).emit, which
// reaches the room's members on this node directly and, through the Redis adapter (a PUBLISH
// per event, every node PSUBSCRIBEd), on every other node on the same Redis; the sender gets
// it too (ringstream's echo_to_sender = true). Without REDIS_URL the node stands alone
// (Socket.IO's in-memory adapter). WebSocket transport only (no HTTP long-polling, no
// upgrade), no compression, Socket.IO's default ws engine. Prints `listening on
// 127.0.0.1:PORT` once Redis is connected and the port is open (PORT 0 picks a free one).
// Usage: node socketio_broadcast.js PORT [REDIS_URL]
const { createServer } = require("node:http");
const { Server } = require("socket.io");
const { createAdapter } = require("@socket.io/redis-adapter");
const { createClient } = require("redis");

const port = Number(process.argv[2]);
const redisUrl = process.argv[3];
if (!Number.isInteger(port) || process.argv.length > 4) {
  console.error("usage: node socketio_broadcast.js PORT [REDIS_URL]");
  process.exit(2);
}

// The Redis adapter on two connections (publish, subscribe), once both are up.
async function redisAdapter(url) {
  const pub = createClient({ url });
  const sub = pub.duplicate();
  for (const client of [pub, sub]) {
    client.on("error", (e) => {
      console.error(`redis: ${e.message}`);
      process.exit(1);
    });
  }
  await Promise.all([pub.connect(), sub.connect()]);
  return createAdapter(pub, sub);
}

async function main() {
  const options = {
    transports: ["websocket"],
    serveClient: false,
    perMessageDeflate: false,
    maxHttpBufferSize: 64 * 1024,
  };
  if (redisUrl) options.adapter = await redisAdapter(redisUrl);
  const http = createServer();
  const io = new Server(http, options);
  io.on("connection", (socket) => {
    const room = socket.handshake.query.room;
    if (typeof room !== "string" || room.length === 0) {
      socket.disconnect(true);
      return;
    }
    socket.join(room);
    socket.on("m", (data) => io.to(room).emit("m", data));
  });
  http.listen(port, "127.0.0.1", () => {
    console.log(`listening on 127.0.0.1:${http.address().port}`);
  });
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
