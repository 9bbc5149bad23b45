//! All integration tests, compiled into one binary (one link, shared helpers).

mod events;
mod fhir;
mod helpers;
mod hub;
mod isolation;
mod keys;
mod kill;
mod mllp;
mod multi_instance;
mod openapi;
mod postgres_plans;
mod realtime;
mod sqlite_wal;
mod store_conformance;
mod transform;
mod webhooks;
