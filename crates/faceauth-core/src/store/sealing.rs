//! Face templates at rest. A template is special-category (biometric) data: with
//! keys configured it is sealed with XChaCha20-Poly1305 (random 192-bit nonce per
//! write) under the current key, bound to its username and model version as
//! associated data, so a row copied onto another user does not open. Each row keeps
//! the id of its key: older keys still open their rows, and `faceauth rekey`
//! re-seals every row under the current key (rotation: add the new key first,
//! rekey, then drop the old one).

use chacha20poly1305::XChaCha20Poly1305;
use chacha20poly1305::aead::{Aead, Generate, KeyInit, Payload};

/// Raw key length (256 bits).
const KEY_BYTES: usize = 32;
/// XChaCha20 nonce length, stored in front of the ciphertext.
const NONCE_BYTES: usize = 24;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("template key {0:?}: expected ID=BASE64 (32 random bytes, e.g. `head -c 32 /dev/urandom | base64`)")]
    Syntax(String),
    #[error("template key {id}: {why}")]
    Invalid { id: String, why: String },
    #[error("template key id {0} is given twice")]
    Duplicate(String),
    #[error("cannot read the template key file {path}")]
    File {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("the template was sealed with key {0}, which is not configured")]
    UnknownKey(String),
    #[error("the template does not open with key {0} (tampered, or another user's)")]
    Unsealable(String),
    #[error("encryption failed")]
    Seal,
}

/// The configured keys; the first seals, all open.
pub struct TemplateKeys {
    keys: Vec<(String, XChaCha20Poly1305)>,
}

impl std::fmt::Debug for TemplateKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key material.
        f.debug_struct("TemplateKeys").field("ids", &self.ids().collect::<Vec<_>>()).finish()
    }
}

impl TemplateKeys {
    /// Keys as `ID=BASE64` separated by commas or new lines (`#` starts a comment);
    /// the first is the current one. `None` for an empty list.
    pub fn parse(spec: &str) -> Result<Option<Self>, KeyError> {
        use base64::Engine;
        let mut keys: Vec<(String, XChaCha20Poly1305)> = Vec::new();
        for entry in spec.lines().flat_map(|l| l.split('#').next().unwrap_or("").split(',')) {
            let entry = entry.trim();
            if entry.is_empty() {
                continue;
            }
            let (id, encoded) = entry.split_once('=').ok_or_else(|| KeyError::Syntax(redact(entry)))?;
            let id = id.trim().to_string();
            if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
                return Err(KeyError::Syntax(redact(entry)));
            }
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .map_err(|e| KeyError::Invalid { id: id.clone(), why: format!("not base64: {e}") })?;
            if bytes.len() != KEY_BYTES {
                return Err(KeyError::Invalid { id, why: format!("{} bytes, expected {KEY_BYTES}", bytes.len()) });
            }
            if keys.iter().any(|(known, _)| *known == id) {
                return Err(KeyError::Duplicate(id));
            }
            let cipher = XChaCha20Poly1305::new_from_slice(&bytes)
                .map_err(|_| KeyError::Invalid { id: id.clone(), why: "unusable".into() })?;
            keys.push((id, cipher));
        }
        Ok((!keys.is_empty()).then_some(Self { keys }))
    }

    /// The id of the key that seals.
    pub fn current(&self) -> &str {
        &self.keys[0].0
    }

    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|(id, _)| id.as_str())
    }

    /// `template` sealed under the current key: nonce then ciphertext and tag.
    pub fn seal(&self, username: &str, model_version: &str, template: &[u8]) -> Result<Vec<u8>, TemplateError> {
        let (_, cipher) = &self.keys[0];
        let nonce = chacha20poly1305::XNonce::generate();
        let aad = associated_data(username, model_version);
        let sealed = cipher.encrypt(&nonce, Payload { msg: template, aad: &aad }).map_err(|_| TemplateError::Seal)?;
        let mut out = Vec::with_capacity(NONCE_BYTES + sealed.len());
        out.extend_from_slice(nonce.as_slice());
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Opens a row sealed under key `key_id`.
    pub fn open(
        &self,
        key_id: &str,
        username: &str,
        model_version: &str,
        sealed: &[u8],
    ) -> Result<Vec<u8>, TemplateError> {
        let (_, cipher) =
            self.keys.iter().find(|(id, _)| id == key_id).ok_or_else(|| TemplateError::UnknownKey(key_id.into()))?;
        let unsealable = || TemplateError::Unsealable(key_id.to_string());
        if sealed.len() < NONCE_BYTES {
            return Err(unsealable());
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_BYTES);
        let nonce = chacha20poly1305::XNonce::try_from(nonce).map_err(|_| unsealable())?;
        let aad = associated_data(username, model_version);
        cipher.decrypt(&nonce, Payload { msg: ciphertext, aad: &aad }).map_err(|_| unsealable())
    }
}

