//! MQTT publishing: the wire contract ([`message`]), the durable spool of undelivered events
//! ([`outbox`]) and the client that delivers them ([`publisher`]). The contract is documented
//! for consumers in `docs/mqtt.md` and as JSON Schema in `docs/schemas/`.

mod inflight;
pub mod journal;
pub mod message;
pub mod open_events;
pub mod outbox;
pub mod publisher;
pub mod security;

pub use message::{
    events_topic, health_topic, status_topic, BrokerState, CameraHealth, CameraState, EndReason,
    EventKind, EventMessage, Health, Region, TopicError,
};
pub use outbox::{FsyncPolicy, Outbox, OutboxEntry, OutboxError, OutboxOptions};
pub use publisher::{
    Delivered, MqttConfig, Publisher, PublisherError, PublisherStats, ShutdownReport,
};
