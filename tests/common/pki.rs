//! Certificates for TLS tests, made on the fly with rcgen: a CA, a server certificate for
//! 127.0.0.1 and localhost (subject `CN=broker,O=Sluice`), and client certificates `CN=<name>,O=Sluice` signed by the CA.
//! Keys are ECDSA P-256 in PKCS#8 PEM, which every client of the matrix reads.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

pub struct Pki {
    dir: PathBuf,
    name: String,
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate (PEM): clients' trust store, and the broker's for client certificates.
    pub ca: PathBuf,
    /// The server's private key and certificate in one PEM file (`--ssl-keystore-location`).
    pub server: PathBuf,
}

/// One client certificate's files.
pub struct ClientCert {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Key and certificate in one file (the Java client's PEM keystore).
    pub both: PathBuf,
}

impl Pki {
    /// A CA named `name` and a server certificate it signs, written under `dir` as
    /// `<name>-ca.pem` and `<name>-server.pem`.
    pub fn new(dir: &Path, name: &str) -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        let ca_key = KeyPair::generate().unwrap();
        let ca_cert = params.self_signed(&ca_key).unwrap();
        let ca = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&ca, ca_cert.pem()).unwrap();
        let issuer = Issuer::new(params, ca_key);
        let mut server_params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
        // What the brokers of a cluster present to each other: `User:CN=broker,O=Sluice`.
        server_params.distinguished_name = rcgen::DistinguishedName::new();
        server_params
            .distinguished_name
            .push(DnType::OrganizationName, "Sluice");
        server_params
            .distinguished_name
            .push(DnType::CommonName, "broker");
        let server_key = KeyPair::generate().unwrap();
        let server_cert = server_params.signed_by(&server_key, &issuer).unwrap();
        let server = dir.join(format!("{name}-server.pem"));
        std::fs::write(
            &server,
            format!("{}{}", server_key.serialize_pem(), server_cert.pem()),
        )
        .unwrap();
        Pki {
            dir: dir.to_owned(),
            name: name.to_owned(),
            issuer,
            ca,
            server,
        }
    }

    /// A client certificate with subject `CN=<cn>,O=Sluice`, written as
    /// `<name>-client-<cn>.{crt,key,pem}`.
    pub fn client(&self, cn: &str) -> ClientCert {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new(); // rcgen starts with a CN
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Sluice");
        params.distinguished_name.push(DnType::CommonName, cn);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let files = ClientCert {
            cert: self.dir.join(format!("{}-client-{cn}.crt", self.name)),
            key: self.dir.join(format!("{}-client-{cn}.key", self.name)),
            both: self.dir.join(format!("{}-client-{cn}.pem", self.name)),
        };
        std::fs::write(&files.cert, cert.pem()).unwrap();
        std::fs::write(&files.key, key.serialize_pem()).unwrap();
        std::fs::write(
            &files.both,
            format!("{}{}", key.serialize_pem(), cert.pem()),
        )
        .unwrap();
        files
    }

    /// The server certificate as a client certificate (what a broker presents to another).
    pub fn server_as_client(&self) -> ClientCert {
        ClientCert {
            cert: self.server.clone(),
            key: self.server.clone(),
            both: self.server.clone(),
        }
    }

    /// A rustls client configuration trusting this CA, presenting `cert` if given.
    pub fn client_config(&self, cert: Option<&ClientCert>) -> Arc<rustls::ClientConfig> {
        client_config(&self.ca, cert)
    }
}

/// A rustls client configuration trusting the CA certificates in `ca`.
pub fn client_config(ca: &Path, cert: Option<&ClientCert>) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match cert {
        None => builder.with_no_client_auth(),
        Some(c) => {
            let chain = CertificateDer::pem_file_iter(&c.cert)
                .unwrap()
                .map(Result::unwrap)
                .collect();
            let key = PrivateKeyDer::from_pem_file(&c.key).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
    };
    Arc::new(config)
}