fn associated_data(username: &str, model_version: &str) -> Vec<u8> {
    [b"faceauth-template-v1\0".as_slice(), username.as_bytes(), b"\0", model_version.as_bytes()].concat()
}

/// An entry for an error message: the id, never the key.
fn redact(entry: &str) -> String {
    match entry.split_once('=') {
        Some((id, _)) => format!("{}=***", id.trim()),
        None => "***".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "k1=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const K2: &str = "k2=ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";

    #[test]
    fn seals_and_opens_bound_to_the_user_and_model() {
        let keys = TemplateKeys::parse(K1).expect("valid").expect("one key");
        let sealed = keys.seal("alice", "m1", b"template bytes").expect("seal");
        assert!(!sealed.windows(8).any(|w| w == b"template"), "the template is not stored in clear");
        assert_eq!(keys.open("k1", "alice", "m1", &sealed).expect("open"), b"template bytes");
        // Another user's row, another model, a flipped bit: refused.
        assert!(matches!(keys.open("k1", "bob", "m1", &sealed), Err(TemplateError::Unsealable(_))));
        assert!(matches!(keys.open("k1", "alice", "m2", &sealed), Err(TemplateError::Unsealable(_))));
        let mut tampered = sealed.clone();
        tampered[30] ^= 1;
        assert!(matches!(keys.open("k1", "alice", "m1", &tampered), Err(TemplateError::Unsealable(_))));
        // Two seals of one template differ (random nonces).
        assert_ne!(sealed, keys.seal("alice", "m1", b"template bytes").expect("seal"));
    }

    #[test]
    fn rotation_seals_with_the_first_key_and_opens_with_any() {
        let old = TemplateKeys::parse(K1).expect("valid").expect("key");
        let sealed_old = old.seal("alice", "m1", b"t").expect("seal");
        let rotated = TemplateKeys::parse(&format!("{K2}\n{K1}  # the old key, until `faceauth rekey`"))
            .expect("valid")
            .expect("keys");
        assert_eq!(rotated.current(), "k2");
        assert_eq!(rotated.open("k1", "alice", "m1", &sealed_old).expect("old key opens"), b"t");
        let sealed_new = rotated.seal("alice", "m1", b"t").expect("seal");
        assert!(matches!(old.open("k2", "alice", "m1", &sealed_new), Err(TemplateError::UnknownKey(_))));
    }

    #[test]
    fn bad_key_lists_are_refused_without_echoing_keys() {
        assert!(TemplateKeys::parse("  \n# nothing\n").expect("empty").is_none());
        let short = TemplateKeys::parse("k=AAEC").unwrap_err();
        assert!(short.to_string().contains("3 bytes"), "{short}");
        let syntax = TemplateKeys::parse("c2VjcmV0").unwrap_err().to_string();
        assert!(!syntax.contains("c2VjcmV0"), "{syntax}");
        assert!(matches!(TemplateKeys::parse(&format!("{K1},{K1}")), Err(KeyError::Duplicate(_))));
    }
}
