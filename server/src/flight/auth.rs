//! Flight authentication: the handshake turns basic credentials into a bearer token, and every
//! other call must carry one (or the basic credentials themselves).
//!
//! Tokens are signed, not stored: `base64(user:expiry).base64(hmac)`, under a key made at
//! start-up. Handshakes cost no server memory, and a restart ends every session.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::alphabet;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use tonic::Status;
use tonic::metadata::MetadataMap;

/// Who made a call; `None` when no users are configured.
#[derive(Debug, Clone, Default)]
pub(crate) struct Caller {
    pub(crate) user: Option<String>,
}

/// The configured users and the token key; `None` users: authentication is off.
pub(crate) struct Auth {
    key: hmac::Key,
    /// User → the HMAC of their password under `key`: compared in constant time.
    users: Option<BTreeMap<String, hmac::Tag>>,
    /// Compared against for names that are not users.
    unknown_user: hmac::Tag,
    ttl: Duration,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("enabled", &self.users.is_some())
            .finish_non_exhaustive()
    }
}

impl Auth {
    pub(crate) fn new(
        users: &BTreeMap<String, tarn_catalog::Secret>,
        ttl: Duration,
    ) -> Result<Self, String> {
        let mut secret = [0u8; 32];
        SystemRandom::new()
            .fill(&mut secret)
            .map_err(|_| "no randomness for the token key".to_owned())?;
        let key = hmac::Key::new(hmac::HMAC_SHA256, &secret);
        let users = (!users.is_empty()).then(|| {
            users
                .iter()
                .map(|(name, password)| {
                    (name.clone(), hmac::sign(&key, password.expose().as_bytes()))
                })
                .collect()
        });
        let unknown_user = hmac::sign(&key, &secret);
        Ok(Self {
            key,
            users,
            unknown_user,
            ttl,
        })
    }

    pub(crate) fn enabled(&self) -> bool {
        self.users.is_some()
    }

    /// Checks a user name and password.
    pub(crate) fn check_password(&self, user: &str, password: &str) -> Result<Caller, Status> {
        let Some(users) = &self.users else {
            return Ok(Caller::default());
        };
        // An unknown user costs the same HMAC as a known one: timing does not tell them apart.
        let tag = users.get(user).unwrap_or(&self.unknown_user);
        let matches = hmac::verify(&self.key, password.as_bytes(), tag.as_ref()).is_ok();
        let known = matches && users.contains_key(user);
        if !known {
            return Err(Status::unauthenticated("invalid user name or password"));
        }
        Ok(Caller {
            user: Some(user.to_owned()),
        })
    }

    /// A bearer token for `caller`, valid for the configured time.
    pub(crate) fn issue(&self, caller: &Caller) -> String {
        let expiry = SystemTime::now()
            .checked_add(self.ttl)
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs());
        let payload = format!("{}:{expiry}", caller.user.as_deref().unwrap_or(""));
        let signature = hmac::sign(&self.key, payload.as_bytes());
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(payload),
            URL_SAFE_NO_PAD.encode(signature.as_ref())
        )
    }

    fn check_token(&self, token: &str) -> Result<Caller, Status> {
        let invalid =
            || Status::unauthenticated("invalid or expired bearer token; handshake again");
        let (payload, signature) = token.split_once('.').ok_or_else(invalid)?;
        let payload = URL_SAFE_NO_PAD.decode(payload).map_err(|_| invalid())?;
        let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| invalid())?;
        hmac::verify(&self.key, &payload, &signature).map_err(|_| invalid())?;
        let payload = String::from_utf8(payload).map_err(|_| invalid())?;
        let (user, expiry) = payload.rsplit_once(':').ok_or_else(invalid)?;
        let expiry: u64 = expiry.parse().map_err(|_| invalid())?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if expiry <= now {
            return Err(invalid());
        }
        match &self.users {
            // A user removed from the configuration (at a restart the key changes anyway).
            Some(users) if !users.contains_key(user) => Err(invalid()),
            Some(_) => Ok(Caller {
                user: Some(user.to_owned()),
            }),
            None => Ok(Caller::default()),
        }
    }

    /// Who is calling, from the `authorization` header: `Bearer <token>` or
    /// `Basic <base64(user:password)>`. With authentication off, anyone.
    pub(crate) fn authenticate(&self, metadata: &MetadataMap) -> Result<Caller, Status> {
        if !self.enabled() {
            return Ok(Caller::default());
        }
        let header = metadata
            .get("authorization")
            .ok_or_else(|| {
                Status::unauthenticated(
                    "this server requires authentication: handshake with a user name and password",
                )
            })?
            .to_str()
            .map_err(|_| Status::unauthenticated("the authorization header is not text"))?;
        if let Some(token) = strip_scheme(header, "bearer") {
            return self.check_token(token.trim());
        }
        if let Some((user, password)) = basic_credentials(header) {
            return self.check_password(&user, &password);
        }
        Err(Status::unauthenticated(
            "the authorization header is neither Bearer nor Basic",
        ))
    }
}

