//! TLS for SIP (RFC 3261 §26.2): the certificates and rustls settings of
//! the TLS transport. The transport itself is the stream transport of
//! [`super::tcp`] — same framing, same connection table, same limits —
//! with a handshake after `accept`/`connect`.
//!
//! * [`ServerIdentity`]: the listener's certificate chain and key from PEM
//!   files, optionally requiring a client certificate signed by a CA file;
//!   [`ServerIdentity::replace`] swaps it atomically (certificate renewal
//!   on SIGHUP): handshakes after the swap use the new one, connections up
//!   keep theirs. A client from a trunk's networks may get the trunk's
//!   own config instead ([`ServerConfigs`]): a certificate from the
//!   trunk's CA required.
//! * [`client_config`]: outbound TLS, server certificates verified against
//!   a CA file. The server name checked is the peer's IP address unless the
//!   owner named the peer ([`super::TcpTransport::set_server_name`]).
//!
//! rustls with the `ring` provider: a well-kept pure-Rust-API TLS stack
//! (TLS 1.2 and 1.3 only), no OpenSSL.

use std::fs;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, RwLock};

use ipnet::IpNet;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::error::{Error, Result};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    // Deprecated in rustls for lacking post-quantum key exchange
    // (X25519MLKEM768, only in the aws-lc-rs provider, whose C build we
    // avoid for now); the classical suites it offers are sound.
    #[allow(deprecated)]
    Arc::new(rustls::crypto::ring::default_provider())
}

fn tls_error(what: String, e: impl std::fmt::Display) -> Error {
    Error::io(what, std::io::Error::other(e.to_string()))
}

fn read_certs(file: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let what = || format!("TLS certificates in {}", file.display());
    // Read first so that a missing file says so, not "no certificates".
    let pem = fs::read(file).map_err(|e| Error::io(what(), e))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| tls_error(what(), e))?;
    if certs.is_empty() {
        return Err(tls_error(what(), "no CERTIFICATE in the file"));
    }
    Ok(certs)
}

fn read_roots(file: &Path) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(file)? {
        roots
            .add(cert)
            .map_err(|e| tls_error(format!("TLS CA in {}", file.display()), e))?;
    }
    Ok(roots)
}

/// A rustls server config from PEM files: `cert_file` holds the chain
/// (leaf first), `key_file` the private key (PKCS#8, PKCS#1 or SEC1).
/// With `client_ca_file`, a client must present a certificate signed by
/// one of its CAs (mutual TLS), or the handshake fails.
pub fn server_config(
    cert_file: &Path,
    key_file: &Path,
    client_ca_file: Option<&Path>,
) -> Result<Arc<ServerConfig>> {
    let certs = read_certs(cert_file)?;
    let key_what = || format!("TLS key in {}", key_file.display());
    let pem = fs::read(key_file).map_err(|e| Error::io(key_what(), e))?;
    let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| tls_error(key_what(), e))?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error("TLS protocol versions".into(), e))?;
    let builder = match client_ca_file {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(read_roots(ca)?), provider())
                    .build()
                    .map_err(|e| tls_error(format!("TLS client CA {}", ca.display()), e))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder.with_single_cert(certs, key).map_err(|e| {
        tls_error(
            format!("TLS certificate {} and key", cert_file.display()),
            e,
        )
    })?;
    Ok(Arc::new(config))
}

/// A rustls client config verifying servers against the CAs in `ca_file`.
pub fn client_config(ca_file: &Path) -> Result<Arc<ClientConfig>> {
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error("TLS protocol versions".into(), e))?
        .with_root_certificates(read_roots(ca_file)?)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The listener's server configs: a client connecting from a network of
/// one of `by_network` gets that entry's config (a trunk's, requiring a
/// certificate from the trunk's own CA), any other client the default.
/// The peer address is known at accept, before the handshake, so the
/// check is rustls' own and a refused client never gets a session.
#[derive(Debug, Clone)]
pub struct ServerConfigs {
    pub default: Arc<ServerConfig>,
    /// In order; the first entry whose networks hold the peer wins.
    pub by_network: Vec<(Vec<IpNet>, Arc<ServerConfig>)>,
}

impl ServerConfigs {
    /// The config a client from `peer` handshakes with.
    pub fn for_peer(&self, peer: IpAddr) -> Arc<ServerConfig> {
        self.by_network
            .iter()
            .find(|(nets, _)| nets.iter().any(|n| n.contains(&peer)))
            .map_or_else(|| self.default.clone(), |(_, c)| c.clone())
    }
}

impl From<Arc<ServerConfig>> for ServerConfigs {
    fn from(default: Arc<ServerConfig>) -> Self {
        ServerConfigs {
            default,
            by_network: Vec::new(),
        }
    }
}

/// The listener's current server configs, replaceable while it runs.
/// Cheap to clone; clones share the configs.
#[derive(Debug, Clone)]
pub struct ServerIdentity(Arc<RwLock<Arc<ServerConfigs>>>);

impl ServerIdentity {
    pub fn new(configs: impl Into<ServerConfigs>) -> Self {
        ServerIdentity(Arc::new(RwLock::new(Arc::new(configs.into()))))
    }

    fn configs(&self) -> Arc<ServerConfigs> {
        // The lock only guards an Arc swap; a poisoned one still holds
        // complete configs.
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The default config new handshakes use.
    pub fn current(&self) -> Arc<ServerConfig> {
        self.configs().default.clone()
    }

    /// The config a new handshake from `peer` uses.
    pub fn current_for(&self, peer: IpAddr) -> Arc<ServerConfig> {
        self.configs().for_peer(peer)
    }

    /// Handshakes from now on use `configs`.
    pub fn replace(&self, configs: impl Into<ServerConfigs>) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(configs.into());
    }
}

/// TLS settings of a [`super::Transports`].
#[derive(Debug, Clone)]
pub struct TlsConfig {
    /// The TLS listener's port on the endpoint's IP (RFC 3261: 5061); 0:
    /// an ephemeral port.
    pub port: u16,
    /// The listener's certificate; `None`: no listener, outbound only.
    pub server: Option<ServerIdentity>,
    /// Outbound TLS; `None`: sending over TLS to an address without an
    /// open connection fails.
    pub client: Option<Arc<ClientConfig>>,
}

#[cfg(test)]
mod tests;
