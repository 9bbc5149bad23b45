//! Rendering ACK messages (see the [module docs](super) for their shape).

use std::borrow::Cow;

use super::code::{AckCode, AckError, ErrorCondition};
use crate::message::{escape, Delimiters, Message};

/// Version assumed when the original's version is missing or unreadable.
pub(crate) const DEFAULT_VERSION: &str = "2.5";

/// Everything an ACK copies from the message it answers. Text fields are
/// raw: already escaped for `delims`.
#[derive(Debug, Clone, Default)]
pub(crate) struct AckHeader {
    pub delims: Delimiters,
    pub sending_application: String,
    pub sending_facility: String,
    pub receiving_application: String,
    pub receiving_facility: String,
    pub trigger: String,
    pub original_control_id: String,
    pub processing_id: String,
    pub version: String,
    pub charset: String,
    pub enhanced: bool,
}

impl AckHeader {
    fn from_message(msg: &Message) -> Self {
        let raw = |n: usize| msg.header_field(n).unwrap_or_default().to_owned();
        let trigger = crate::message::Location {
            field: 9,
            repetition: 1,
            component: Some(2),
            subcomponent: None,
        };
        Self {
            delims: *msg.delimiters(),
            sending_application: raw(3),
            sending_facility: raw(4),
            receiving_application: raw(5),
            receiving_facility: raw(6),
            trigger: msg.header_raw(&trigger).unwrap_or_default().to_owned(),
            original_control_id: raw(10),
            processing_id: raw(11),
            version: raw(12),
            charset: raw(18),
            enhanced: msg.accept_ack_type().is_some() || msg.application_ack_type().is_some(),
        }
    }

    /// The version id (first component of MSH-12) as numbers; the default
    /// version when unreadable.
    fn version_number(&self) -> (u32, u32, u32) {
        let id = self.version.split(self.delims.component).next();
        id.and_then(parse_version)
            .or_else(|| parse_version(DEFAULT_VERSION))
            .unwrap_or((2, 5, 0))
    }

    pub fn render(
        &self,
        code: AckCode,
        error: Option<AckError<'_>>,
        now: &str,
        control_id: &str,
    ) -> String {
        let d = &self.delims;
        let c = d.component;
        let code = if self.enhanced {
            code.to_commit()
        } else {
            code.to_application()
        };
        let version = self.version_number();
        let modern = version >= (2, 5, 0);
        let msh9 = match (self.trigger.is_empty(), version >= (2, 3, 1)) {
            (true, _) => "ACK".to_owned(),
            (false, true) => format!("ACK{c}{}{c}ACK", self.trigger),
            (false, false) => format!("ACK{c}{}", self.trigger),
        };
        let or = |value: &str, default: &'static str| -> String {
            if value.is_empty() { default } else { value }.to_owned()
        };
        let msh: Vec<Cow<'_, str>> = vec![
            "MSH".into(),
            d.encoding_characters().into(),
            self.receiving_application.as_str().into(),
            self.receiving_facility.as_str().into(),
            self.sending_application.as_str().into(),
            self.sending_facility.as_str().into(),
            escape(now, d),
            "".into(),
            msh9.into(),
            escape(control_id, d),
            or(&self.processing_id, "P").into(),
            or(&self.version, DEFAULT_VERSION).into(),
            "".into(),
            "".into(),
            "".into(),
            "".into(),
            "".into(),
            self.charset.as_str().into(),
        ];
        let mut out = String::with_capacity(256);
        push_segment(&mut out, msh, d.field);

        let mut msa: Vec<Cow<'_, str>> = vec![
            "MSA".into(),
            code.as_str().into(),
            self.original_control_id.as_str().into(),
        ];
        if let (Some(err), false) = (error, modern) {
            msa.push(escape(err.text, d));
        }
        push_segment(&mut out, msa, d.field);

        if let Some(err) = error {
            push_segment(&mut out, err_segment(err, code, modern, d), d.field);
        }
        out
    }
}

fn err_segment<'a>(
    err: AckError<'a>,
    code: AckCode,
    modern: bool,
    d: &Delimiters,
) -> Vec<Cow<'a, str>> {
    let cond: ErrorCondition = err.condition;
    if modern {
        let severity = if code.is_accept() { "W" } else { "E" };
        let c = d.component;
        vec![
            "ERR".into(),
            "".into(),
            "".into(),
            format!("{}{c}{}{c}HL70357", cond.code(), cond.text()).into(),
            severity.into(),
            "".into(),
            "".into(),
            "".into(),
            escape(err.text, d),
        ]
    } else {
        let (c, s) = (d.component, d.subcomponent);
        vec![
            "ERR".into(),
            format!("{c}{c}{c}{}{s}{}{s}HL70357", cond.code(), cond.text()).into(),
        ]
    }
}

/// Append one CR-terminated segment, dropping trailing empty fields.
fn push_segment(out: &mut String, mut fields: Vec<Cow<'_, str>>, sep: char) {
    while fields.last().is_some_and(|f| f.is_empty()) {
        fields.pop();
    }
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(sep);
        }
        out.push_str(f);
    }
    out.push('\r');
}

/// `2.5.1` → `(2, 5, 1)`; `None` unless it is 1–3 dot-separated numbers.
pub(crate) fn parse_version(v: &str) -> Option<(u32, u32, u32)> {
    let mut parts = v.trim().split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next().map_or(Some(0), |p| p.parse().ok())?;
    let patch = parts.next().map_or(Some(0), |p| p.parse().ok())?;
    parts.next().is_none().then_some((major, minor, patch))
}

/// ACK for `original` with a free-text error; the condition is
/// [`ErrorCondition::ApplicationInternalError`] (207). `now` goes to MSH-7,
/// `control_id` to the ACK's own MSH-10.
pub fn build_ack(
    original: &Message,
    code: AckCode,
    error: Option<&str>,
    now: &str,
    control_id: &str,
) -> String {
    let error = error.map(|text| AckError::new(ErrorCondition::ApplicationInternalError, text));
    build_ack_with(original, code, error, now, control_id)
}

/// ACK for `original` with an explicit error condition.
pub fn build_ack_with(
    original: &Message,
    code: AckCode,
    error: Option<AckError<'_>>,
    now: &str,
    control_id: &str,
) -> String {
    AckHeader::from_message(original).render(code, error, now, control_id)
}
