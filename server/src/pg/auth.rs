//! Who may open a Postgres-wire connection: the `[auth]` users, checked with SCRAM-SHA-256
//! (md5 or a cleartext password only when `pg.auth_method` asks for them), TLS when
//! `[pg.tls]` is set, and the connection limit. With no users (the embedded default) anyone
//! on the loopback address may connect, as `trust` in Postgres.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use futures::Sink;
use pgwire::api::auth::cleartext::CleartextPasswordAuthStartupHandler;
use pgwire::api::auth::md5pass::{Md5PasswordAuthStartupHandler, hash_md5_password};
use pgwire::api::auth::sasl::SASLAuthStartupHandler;
use pgwire::api::auth::sasl::scram::{ScramAuth, ScramServerAuth, gen_salted_password};
use pgwire::api::auth::{
    AuthSource, LoginInfo, Password, StartupHandler, finish_authentication, protocol_negotiation,
    save_startup_parameters_to_metadata,
};
use pgwire::api::{ClientInfo, PgWireConnectionState, PidSecretKeyGenerator};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use tokio::sync::OwnedSemaphorePermit;

use super::control::{Registration, Running, Statements};
use super::settings::{self, Parameters};
use crate::config::{PgAuthMethod, PgConfig};

/// SCRAM's iteration count, Postgres' default.
const SCRAM_ITERATIONS: usize = 4096;

/// What every connection checks against: built once at start-up.
pub(crate) struct PgAuth {
    method: PgAuthMethod,
    users: HashMap<String, UserKeys>,
    /// Derives the fake salt and key an unknown user is checked against, so that a wrong
    /// user name fails exactly like a wrong password, at the same step.
    key: hmac::Key,
    /// The certificate (PEM) for SCRAM-SHA-256-PLUS channel binding, with TLS.
    tls_cert: Option<Vec<u8>>,
    tls_required: bool,
    random: SystemRandom,
    pids: Arc<dyn PidSecretKeyGenerator>,
    files: crate::config::FileAccess,
}

struct UserKeys {
    password: tarn_catalog::Secret,
    salt: Vec<u8>,
    /// SCRAM's SaltedPassword, computed once.
    salted: Vec<u8>,
}

impl Debug for PgAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgAuth")
            .field("method", &self.method)
            .field("users", &self.users.len())
            .finish_non_exhaustive()
    }
}

impl PgAuth {
    pub(crate) fn new(
        config: &PgConfig,
        auth: &crate::config::AuthConfig,
        tls_cert: Option<Vec<u8>>,
    ) -> Result<Self, String> {
        let users = &auth.users;
        let random = SystemRandom::new();
        let bytes = |n: usize| {
            let mut b = vec![0u8; n];
            random
                .fill(&mut b)
                .map(|()| b)
                .map_err(|_| "no randomness for password salts".to_owned())
        };
        let key = hmac::Key::new(hmac::HMAC_SHA256, &bytes(32)?);
        let users: HashMap<String, UserKeys> = users
            .iter()
            .map(|(name, password)| {
                let salt = bytes(16)?;
                let salted = gen_salted_password(password.expose(), &salt, SCRAM_ITERATIONS);
                Ok((
                    name.clone(),
                    UserKeys {
                        password: password.clone(),
                        salt,
                        salted,
                    },
                ))
            })
            .collect::<Result<_, String>>()?;
        let method = if config.auth_method == PgAuthMethod::Trust || users.is_empty() {
            PgAuthMethod::Trust
        } else {
            config.auth_method
        };
        Ok(Self {
            method,
            users,
            key,
            tls_cert,
            tls_required: config.tls.as_ref().is_some_and(|t| t.required),
            random,
            pids: Arc::new(pgwire::api::RandomPidSecretKeyGenerator::default()),
            files: auth.file_access(),
        })
    }

    fn fake(&self, what: &str, user: &str, len: usize) -> Vec<u8> {
        let tag = hmac::sign(&self.key, format!("{what}:{user}").as_bytes());
        tag.as_ref()[..len.min(tag.as_ref().len())].to_vec()
    }
}

/// The password pgwire checks a login against, in the form its method needs.
#[derive(Debug, Clone)]
struct Source(Arc<PgAuth>);

