//! Named accessors for the common MSH fields of a [`Message`].
//!
//! All return decoded text, or `None` when the field is absent or empty. They read the header from the index
//! the parse made, not by path.

use std::borrow::Cow;

use super::Message;

impl Message {
    /// Message type from MSH-9 as `CODE^TRIGGER` (e.g. `ADT^A01`), ignoring
    /// the message structure in MSH-9.3. Just `CODE` when there is no trigger.
    pub fn message_type(&self) -> Option<Cow<'_, str>> {
        let code = self.header_value(9, Some(1))?;
        Some(match self.header_value(9, Some(2)) {
            Some(trigger) => Cow::Owned(format!("{code}^{trigger}")),
            None => code,
        })
    }

    /// MSH-9.1, e.g. `ADT`.
    pub fn message_code(&self) -> Option<Cow<'_, str>> {
        self.header_value(9, Some(1))
    }

    /// MSH-9.2, e.g. `A01`.
    pub fn trigger_event(&self) -> Option<Cow<'_, str>> {
        self.header_value(9, Some(2))
    }

    /// MSH-10, message control id.
    pub fn control_id(&self) -> Option<Cow<'_, str>> {
        self.header_value(10, None)
    }

    /// MSH-3, sending application (whole field, components included).
    pub fn sending_application(&self) -> Option<Cow<'_, str>> {
        self.header_value(3, None)
    }

    /// MSH-4, sending facility (whole field).
    pub fn sending_facility(&self) -> Option<Cow<'_, str>> {
        self.header_value(4, None)
    }

    /// MSH-5, receiving application (whole field).
    pub fn receiving_application(&self) -> Option<Cow<'_, str>> {
        self.header_value(5, None)
    }

    /// MSH-6, receiving facility (whole field).
    pub fn receiving_facility(&self) -> Option<Cow<'_, str>> {
        self.header_value(6, None)
    }

    /// MSH-7, date/time of message.
    pub fn timestamp(&self) -> Option<Cow<'_, str>> {
        self.header_value(7, Some(1))
    }

    /// MSH-11.1, processing id (`P`, `D` or `T`).
    pub fn processing_id(&self) -> Option<Cow<'_, str>> {
        self.header_value(11, Some(1))
    }

    /// MSH-12.1, version id (e.g. `2.5.1`).
    pub fn version(&self) -> Option<Cow<'_, str>> {
        self.header_value(12, Some(1))
    }

    /// MSH-15, accept acknowledgment type (`AL`, `NE`, `ER`, `SU`).
    pub fn accept_ack_type(&self) -> Option<Cow<'_, str>> {
        self.header_value(15, None)
    }

    /// MSH-16, application acknowledgment type.
    pub fn application_ack_type(&self) -> Option<Cow<'_, str>> {
        self.header_value(16, None)
    }

    /// MSH-18 (first repetition) as written, e.g. `8859/1`. The decoded
    /// meaning is [`Message::encoding`].
    pub fn charset(&self) -> Option<Cow<'_, str>> {
        self.header_value(18, None)
    }
}
