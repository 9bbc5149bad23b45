//! Real-time push, driven by independent clients: the npm `socket.io-client` v4, the npm `eventsource`
//! (a WHATWG EventSource that reconnects with Last-Event-ID), a raw websocket that never reads, and plain HTTP.

pub mod node;
mod socketio;
pub mod sse;
mod stuck;