#[async_trait]
impl AuthSource for Source {
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        let auth = &self.0;
        let user = login.user().unwrap_or_default();
        let known = auth.users.get(user);
        Ok(match auth.method {
            PgAuthMethod::ScramSha256 | PgAuthMethod::Trust => match known {
                Some(k) => Password::new(Some(k.salt.clone()), k.salted.clone()),
                None => Password::new(
                    Some(auth.fake("salt", user, 16)),
                    auth.fake("key", user, 32),
                ),
            },
            PgAuthMethod::Md5 => {
                let mut salt = vec![0u8; 4];
                auth.random
                    .fill(&mut salt)
                    .map_err(|_| PgWireError::ApiError("no randomness for the md5 salt".into()))?;
                let expected = match known {
                    Some(k) => hash_md5_password(user, k.password.expose(), &salt),
                    // Never the hex of an md5: no client answer matches.
                    None => "unknown user".to_owned(),
                };
                Password::new(Some(salt), expected.into_bytes())
            }
            PgAuthMethod::Password => match known {
                Some(k) => Password::new(None, k.password.expose().as_bytes().to_vec()),
                None => Password::new(None, auth.fake("key", user, 32)),
            },
        })
    }
}

fn fatal(code: &str, message: impl Into<String>) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "FATAL".to_owned(),
        code.to_owned(),
        message.into(),
    )))
}

enum Login {
    /// No password (`trust`).
    Trust,
    Scram(SASLAuthStartupHandler<Parameters>),
    Md5(Md5PasswordAuthStartupHandler<Source, Parameters>),
    Password(CleartextPasswordAuthStartupHandler<Source, Parameters>),
}

/// One connection's start-up: the limit, TLS, the login, then the settings the client sent
/// and registration for `CancelRequest`.
pub(crate) struct TarnStartupHandler {
    /// Chosen when the start-up packet arrives, once it is known whether TLS is on.
    login: std::sync::OnceLock<Login>,
    auth: Arc<PgAuth>,
    /// `None`: the server was full when this connection arrived.
    permit: Option<OwnedSemaphorePermit>,
    session: Arc<tarn_sql::Session>,
    running: Arc<Running>,
    statements: Arc<Statements>,
    registration: std::sync::Mutex<Option<Registration>>,
}

impl TarnStartupHandler {
    pub(crate) fn new(
        auth: Arc<PgAuth>,
        permit: Option<OwnedSemaphorePermit>,
        session: Arc<tarn_sql::Session>,
        running: Arc<Running>,
        statements: Arc<Statements>,
    ) -> Self {
        Self {
            login: std::sync::OnceLock::new(),
            auth,
            permit,
            session,
            running,
            statements,
            registration: std::sync::Mutex::new(None),
        }
    }
}

/// How this connection logs in. SCRAM-SHA-256-PLUS (channel binding) is offered only over
/// TLS: a client must not be offered it in the clear.
fn login(auth: &Arc<PgAuth>, secure: bool) -> Login {
    let params = || Arc::new(Parameters);
    let pids = Arc::clone(&auth.pids);
    let source = Source(Arc::clone(auth));
    match auth.method {
        PgAuthMethod::Trust => Login::Trust,
        PgAuthMethod::ScramSha256 => {
            let mut scram = ScramAuth::new(Arc::new(source));
            scram.set_iterations(SCRAM_ITERATIONS);
            if secure
                && let Some(cert) = &auth.tls_cert
                && let Err(e) = scram.configure_certificate(cert)
            {
                // Checked at start-up; SCRAM without channel binding still works.
                tracing::warn!(error = %e, "SCRAM channel binding is off");
            }
            Login::Scram(
                SASLAuthStartupHandler::new(params())
                    .with_scram(scram)
                    .with_pid_secret_key_generator(pids),
            )
        }
        PgAuthMethod::Md5 => Login::Md5(
            Md5PasswordAuthStartupHandler::new(Arc::new(source), params())
                .with_pid_secret_key_generator(pids),
        ),
        PgAuthMethod::Password => Login::Password(
            CleartextPasswordAuthStartupHandler::new(source, Parameters)
                .with_pid_secret_key_generator(pids),
        ),
    }
}

