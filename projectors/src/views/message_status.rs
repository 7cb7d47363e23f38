//! A message's status, on its own so that the message document (`message.rs`) and its timeline
//! (`timeline.rs`, which maps each event type to the status it claims) both take it from here
//! instead of from each other.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Where a message is, as a search UI filters and facets on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MessageStatus {
    Enqueued,
    Routed,
    Sent,
    Delivered,
    Opened,
    Clicked,
    Undeliverable,
    Canceled,
    Throttled,
}

impl MessageStatus {
    pub const ALL: [MessageStatus; 9] = [
        MessageStatus::Enqueued,
        MessageStatus::Routed,
        MessageStatus::Sent,
        MessageStatus::Delivered,
        MessageStatus::Opened,
        MessageStatus::Clicked,
        MessageStatus::Undeliverable,
        MessageStatus::Canceled,
        MessageStatus::Throttled,
    ];

    /// The name in documents and query strings.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageStatus::Enqueued => "ENQUEUED",
            MessageStatus::Routed => "ROUTED",
            MessageStatus::Sent => "SENT",
            MessageStatus::Delivered => "DELIVERED",
            MessageStatus::Opened => "OPENED",
            MessageStatus::Clicked => "CLICKED",
            MessageStatus::Undeliverable => "UNDELIVERABLE",
            MessageStatus::Canceled => "CANCELED",
            MessageStatus::Throttled => "THROTTLED",
        }
    }

    pub fn parse(s: &str) -> Option<MessageStatus> {
        MessageStatus::ALL.into_iter().find(|status| status.as_str() == s)
    }

    /// The precedence of this status when events claim several (see the module doc); higher
    /// wins. `ROUTED` and `THROTTLED` share one: between them, the later event wins.
    pub fn precedence(self) -> u8 {
        match self {
            MessageStatus::Enqueued => 0,
            MessageStatus::Routed | MessageStatus::Throttled => 1,
            MessageStatus::Canceled => 2,
            MessageStatus::Sent => 3,
            MessageStatus::Delivered => 4,
            MessageStatus::Undeliverable => 5,
            MessageStatus::Opened => 6,
            MessageStatus::Clicked => 7,
        }
    }
}

impl fmt::Display for MessageStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
