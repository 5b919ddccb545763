//! Pub/Sub registry: channels and patterns to subscribers (being built for issue #3).

/// Channels and patterns with their subscribers.
#[derive(Default)]
pub struct PubSub {}
