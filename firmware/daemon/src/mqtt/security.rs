//! Secrets and TLS for the broker connection: the `[mqtt] tls` table, the password file, and
//! the checks that keep both from leaking (permissions, never logged).
//!
//! TLS is rustls with the *ring* provider, chosen explicitly for this connection rather than
//! installed process-wide, so nothing else in the process is affected and the aarch64 cross
//! build needs no CMake (aws-lc's build would).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The `[mqtt] tls` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file of the CA certificate(s) the broker's certificate must chain to.
    pub ca: PathBuf,
    /// PEM client certificate (chain), for brokers that require one (`require_certificate`).
    #[serde(default)]
    pub cert: Option<PathBuf>,
    /// PEM private key of `cert`. A secret: it must not be readable by other users.
    #[serde(default)]
    pub key: Option<PathBuf>,
}

#[derive(Debug, Error)]
pub enum SecretError {
    #[error("{what} {path}: cannot read: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{what} {path} is readable or writable by every user (mode {mode:o}); it holds a secret: \
         `chown root:vigil {path}; chmod 640 {path}`"
    )]
    Exposed {
        what: &'static str,
        path: PathBuf,
        mode: u32,
    },
    #[error("{what} {path} is empty")]
    Empty { what: &'static str, path: PathBuf },
    #[error("{what} {path}: {problem}")]
    Invalid {
        what: &'static str,
        path: PathBuf,
        problem: String,
    },
    #[error(
        "mqtt.tls: `cert` and `key` go together (mutual TLS needs both, server-only TLS neither)"
    )]
    HalfClientAuth,
}

/// Refuses a secret file that other users can read or write; the owner and group (the service
/// user's) may.
pub fn check_private(what: &'static str, path: &Path) -> Result<(), SecretError> {
    let meta = fs::metadata(path).map_err(|source| SecretError::Read {
        what,
        path: path.to_owned(),
        source,
    })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o007 != 0 {
            return Err(SecretError::Exposed {
                what,
                path: path.to_owned(),
                mode,
            });
        }
    }
    #[cfg(not(unix))]
    let _ = meta;
    Ok(())
}

/// Reads a password file (its first line; a trailing newline is not part of the password).
pub fn read_password(path: &Path) -> Result<String, SecretError> {
    const WHAT: &str = "mqtt.password_file";
    check_private(WHAT, path)?;
    let text = fs::read_to_string(path).map_err(|source| SecretError::Read {
        what: WHAT,
        path: path.to_owned(),
        source,
    })?;
    let pw = text.lines().next().unwrap_or("").to_owned();
    if pw.is_empty() {
        return Err(SecretError::Empty {
            what: WHAT,
            path: path.to_owned(),
        });
    }
    Ok(pw)
}

fn invalid(what: &'static str, path: &Path, problem: impl ToString) -> SecretError {
    SecretError::Invalid {
        what,
        path: path.to_owned(),
        problem: problem.to_string(),
    }
}

fn read_certs(
    what: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, SecretError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| invalid(what, path, format!("not a PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(invalid(what, path, "holds no PEM certificate"));
    }
    Ok(certs)
}

impl TlsConfig {
    /// Checks the files (present, parseable, the key private) and builds the rustls client
    /// configuration.
    pub fn client_config(&self) -> Result<Arc<ClientConfig>, SecretError> {
        let mut roots = RootCertStore::empty();
        for cert in read_certs("mqtt.tls.ca", &self.ca)? {
            roots
                .add(cert)
                .map_err(|e| invalid("mqtt.tls.ca", &self.ca, e))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid("mqtt.tls.ca", &self.ca, e))?
            .with_root_certificates(roots);
        let config = match (&self.cert, &self.key) {
            (None, None) => builder.with_no_client_auth(),
            (Some(cert), Some(key)) => {
                let chain = read_certs("mqtt.tls.cert", cert)?;
                check_private("mqtt.tls.key", key)?;
                let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| {
                    invalid("mqtt.tls.key", key, format!("not a PEM private key: {e}"))
                })?;
                builder.with_client_auth_cert(chain, key_der).map_err(|e| {
                    invalid(
                        "mqtt.tls.key",
                        key,
                        format!("does not fit mqtt.tls.cert: {e}"),
                    )
                })?
            }
            _ => return Err(SecretError::HalfClientAuth),
        };
        Ok(Arc::new(config))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn write(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
        let p = dir.join(name);
        fs::write(&p, text).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    #[test]
    fn password_files_must_be_private_and_not_empty() {
        let d = tempfile::tempdir().unwrap();
        let ok = write(d.path(), "pw", "s3cret\n", 0o640);
        assert_eq!(read_password(&ok).unwrap(), "s3cret");
        let open = write(d.path(), "pw2", "s3cret\n", 0o644);
        let e = read_password(&open).unwrap_err().to_string();
        assert!(
            e.contains("pw2") && e.contains("644") && e.contains("chmod 640"),
            "{e}"
        );
        assert!(!e.contains("s3cret"), "{e}");
        let empty = write(d.path(), "pw3", "\n", 0o600);
        assert!(matches!(
            read_password(&empty),
            Err(SecretError::Empty { .. })
        ));
        let missing = d.path().join("nope");
        let e = read_password(&missing).unwrap_err().to_string();
        assert!(e.contains("nope"), "{e}");
    }

    #[test]
    fn bad_tls_files_are_named() {
        let d = tempfile::tempdir().unwrap();
        let junk = write(d.path(), "ca.pem", "not a certificate", 0o644);
        let tls = TlsConfig {
            ca: junk,
            cert: None,
            key: None,
        };
        let e = tls.client_config().unwrap_err().to_string();
        assert!(e.contains("mqtt.tls.ca") && e.contains("ca.pem"), "{e}");
        let half = TlsConfig {
            ca: d.path().join("ca.pem"),
            cert: Some(d.path().join("c.pem")),
            key: None,
        };
        // The CA is checked first; with a missing CA the error names it.
        let e = TlsConfig {
            ca: d.path().join("missing.pem"),
            ..half.clone()
        }
        .client_config()
        .unwrap_err()
        .to_string();
        assert!(e.contains("missing.pem"), "{e}");
    }
}