#[async_trait]
impl StartupHandler for TarnStartupHandler {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let startup = matches!(message, PgWireFrontendMessage::Startup(_));
        if startup {
            if self.permit.is_none() {
                return Err(fatal("53300", "sorry, too many clients already"));
            }
            if self.auth.tls_required && !client.is_secure() {
                return Err(fatal(
                    "28000",
                    "this server accepts only TLS connections (pg.tls.required): connect with sslmode=require",
                ));
            }
        }
        // The settings a client sends at start-up (TimeZone, DateStyle, options=-c …) apply
        // as if SET, before the ParameterStatus messages report them.
        let login = self
            .login
            .get_or_init(|| login(&self.auth, client.is_secure()));
        let result = match login {
            Login::Trust => {
                if let PgWireFrontendMessage::Startup(startup) = &message {
                    protocol_negotiation(client, startup).await?;
                    save_startup_parameters_to_metadata(client, startup);
                    settings::apply_startup(&self.session, client)?;
                    let (pid, secret) = self.auth.pids.generate(client);
                    client.set_pid_and_secret_key(pid, secret);
                    finish_authentication(client, &Parameters).await?;
                }
                Ok(())
            }
            Login::Scram(h) => h.on_startup(client, message).await,
            Login::Md5(h) => h.on_startup(client, message).await,
            Login::Password(h) => h.on_startup(client, message).await,
        };
        if let Err(PgWireError::InvalidPassword(_)) = result {
            // SCRAM clients leave the name out of their messages; name the login's user.
            let user = client
                .metadata()
                .get(pgwire::api::METADATA_USER)
                .cloned()
                .unwrap_or_default();
            return Err(fatal(
                "28P01",
                format!("password authentication failed for user \"{user}\""),
            ));
        }
        result?;
        if startup && !matches!(login, Login::Trust) {
            settings::apply_startup(&self.session, client)?;
        }
        if matches!(client.state(), PgWireConnectionState::ReadyForQuery) {
            let mut registration = self
                .registration
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if registration.is_none() {
                let user = client.metadata().get(pgwire::api::METADATA_USER);
                if let Some(user) = user {
                    self.session.set_user(user);
                }
                self.session
                    .set_file_access(self.auth.files.allows(user.map(String::as_str)));
                settings::publish(&self.session, client.metadata());
                let (pid, secret) = client.pid_and_secret_key();
                *registration = Some(self.statements.register(
                    pid,
                    secret.to_bytes(),
                    Arc::clone(&self.running),
                ));
            }
        }
        Ok(())
    }
}

/// What `[pg.tls]` gives: the acceptor, and the certificate for SCRAM channel binding.
pub(crate) struct PgTls {
    pub(crate) acceptor: pgwire::tokio::TlsAcceptor,
    pub(crate) cert_pem: Vec<u8>,
}

/// Reads `[pg.tls]` now, so that a certificate or key that cannot be used stops start-up.
pub(crate) fn tls(config: &PgConfig) -> Result<Option<PgTls>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let Some(tls) = &config.tls else {
        return Ok(None);
    };
    let _already = rustls::crypto::ring::default_provider().install_default();
    let read = |path: &std::path::Path, what: &str| {
        std::fs::read(path).map_err(|e| format!("pg.tls.{what}: {}: {e}", path.display()))
    };
    let cert_pem = read(&tls.cert, "cert")?;
    let key_pem = read(&tls.key, "key")?;
    let certs = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("pg.tls.cert: {}: {e}", tls.cert.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "pg.tls.cert: {}: no PEM certificate in the file",
            tls.cert.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| format!("pg.tls.key: {}: {e}", tls.key.display()))?;
    let mut server = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("pg.tls: the certificate and key do not go together: {e}"))?;
    // Direct TLS (Postgres 17 clients, sslnegotiation=direct) needs the ALPN name.
    server.alpn_protocols = vec![b"postgresql".to_vec()];
    // Channel binding needs a certificate pgwire can read; check it now.
    ScramServerAuth::new()
        .configure_certificate(&cert_pem)
        .map_err(|e| format!("pg.tls.cert: {}: {e}", tls.cert.display()))?;
    Ok(Some(PgTls {
        acceptor: pgwire::tokio::TlsAcceptor::from(Arc::new(server)),
        cert_pem,
    }))
}
