//! The load suite's driver as a library, so the fault suite can reuse its parts.
//!
//! - [`run`]: one run of the suite (setup, load, drain, checks, report): what the binary calls.
//! - [`workload`]: the mixed workload, one open-loop task per path: [`workload::pacer`] the schedule,
//!   [`workload::http`] `POST /api/events` and FHIR creates, [`workload::mllp`] HL7 ADT^A01 over MLLP.
//! - [`receiver`]: the in-process webhook receiver (fails a share of requests, verifies signatures, records attempts).
//! - [`live`]: the live consumers: SSE clients and Socket.IO clients (through a Node helper).
//! - [`loss`]: the zero-loss check (history, webhook, SSE, Socket.IO) and the exact-backoff check.
//! - [`target`]: talking to the server under test: setup (key, subscription), history export, `/proc` sampling.
//! - [`id`]: compact event ids and shared names (a soak tracks millions of events).
//! - [`stats`]: latency percentiles; [`report`]: the markdown table and the JSON file; [`clock`]: wall-clock times.

pub mod clock;
pub mod id;
pub mod live;
pub mod loss;
pub mod receiver;
pub mod report;
pub mod run;
pub mod stats;
pub mod target;
pub mod workload;
