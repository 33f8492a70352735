//! TLS to the members: `--cacert`, `--cert`, `--key`.

use std::path::PathBuf;

/// TLS files, as PEM. Without `cacert`, https endpoints are checked against the Mozilla roots.
#[derive(Debug, Clone, Default)]
pub struct Tls {
    pub cacert: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// Reads `--cacert`/`--cert`/`--key` into ureq's TLS config.
pub(super) fn tls_config(tls: &Tls) -> Result<ureq::tls::TlsConfig, String> {
    use ureq::tls::{Certificate, ClientCert, PemItem, PrivateKey, RootCerts, TlsConfig};
    let read =
        |p: &PathBuf| std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()));
    let certs = |p: &PathBuf| -> Result<Vec<Certificate<'static>>, String> {
        let pem = read(p)?;
        let mut v = Vec::new();
        for item in ureq::tls::parse_pem(&pem) {
            // Keys and other items in the file are not certificates: skipped.
            if let PemItem::Certificate(c) = item.map_err(|e| format!("{}: {e}", p.display()))? {
                v.push(c);
            }
        }
        if v.is_empty() {
            return Err(format!("{}: no PEM certificate in it", p.display()));
        }
        Ok(v)
    };
    let mut b = TlsConfig::builder();
    if let Some(ca) = &tls.cacert {
        b = b.root_certs(RootCerts::new_with_certs(&certs(ca)?));
    }
    match (&tls.cert, &tls.key) {
        (Some(cert), Some(key)) => {
            let k = PrivateKey::from_pem(&read(key)?)
                .map_err(|e| format!("{}: no usable PEM private key ({e})", key.display()))?;
            b = b.client_cert(Some(ClientCert::new_with_certs(&certs(cert)?, k)));
        }
        (None, None) => {}
        _ => return Err("--cert and --key go together".into()),
    }
    Ok(b.build())
}
