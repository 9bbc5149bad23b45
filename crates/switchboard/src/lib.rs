//! Switchboard: a durable event hub for healthcare integration.
//!
//! Sources (the HTTP API and the MLLP listener; FHIR later) hand events to the [`hub`], which commits them to the
//! [`store`] in batches (group commit, fsync per batch) and only then acknowledges them. Committed events flow to
//! sinks: in-process and durable [`listeners`], and the history API in [`api`].
//!
//! - [`event`]: the event model, type names, patterns and validation.
//! - [`hub`]: `emit`, the group-commit writer, live and durable listeners.
//! - [`store`]: the storage trait and the SQLite backend.
//! - [`api`]: the axum HTTP API and its error type.
//! - [`listeners`]: built-in durable listeners (metrics collector, transformer, task creator, FHIR sync).
//! - [`mllp`]: HL7 v2 over MLLP: the listener (a source) and the sender.
//! - [`realtime`]: live push to screens: Socket.IO rooms and Server-Sent Events.
//! - [`app`]: `run(config, listeners, shutdown)`, startup and graceful shutdown.
//! - [`config`]: layered configuration.
//! - [`webhooks`]: subscriptions, the transactional outbox and the delivery worker.

pub mod api;
pub mod app;
pub mod auth;
pub mod config;
pub mod event;
pub mod fhir;
pub mod hub;
pub mod listeners;
pub mod mllp;
pub mod realtime;
pub mod retention;
pub mod store;
pub mod transform;
pub mod util;
pub mod webhooks;

/// mimalloc instead of the system allocator: the hot paths (HL7 parsing, JSON, HTTP) allocate many short-lived
/// buffers on two or more threads, which glibc's malloc serves more slowly and, with many threads, lets grow.
/// Declared in the library so the binary, the tests and the benches all run on it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub use app::{run, Application, Listeners};
pub use config::Config;
pub use event::{Event, EventType, NewEvent, Source};
pub use hub::Hub;