fn strip_scheme<'a>(header: &'a str, scheme: &str) -> Option<&'a str> {
    let (given, rest) = header.split_once(' ')?;
    given.eq_ignore_ascii_case(scheme).then_some(rest)
}

/// The user and password of a `Basic` authorization header.
pub(crate) fn basic_credentials(header: &str) -> Option<(String, String)> {
    let encoded = strip_scheme(header, "basic")?;
    // Go's ADBC driver leaves out the `=` padding.
    let lenient = GeneralPurpose::new(
        &alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let decoded = lenient.decode(encoded.trim()).ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};

    use super::*;

    #[test]
    fn basic_credentials_with_or_without_padding() {
        for engine in [STANDARD, STANDARD_NO_PAD] {
            let header = format!("Basic {}", engine.encode("bob:hunter2"));
            assert_eq!(
                basic_credentials(&header),
                Some(("bob".to_owned(), "hunter2".to_owned()))
            );
        }
    }

    fn auth() -> Auth {
        let users = BTreeMap::from([("alice".to_owned(), tarn_catalog::Secret::new("s3cret"))]);
        Auth::new(&users, Duration::from_secs(60)).expect("auth")
    }

    fn with_header(value: &str) -> MetadataMap {
        let mut m = MetadataMap::new();
        m.insert("authorization", value.parse().expect("header"));
        m
    }

    #[test]
    fn tokens_round_trip_and_reject_tampering() {
        let auth = auth();
        let caller = auth.check_password("alice", "s3cret").expect("password");
        let token = auth.issue(&caller);
        let who = auth
            .authenticate(&with_header(&format!("Bearer {token}")))
            .expect("token");
        assert_eq!(who.user.as_deref(), Some("alice"));
        let forged = format!("{}x", token);
        assert!(
            auth.authenticate(&with_header(&format!("Bearer {forged}")))
                .is_err()
        );
        // Another server's key does not verify this one's tokens.
        assert!(
            super::tests::auth()
                .authenticate(&with_header(&format!("Bearer {token}")))
                .is_err()
        );
    }

    #[test]
    fn changed_payloads_and_expired_tokens_are_refused() {
        let auth = auth();
        let token = auth.issue(&auth.check_password("alice", "s3cret").expect("password"));
        let (_, signature) = token.split_once('.').expect("two parts");
        let forged_payload = URL_SAFE_NO_PAD.encode("alice:99999999999");
        let forged = format!("{forged_payload}.{signature}");
        assert!(
            auth.authenticate(&with_header(&format!("Bearer {forged}")))
                .is_err()
        );

        let users = BTreeMap::from([("alice".to_owned(), tarn_catalog::Secret::new("s3cret"))]);
        let expiring = Auth::new(&users, Duration::ZERO).expect("auth");
        let token = expiring.issue(
            &expiring
                .check_password("alice", "s3cret")
                .expect("password"),
        );
        let err = expiring
            .authenticate(&with_header(&format!("Bearer {token}")))
            .expect_err("expired");
        assert!(err.message().contains("expired"), "{err}");
    }

    #[test]
    fn wrong_or_missing_credentials_are_unauthenticated() {
        let auth = auth();
        for header in [
            format!("Basic {}", STANDARD.encode("alice:wrong")),
            format!("Basic {}", STANDARD.encode("bob:s3cret")),
            "Digest abc".to_owned(),
        ] {
            let err = auth.authenticate(&with_header(&header)).expect_err(&header);
            assert_eq!(err.code(), tonic::Code::Unauthenticated);
        }
        let err = auth.authenticate(&MetadataMap::new()).expect_err("none");
        assert_eq!(err.code(), tonic::Code::Unauthenticated);
        let ok = auth
            .authenticate(&with_header(&format!(
                "Basic {}",
                STANDARD.encode("alice:s3cret")
            )))
            .expect("basic");
        assert_eq!(ok.user.as_deref(), Some("alice"));
    }
}
