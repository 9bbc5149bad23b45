//! Webhook secrets and signatures.
//!
//! Every delivery carries two signatures of the same body: the seed's `X-EHRConnect-Signature: sha256=<hex>`
//! (HMAC-SHA256 of the body) and Standard Webhooks' `webhook-signature: v1,<base64>` (HMAC-SHA256 of
//! `{id}.{timestamp}.{body}`). The key is the base64-decoded part of a `whsec_` secret, or the secret's UTF-8
//! bytes otherwise. Keys are prepared once per subscription; signing clones the prepared HMAC state.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

pub const SECRET_PREFIX: &str = "whsec_";

/// A new secret in Standard Webhooks form: `whsec_` + base64 of 32 random bytes.
pub fn generate_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes);
    format!("{SECRET_PREFIX}{}", B64.encode(bytes))
}

/// The HMAC key a secret stands for.
pub fn key_bytes(secret: &str) -> Vec<u8> {
    match secret.strip_prefix(SECRET_PREFIX) {
        Some(encoded) => B64
            .decode(encoded)
            .unwrap_or_else(|_| secret.as_bytes().to_vec()),
        None => secret.as_bytes().to_vec(),
    }
}

/// Checks a caller-chosen secret: a `whsec_` secret must decode to 24-64 bytes, any other 16-256 characters.
pub fn validate_secret(secret: &str) -> Result<(), String> {
    match secret.strip_prefix(SECRET_PREFIX) {
        Some(encoded) => match B64.decode(encoded) {
            Ok(bytes) if (24..=64).contains(&bytes.len()) => Ok(()),
            Ok(_) => Err("a whsec_ secret must hold 24 to 64 bytes".into()),
            Err(_) => Err("a whsec_ secret must be whsec_ followed by standard base64".into()),
        },
        None if (16..=256).contains(&secret.chars().count()) => Ok(()),
        None => Err("secret must be 16 to 256 characters (or a whsec_ secret)".into()),
    }
}

/// Signs bodies with a subscription's current secret and, during a rotation, its previous one.
#[derive(Clone)]
pub struct Signer {
    current: HmacSha256,
    previous: Option<HmacSha256>,
}

fn prepared(secret: &str) -> Result<HmacSha256, InvalidKey> {
    HmacSha256::new_from_slice(&key_bytes(secret)).map_err(|_| InvalidKey)
}

/// HMAC-SHA256 takes keys of any length; this is here only because the HMAC API is fallible in general.
#[derive(Debug, thiserror::Error)]
#[error("the secret cannot be used as an HMAC key")]
pub struct InvalidKey;

impl Signer {
    pub fn new(current: &str, previous: Option<&str>) -> Result<Self, InvalidKey> {
        Ok(Signer {
            current: prepared(current)?,
            previous: previous.map(prepared).transpose()?,
        })
    }

    /// `sha256=<hex>` with the current secret (the seed's header).
    pub fn legacy(&self, body: &[u8]) -> String {
        format!("sha256={}", hex::encode(mac(&self.current, &[body])))
    }

    /// `sha256=<hex>` with the previous secret, while it still signs.
    pub fn legacy_previous(&self, body: &[u8]) -> Option<String> {
        self.previous
            .as_ref()
            .map(|key| format!("sha256={}", hex::encode(mac(key, &[body]))))
    }

    /// The `webhook-signature` value: `v1,<base64>` per active secret, separated by spaces.
    pub fn standard(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let ts = timestamp.to_string();
        let parts: [&[u8]; 5] = [id.as_bytes(), b".", ts.as_bytes(), b".", body];
        let mut out = format!("v1,{}", B64.encode(mac(&self.current, &parts)));
        if let Some(previous) = &self.previous {
            out.push_str(" v1,");
            out.push_str(&B64.encode(mac(previous, &parts)));
        }
        out
    }
}

fn mac(key: &HmacSha256, parts: &[&[u8]]) -> [u8; 32] {
    let mut m = key.clone();
    for part in parts {
        m.update(part);
    }
    m.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_are_standard_webhooks_secrets() {
        let s = generate_secret();
        assert!(s.starts_with(SECRET_PREFIX));
        assert_eq!(key_bytes(&s).len(), 32);
        assert!(validate_secret(&s).is_ok());
        assert_ne!(s, generate_secret());
    }

    #[test]
    fn secrets_are_validated() {
        assert!(validate_secret("short").is_err());
        assert!(validate_secret("a-long-enough-plain-secret").is_ok());
        assert!(validate_secret("whsec_!!!").is_err());
        assert!(validate_secret("whsec_AAAA").is_err());
    }

    #[test]
    fn signatures_match_the_published_formulas() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let signer = Signer::new("Jefe", None).expect("key");
        assert_eq!(
            signer.legacy(b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // The Standard Webhooks signature signs "{id}.{ts}.{body}" with the decoded key.
        let secret = format!("{SECRET_PREFIX}{}", B64.encode(b"Jefe"));
        let standard = Signer::new(&secret, None).expect("key").standard(
            "what do ya want",
            0,
            b"for nothing?",
        );
        let expected = {
            let mut m = HmacSha256::new_from_slice(b"Jefe").expect("key");
            m.update(b"what do ya want.0.for nothing?");
            format!("v1,{}", B64.encode(m.finalize().into_bytes()))
        };
        assert_eq!(standard, expected);
    }

    #[test]
    fn rotation_sends_both_signatures() {
        let signer =
            Signer::new("new-secret-0123456789", Some("old-secret-0123456789")).expect("key");
        let sig = signer.standard("msg", 1, b"{}");
        assert_eq!(sig.split(' ').count(), 2);
        assert!(signer.legacy_previous(b"{}").is_some());
    }
}
