//! Webhook signature checks: Standard Webhooks (`webhook-signature: v1,<base64>` over `id.timestamp.body`) and
//! the seed's `X-EHRConnect-Signature: sha256=<hex>` over the body. The key is the secret's bytes (a `whsec_`
//! secret is base64-decoded first).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The HMAC key of a secret.
pub fn key_of(secret: &str) -> Vec<u8> {
    match secret.strip_prefix("whsec_") {
        Some(b64) => STANDARD.decode(b64).unwrap_or_default(),
        None => secret.as_bytes().to_vec(),
    }
}

fn mac(key: &[u8]) -> Option<HmacSha256> {
    HmacSha256::new_from_slice(key).ok()
}

/// True when every signature present verifies and at least one is present.
pub fn verify_request(
    secret: &str,
    id: Option<&str>,
    timestamp: Option<&str>,
    standard: Option<&str>,
    seed: Option<&str>,
    body: &[u8],
) -> bool {
    let key = key_of(secret);
    let standard_ok = match (standard, id, timestamp) {
        (None, _, _) => None,
        (Some(sigs), Some(id), Some(ts)) => Some(verify_standard(&key, id, ts, body, sigs)),
        (Some(_), _, _) => Some(false),
    };
    let seed_ok = seed.map(|h| verify_seed(&key, body, h));
    match (standard_ok, seed_ok) {
        (None, None) => false,
        (a, b) => a.unwrap_or(true) && b.unwrap_or(true),
    }
}

/// Standard Webhooks: any `v1,` signature in the space-separated header matches.
pub fn verify_standard(key: &[u8], id: &str, timestamp: &str, body: &[u8], header: &str) -> bool {
    let Some(mut m) = mac(key) else { return false };
    m.update(id.as_bytes());
    m.update(b".");
    m.update(timestamp.as_bytes());
    m.update(b".");
    m.update(body);
    header
        .split(' ')
        .filter_map(|s| s.strip_prefix("v1,"))
        .any(|sig| {
            STANDARD
                .decode(sig)
                .is_ok_and(|given| m.clone().verify_slice(&given).is_ok())
        })
}

/// The seed's header: `sha256=` + hex HMAC of the body.
pub fn verify_seed(key: &[u8], body: &[u8], header: &str) -> bool {
    let Some(mut m) = mac(key) else { return false };
    m.update(body);
    header
        .strip_prefix("sha256=")
        .and_then(|h| hex::decode(h).ok())
        .is_some_and(|given| m.verify_slice(&given).is_ok())
}

/// Signs like a server would (for tests): the Standard Webhooks header and the seed's header.
pub fn sign(secret: &str, id: &str, timestamp: &str, body: &[u8]) -> (String, String) {
    let key = key_of(secret);
    let (Some(mut a), Some(mut b)) = (mac(&key), mac(&key)) else {
        return (String::new(), String::new());
    };
    a.update(format!("{id}.{timestamp}.").as_bytes());
    a.update(body);
    b.update(body);
    (
        format!("v1,{}", STANDARD.encode(a.finalize().into_bytes())),
        format!("sha256={}", hex::encode(b.finalize().into_bytes())),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_styles_verify_and_tampering_fails() {
        let secret = "load-suite-secret-0123456789";
        let body = br#"{"id":"e1"}"#;
        let (standard, seed) = sign(secret, "e1", "1700000000", body);
        let ok = |std: Option<&str>, seed: Option<&str>, body: &[u8]| {
            verify_request(secret, Some("e1"), Some("1700000000"), std, seed, body)
        };
        assert!(ok(Some(&standard), Some(&seed), body));
        assert!(ok(None, Some(&seed), body));
        assert!(ok(Some(&format!("v1,AAAA {standard}")), None, body));
        assert!(!ok(Some(&standard), Some(&seed), b"{}"));
        assert!(!ok(None, None, body));
        assert!(!verify_request(
            secret,
            Some("e2"),
            Some("1700000000"),
            Some(&standard),
            None,
            body
        ));
    }
}
