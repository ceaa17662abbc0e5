//! Checking `[tls]`: the certificate and key files (read and checked now, so a reload takes up
//! renewed ones), the oldest version accepted, ALPN, and more certificates by SNI name.

use std::ops::Range;
use std::path::Path;

use ringstream_engine::config::{CertError, CertPair, TlsConfig, TlsVersion};
use toml::Spanned;

use super::checker::Checker;
use super::error::ConfigError;
use super::raw::RawTls;

/// The only protocol ringstream speaks over TLS.
const HTTP1: &str = "http/1.1";

impl Checker<'_, '_> {
    /// The `[tls]` table, if there is one.
    pub(super) fn tls(
        &self,
        raw: Option<&Spanned<RawTls>>,
    ) -> Result<Option<TlsConfig>, ConfigError> {
        let Some(table) = raw else {
            return Ok(None);
        };
        let tls = table.get_ref();
        let default = self.cert_pair(tls.cert.as_ref(), tls.key.as_ref(), table.span(), "tls")?;
        let min = match tls.min_version.as_ref() {
            None => TlsVersion::Tls12,
            Some(value) => match value.get_ref().as_str() {
                "1.2" => TlsVersion::Tls12,
                "1.3" => TlsVersion::Tls13,
                _ => return Err(self.one_of(value, "tls.min_version", &["1.2", "1.3"])),
            },
        };
        let alpn = match &tls.alpn {
            None => vec![HTTP1.to_owned()],
            Some(list) => {
                if let Some(other) = list.get_ref().iter().find(|p| p.get_ref() != HTTP1) {
                    return Err(self.source.error_at(
                        other.span(),
                        "tls.alpn",
                        format!(
                            "{}: ringstream speaks HTTP/1.1 over TLS; alpn may list \"{HTTP1}\" \
                             or nothing",
                            self.source.written(other.span())
                        ),
                    ));
                }
                list.get_ref()
                    .iter()
                    .take(1)
                    .map(|p| p.get_ref().clone())
                    .collect()
            }
        };
        let mut by_name: Vec<(String, CertPair)> = Vec::new();
        for (index, entry) in tls.sni.iter().enumerate() {
            let key = format!("tls.sni[{index}]");
            let sni = entry.get_ref();
            let Some(name) = &sni.name else {
                return Err(self.source.error_at(
                    entry.span(),
                    &format!("{key}.name"),
                    "each [[tls.sni]] needs name = \"host.example.com\" (the name clients ask \
                     for), cert and key"
                        .to_owned(),
                ));
            };
            let lower = name.get_ref().to_ascii_lowercase();
            if by_name.iter().any(|(earlier, _)| *earlier == lower) {
                return Err(self.source.error_at(
                    name.span(),
                    &format!("{key}.name"),
                    format!(
                        "{} has a certificate already",
                        self.source.written(name.span())
                    ),
                ));
            }
            let pair = self.cert_pair(sni.cert.as_ref(), sni.key.as_ref(), entry.span(), &key)?;
            if let Err(CertError::Cert(why) | CertError::Key(why)) = pair.check_name(&lower) {
                let (span, path) = sni
                    .cert
                    .as_ref()
                    .map_or((entry.span(), ""), |c| (c.span(), c.get_ref().as_str()));
                return Err(self.source.error_at(
                    span,
                    &format!("{key}.cert"),
                    format!("{path:?} {why}"),
                ));
            }
            by_name.push((lower, pair));
        }
        let config = TlsConfig::new(default, by_name, min, alpn)
            .map_err(|why| self.source.error_at(table.span(), "tls", why))?;
        Ok(Some(config))
    }

