// A WHATWG EventSource (npm `eventsource`) for the Rust integration tests: it reconnects by itself after a
// dropped connection and sends Last-Event-ID, as browsers do.
//
// Usage: node sse-client.mjs <stream url>
// Prints JSON lines: {"type":"open"}, {"type":"message","id":"<seq>","data":{...}}, {"type":"error","message":...}
// Exits when stdin closes.
import { EventSource } from "eventsource";

const [url] = process.argv.slice(2);
const out = (line) => process.stdout.write(JSON.stringify(line) + "\n");
const source = new EventSource(url);
source.onopen = () => out({ type: "open" });
source.onmessage = (event) => out({ type: "message", id: event.lastEventId, data: JSON.parse(event.data) });
source.onerror = (event) => out({ type: "error", message: event?.message ?? null, code: event?.code ?? null });
process.stdin.on("data", () => {});
process.stdin.on("end", () => {
  source.close();
  process.exit(0);
});
