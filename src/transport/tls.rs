//! TLS for the relay (self-signed on first start, or a CA-issued chain) and for
//! clients (pin the relay's SHA-256 fingerprint, or trust the system CAs).

use std::{path::Path, sync::Arc};

use rustls::{
    DigitallySignedStruct, SignatureScheme,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::CryptoProvider,
    pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime},
};
use sha2::{Digest, Sha256};

use super::TransportError;

/// A certificate chain and its key, ready for rustls.
pub struct Identity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl Identity {
    /// SHA-256 of the leaf certificate, as clients pin it.
    pub fn fingerprint(&self) -> String {
        fingerprint_hex(&self.chain[0])
    }

    /// Load `cert.pem`/`key.pem` from `dir`, generating a self-signed pair for
    /// `names` on first start.
    pub fn load_or_generate(dir: &Path, names: &[String]) -> Result<Self, TransportError> {
        let cert_path = dir.join("cert.pem");
        let key_path = dir.join("key.pem");
        if !cert_path.exists() {
            let cert = rcgen::generate_simple_self_signed(names.to_vec())
                .map_err(|e| TransportError::Tls(format!("cannot generate a certificate: {e}")))?;
            crate::state::write_private(&key_path, cert.key_pair.serialize_pem().as_bytes())?;
            crate::state::write_private(&cert_path, cert.cert.pem().as_bytes())?;
        }
        Self::load(&cert_path, &key_path)
    }

    /// Load a PEM chain and key.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Self, TransportError> {
        use rustls::pki_types::pem::PemObject;
        let chain = CertificateDer::pem_file_iter(cert_path)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| {
                TransportError::Tls(format!("cannot read {}: {e}", cert_path.display()))
            })?;
        if chain.is_empty() {
            return Err(TransportError::Tls(format!(
                "{} holds no certificate",
                cert_path.display()
            )));
        }
        let key = PrivateKeyDer::from_pem_file(key_path)
            .map_err(|e| TransportError::Tls(format!("cannot read {}: {e}", key_path.display())))?;
        Ok(Self { chain, key })
    }
}

pub fn fingerprint_hex(cert: &CertificateDer<'_>) -> String {
    Sha256::digest(cert.as_ref())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// How a client decides to trust the relay.
#[derive(Clone, Debug)]
pub enum Trust {
    /// Only a certificate with this SHA-256 (self-signed relays).
    Pinned([u8; 32]),
    /// Certificates that chain to the system's CAs, for the relay's name.
    SystemRoots,
}

pub fn client_config(
    trust: &Trust,
    alpns: &[&str],
) -> Result<rustls::ClientConfig, TransportError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TransportError::Tls(e.to_string()))?;
    let mut config = match trust {
        Trust::Pinned(fingerprint) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedVerifier {
                fingerprint: *fingerprint,
                provider: provider(),
            }))
            .with_no_client_auth(),
        Trust::SystemRoots => {
            let mut roots = rustls::RootCertStore::empty();
            let loaded = rustls_native_certs::load_native_certs();
            for cert in loaded.certs {
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                return Err(TransportError::Tls(
                    "no system CA certificates found; pin the relay with link.fingerprint".into(),
                ));
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
    };
    config.alpn_protocols = alpns.iter().map(|a| a.as_bytes().to_vec()).collect();
    Ok(config)
}

pub fn server_config(
    identity: Identity,
    alpns: &[&str],
) -> Result<rustls::ServerConfig, TransportError> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TransportError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(identity.chain, identity.key)
        .map_err(|e| TransportError::Tls(format!("certificate and key do not fit: {e}")))?;
    config.alpn_protocols = alpns.iter().map(|a| a.as_bytes().to_vec()).collect();
    Ok(config)
}

/// Accepts exactly one certificate, by its SHA-256; still checks the handshake signature.
#[derive(Debug)]
struct PinnedVerifier {
    fingerprint: [u8; 32],
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let seen: [u8; 32] = Sha256::digest(end_entity.as_ref()).into();
        if seen == self.fingerprint {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "relay certificate fingerprint {} does not match the pinned one",
                fingerprint_hex(end_entity)
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
