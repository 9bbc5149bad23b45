// Drives socket.io-client v4 connections for the Rust integration tests.
//
// Usage: node sio-driver.mjs <server url> [socket.io path]
// Reads commands as JSON lines on stdin and prints what happens as JSON lines on stdout:
//   {"op":"connect","client":"a","auth":{...},"transports":["websocket"]}
//       -> {"client":"a","type":"connect","id":"..."} | {"client":"a","type":"connect_error","message":"..."}
//   {"op":"emit","client":"a","event":"subscribe","data":{...},"ref":1}
//       -> {"client":"a","type":"ack","ref":1,"response":{...}} | {"client":"a","type":"ack_timeout","ref":1}
//   {"op":"close","client":"a"} -> {"client":"a","type":"closed"}
// Every event a client receives -> {"client":"a","type":"event","name":"...","payload":{...},"at":<ms epoch>}
import { io } from "socket.io-client";
import readline from "node:readline";

const [url, path = "/socket.io/"] = process.argv.slice(2);
const sockets = new Map();
const out = (line) => process.stdout.write(JSON.stringify(line) + "\n");

function connect({ client, auth, transports }) {
  const socket = io(url, {
    path,
    auth,
    transports: transports ?? ["websocket"],
    reconnection: false,
    forceNew: true,
    timeout: 5000,
  });
  sockets.set(client, socket);
  socket.on("connect", () => out({ client, type: "connect", id: socket.id }));
  socket.on("connect_error", (err) => out({ client, type: "connect_error", message: err.message }));
  socket.on("disconnect", (reason) => out({ client, type: "disconnect", reason }));
  socket.onAny((name, payload) => out({ client, type: "event", name, payload, at: Date.now() }));
}

async function emit({ client, event, data, ref }) {
  const socket = sockets.get(client);
  if (!socket) return out({ client, type: "error", ref, message: "no such client" });
  try {
    const response = await socket.timeout(5000).emitWithAck(event, data);
    out({ client, type: "ack", ref, response });
  } catch {
    out({ client, type: "ack_timeout", ref });
  }
}

const lines = readline.createInterface({ input: process.stdin });
lines.on("line", (line) => {
  if (!line.trim()) return;
  const command = JSON.parse(line);
  switch (command.op) {
    case "connect": return connect(command);
    case "emit": return emit(command);
    case "close": {
      sockets.get(command.client)?.close();
      sockets.delete(command.client);
      return out({ client: command.client, type: "closed" });
    }
    default: return out({ type: "error", message: `unknown op ${command.op}` });
  }
});
lines.on("close", () => {
  for (const socket of sockets.values()) socket.close();
  process.exit(0);
});
