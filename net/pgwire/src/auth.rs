//! Password authentication of the listener: SCRAM-SHA-256 against one password.
//!
//! The password is turned into a PostgreSQL-style SCRAM verifier (random salt, 4096
//! iterations) once, when the listener starts; only the verifier is kept, and each connection
//! runs pgwire's SCRAM state machine against it. Any user name is accepted with the password.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use pgwire::api::auth::mechanism::{AuthMechanism, AuthMechanismFactory};
use pgwire::api::auth::sasl::scram::{
    SCRAM_ITERATIONS, ScramAuth, ScramSecret, gen_salted_password, random_nonce,
};
use pgwire::api::auth::{AuthSource, LoginInfo, Password};
use pgwire::error::{PgWireError, PgWireResult};

/// The password psql clients must present; its `Debug` form never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct PgPassword(String);

impl PgPassword {
    /// A password from its text.
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }
}

impl fmt::Debug for PgPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PgPassword(<redacted>)")
    }
}

/// The SCRAM verifier of the configured password: salt, iterations, stored and server key.
struct Verifier {
    salt: Vec<u8>,
    iterations: usize,
    stored_key: Vec<u8>,
    server_key: Vec<u8>,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl AuthSource for Verifier {
    async fn get_password(&self, _login: &LoginInfo) -> PgWireResult<Password> {
        // Only the SCRAM exchange below is offered; the password itself is not kept.
        Err(PgWireError::UnsupportedSASLAuthMethod(
            "password exchange other than SCRAM-SHA-256".to_owned(),
        ))
    }

    async fn get_scram_secret(
        &self,
        _login: &LoginInfo,
    ) -> PgWireResult<(ScramSecret, Option<()>)> {
        Ok((
            ScramSecret::Verifier {
                salt: self.salt.clone(),
                iterations: self.iterations,
                stored_key: self.stored_key.clone(),
                server_key: self.server_key.clone(),
            },
            None,
        ))
    }
}

/// SCRAM-SHA-256 for every connection of one listener.
#[derive(Debug, Clone)]
pub(crate) struct Scram {
    auth: Arc<ScramAuth>,
}

impl Scram {
    /// Derives the verifier of `password` (with a fresh random salt).
    pub(crate) fn new(password: &PgPassword) -> Self {
        let salt = random_nonce().into_bytes();
        let salted = gen_salted_password(&password.0, &salt, SCRAM_ITERATIONS);
        let verifier = match ScramSecret::verifier_from_salted_password(
            salt.clone(),
            salted,
            SCRAM_ITERATIONS,
        ) {
            ScramSecret::Verifier {
                salt,
                iterations,
                stored_key,
                server_key,
            } => Verifier {
                salt,
                iterations,
                stored_key,
                server_key,
            },
            // `verifier_from_salted_password` always answers a verifier; were it not to, an
            // empty stored key matches no proof and every login fails (closed, not open).
            ScramSecret::SaltedPassword { .. } => Verifier {
                salt,
                iterations: SCRAM_ITERATIONS,
                stored_key: Vec::new(),
                server_key: Vec::new(),
            },
        };
        let mut auth = ScramAuth::new(Arc::new(verifier));
        auth.set_iterations(SCRAM_ITERATIONS);
        Self {
            auth: Arc::new(auth),
        }
    }

    /// A fresh SCRAM state machine for one connection.
    pub(crate) fn mechanism(&self) -> Box<dyn AuthMechanism> {
        self.auth.create()
    }
}
