//! Test certificates, made at test time (no private key is ever committed):
//! a CA and the certificates it signs, written as PEM files.

use std::path::Path;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

/// A self-signed CA.
pub struct TestCa {
    name: String,
    key: KeyPair,
    cert: rcgen::Certificate,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let key = KeyPair::generate().expect("generate a CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).expect("self-sign the CA");
        TestCa {
            name: name.into(),
            key,
            cert,
        }
    }

    /// The CA certificate, PEM.
    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    /// The CA certificate, DER (for a rustls root store).
    pub fn der(&self) -> &[u8] {
        self.cert.der()
    }

    /// Writes a certificate for `names` (DNS names or IP addresses, as
    /// subject alternative names) signed by this CA to `cert_file`, and
    /// its key to `key_file`.
    pub fn issue(&self, names: &[&str], cert_file: &Path, key_file: &Path) {
        let key = KeyPair::generate().expect("generate a key");
        let names = names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        let mut params = CertificateParams::new(names).expect("certificate parameters");
        params
            .distinguished_name
            .push(DnType::CommonName, format!("issued by {}", self.name));
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("sign the certificate");
        std::fs::write(cert_file, cert.pem()).expect("write the certificate");
        std::fs::write(key_file, key.serialize_pem()).expect("write the key");
    }
}