    /// The pair of `table`'s `cert` and `key` (both required), read and checked.
    fn cert_pair(
        &self,
        cert: Option<&Spanned<String>>,
        key: Option<&Spanned<String>>,
        table: Range<usize>,
        prefix: &str,
    ) -> Result<CertPair, ConfigError> {
        let (Some(cert), Some(key)) = (cert, key) else {
            let missing = if cert.is_none() { "cert" } else { "key" };
            return Err(self.source.error_at(
                table,
                &format!("{prefix}.{missing}"),
                "TLS needs cert = \"/path/cert.pem\" (the PEM chain, the server's certificate \
                 first) and key = \"/path/key.pem\" (its PEM private key)"
                    .to_owned(),
            ));
        };
        CertPair::load(Path::new(cert.get_ref()), Path::new(key.get_ref())).map_err(|error| {
            let (value, name, why) = match error {
                CertError::Cert(why) => (cert, "cert", why),
                CertError::Key(why) => (key, "key", why),
            };
            // The whole path, however long: it is what to fix.
            self.source.error_at(
                value.span(),
                &format!("{prefix}.{name}"),
                format!("{:?} {why}", value.get_ref()),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]
    use std::path::PathBuf;

    use rcgen::{CertificateParams, KeyPair, date_time_ymd};

    use crate::config::parse;
    use crate::config::tests::{error, with_route};

    /// A directory of PEM files: `NAME.pem`/`NAME.key` for `localhost` (`good`), for
    /// `localhost` expired in 2001 (`expired`), and a key of no certificate (`stray.key`).
    struct Files(PathBuf);

    impl Files {
        fn new(name: &str) -> Self {
            let dir = std::env::temp_dir().join(format!(
                "ringstream-tls-config-{name}-{}",
                std::process::id()
            ));
            std::fs::create_dir_all(&dir).unwrap();
            for (file, expired) in [("good", false), ("expired", true)] {
                let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
                if expired {
                    params.not_before = date_time_ymd(2000, 1, 1);
                    params.not_after = date_time_ymd(2001, 1, 1);
                }
                let key = KeyPair::generate().unwrap();
                let cert = params.self_signed(&key).unwrap();
                std::fs::write(dir.join(format!("{file}.pem")), cert.pem()).unwrap();
                std::fs::write(dir.join(format!("{file}.key")), key.serialize_pem()).unwrap();
            }
            let stray = KeyPair::generate().unwrap();
            std::fs::write(dir.join("stray.key"), stray.serialize_pem()).unwrap();
            std::fs::write(dir.join("notes.txt"), "not PEM").unwrap();
            Self(dir)
        }

        fn path(&self, file: &str) -> String {
            self.0.join(file).display().to_string()
        }

        /// `[tls]` with `cert` and `key` (file names in the directory) and `extra` lines.
        fn section(&self, cert: &str, key: &str, extra: &str) -> String {
            with_route(&format!(
                "[tls]\ncert = \"{}\"\nkey = \"{}\"\n{extra}",
                self.path(cert),
                self.path(key)
            ))
        }
    }

    impl Drop for Files {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn a_tls_section_is_read_and_its_files_checked() {
        let files = Files::new("read");
        let config = parse(&files.section("good.pem", "good.key", ""), "config.toml").unwrap();
        assert!(config.tls.is_some());
        let with_sni = files.section(
            "good.pem",
            "good.key",
            &format!(
                "min_version = \"1.3\"\nalpn = [\"http/1.1\"]\n[[tls.sni]]\nname = \"LocalHost\"\n\
                 cert = \"{}\"\nkey = \"{}\"\n",
                files.path("good.pem"),
                files.path("good.key")
            ),
        );
        assert!(parse(&with_sni, "config.toml").unwrap().tls.is_some());
    }

    #[test]
    fn tls_errors_name_the_key_line_and_file() {
        let files = Files::new("errors");
        let missing = files.path("missing.pem");
        assert_eq!(
            error(&files.section("missing.pem", "good.key", "")),
            format!(
                "config.toml:2: tls.cert: \"{missing}\" cannot read it: No such file or \
                 directory (os error 2)"
            )
        );
        assert_eq!(
            error(&with_route("[tls]\ncert = \"a.pem\"\n")),
            "config.toml:1: tls.key: TLS needs cert = \"/path/cert.pem\" (the PEM chain, the \
             server's certificate first) and key = \"/path/key.pem\" (its PEM private key)"
        );
        let expired = error(&files.section("expired.pem", "expired.key", ""));
        assert!(
            expired.starts_with("config.toml:2: tls.cert: ") && expired.contains("expired on"),
            "{expired}"
        );
        let stray = error(&files.section("good.pem", "stray.key", ""));
        assert!(
            stray.starts_with("config.toml:3: tls.key: ")
                && stray.contains("does not fit the certificate"),
            "{stray}"
        );
        let not_pem = error(&files.section("notes.txt", "good.key", ""));
        assert!(
            not_pem.contains("tls.cert: ") && not_pem.contains("holds no PEM certificate"),
            "{not_pem}"
        );
        assert_eq!(
            error(&files.section("good.pem", "good.key", "min_version = \"1.1\"\n")),
            "config.toml:4: tls.min_version: \"1.1\" is not one of: 1.2, 1.3"
        );
        assert_eq!(
            error(&files.section("good.pem", "good.key", "alpn = [\"h2\"]\n")),
            "config.toml:4: tls.alpn: \"h2\": ringstream speaks HTTP/1.1 over TLS; alpn may \
             list \"http/1.1\" or nothing"
        );
        let sni = |name: &str| {
            format!(
                "[[tls.sni]]\nname = \"{name}\"\ncert = \"{}\"\nkey = \"{}\"\n",
                files.path("good.pem"),
                files.path("good.key")
            )
        };
        let wrong_name = error(&files.section("good.pem", "good.key", &sni("other.test")));
        assert!(
            wrong_name.starts_with("config.toml:6: tls.sni[0].cert: ")
                && wrong_name.contains("is not valid for \"other.test\""),
            "{wrong_name}"
        );
        let twice = format!("{}{}", sni("localhost"), sni("LOCALHOST"));
        assert_eq!(
            error(&files.section("good.pem", "good.key", &twice)),
            "config.toml:9: tls.sni[1].name: \"LOCALHOST\" has a certificate already"
        );
    }
}
