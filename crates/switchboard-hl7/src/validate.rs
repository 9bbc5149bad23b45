//! Structural validation of a parsed message before it is accepted.
//!
//! [`validate`] checks, in this order, and reports the first problem:
//!
//! 1. the message has segments and the first one is MSH
//!    ([`ValidationError::MissingMsh`], [`ValidationError::MshNotFirst`]);
//! 2. there is exactly one MSH ([`ValidationError::MultipleMsh`], usually
//!    two messages glued together);
//! 3. MSH-1, MSH-2, MSH-9 (its first component), MSH-10, MSH-11 and MSH-12
//!    are valued ([`ValidationError::MissingField`]);
//! 4. MSH-11.1 is `P`, `D` or `T` ([`ValidationError::InvalidProcessingId`]);
//! 5. MSH-12.1 is one of [`SUPPORTED_VERSIONS`]
//!    ([`ValidationError::UnsupportedVersion`]).
//!
//! MSH-7 (date/time of message) is deliberately not required: many senders
//! leave it empty and it does not affect routing or acknowledgement.

use crate::error::ValidationError;
use crate::message::Message;

/// HL7 v2 versions accepted in MSH-12.
pub const SUPPORTED_VERSIONS: &[&str] = &[
    "2.1", "2.2", "2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6", "2.7", "2.7.1", "2.8", "2.8.1",
    "2.8.2",
];

/// `true` if `version` is one of [`SUPPORTED_VERSIONS`].
pub fn is_supported_version(version: &str) -> bool {
    SUPPORTED_VERSIONS.contains(&version)
}

/// Check the header rules listed in the [module docs](self).
pub fn validate(msg: &Message) -> Result<(), ValidationError> {
    let msh_count = msg.segments_named("MSH").count();
    let first = msg.segments().next().ok_or(ValidationError::MissingMsh)?;
    if first.name() != "MSH" {
        return Err(match msh_count {
            0 => ValidationError::MissingMsh,
            _ => ValidationError::MshNotFirst,
        });
    }
    if msh_count > 1 {
        return Err(ValidationError::MultipleMsh { count: msh_count });
    }
    let present =
        |field: &'static str, path: &str| msg.get(path).ok_or(ValidationError::MissingField(field));
    present("MSH-1", "MSH-1")?;
    present("MSH-2", "MSH-2")?;
    present("MSH-9", "MSH-9.1")?;
    present("MSH-10", "MSH-10")?;
    let processing = present("MSH-11", "MSH-11.1")?;
    let version = present("MSH-12", "MSH-12.1")?;
    if !matches!(processing.as_ref(), "P" | "D" | "T") {
        return Err(ValidationError::InvalidProcessingId(
            processing.into_owned(),
        ));
    }
    if !is_supported_version(&version) {
        return Err(ValidationError::UnsupportedVersion(version.into_owned()));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn check(text: &str) -> Result<(), ValidationError> {
        validate(&Message::parse_str(text).unwrap())
    }

    const GOOD: &str = "MSH|^~\\&|A|B|C|D|20240101120000||ADT^A01^ADT_A01|MSG1|P|2.5.1\rPID|1\r";

    #[test]
    fn accepts_good_message_and_all_versions() {
        assert_eq!(check(GOOD), Ok(()));
        for v in SUPPORTED_VERSIONS {
            let text = format!("MSH|^~\\&|A|B|C|D|||ADT^A01|1|T|{v}^USA\r");
            assert_eq!(check(&text), Ok(()), "{v}");
        }
    }

    #[test]
    fn reports_missing_fields() {
        let cases = [
            ("MSH|^~\\&|A|B|C|D|||^A01|1|P|2.5", "MSH-9"),
            ("MSH|^~\\&|A|B|C|D|||ADT^A01||P|2.5", "MSH-10"),
            ("MSH|^~\\&|A|B|C|D|||ADT^A01|1||2.5", "MSH-11"),
            ("MSH|^~\\&|A|B|C|D|||ADT^A01|1|P", "MSH-12"),
            ("MSH||A|B|C|D|||ADT^A01|1|P|2.5", "MSH-2"),
        ];
        for (text, field) in cases {
            assert_eq!(
                check(text),
                Err(ValidationError::MissingField(field)),
                "{text}"
            );
        }
    }

    #[test]
    fn reports_bad_values() {
        assert_eq!(
            check("MSH|^~\\&|A|B|C|D|||ADT^A01|1|X|2.5"),
            Err(ValidationError::InvalidProcessingId("X".into()))
        );
        assert_eq!(
            check("MSH|^~\\&|A|B|C|D|||ADT^A01|1|P|3.0"),
            Err(ValidationError::UnsupportedVersion("3.0".into()))
        );
        assert_eq!(
            check("MSH|^~\\&|A|B|C|D|||ADT^A01|1|P|2.9"),
            Err(ValidationError::UnsupportedVersion("2.9".into()))
        );
    }

    #[test]
    fn reports_two_messages_in_one() {
        let text = format!("{GOOD}{GOOD}");
        assert_eq!(check(&text), Err(ValidationError::MultipleMsh { count: 2 }));
    }
}
