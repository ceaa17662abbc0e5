//! Checking the `files` and `upload` routes: their directories and options.

use std::path::PathBuf;

use ringstream_engine::config::{FilesConfig, RouteKind, SendPath, UploadConfig};

use super::checker::Checker;
use super::error::ConfigError;
use super::raw::RawRoute;

/// Least and most `chunk_size`.
const CHUNK_SIZES: std::ops::RangeInclusive<u64> = 4 * 1024..=16 * 1024 * 1024;

impl Checker<'_, '_> {
    /// The `files` kind: `root` (required), `index`, `hidden`, `attachment`, `max_ranges`,
    /// `chunk_size`.
    pub(super) fn files_kind(&self, key: &str, raw: &RawRoute) -> Result<RouteKind, ConfigError> {
        let Some(root) = &raw.root else {
            return Err(self.source.error_at(
                raw.kind.span(),
                key,
                "a files route needs a root directory (add root = \"./public\")".to_owned(),
            ));
        };
        if root.get_ref().is_empty() {
            return Err(self.source.error_at(
                root.span(),
                &format!("{key}.root"),
                "the root is an empty path".to_owned(),
            ));
        }
        let index = match &raw.index {
            Some(value) => {
                let name = value.get_ref();
                if name.is_empty() || name.contains('/') || name == "." || name == ".." {
                    return Err(self.source.error_at(
                        value.span(),
                        &format!("{key}.index"),
                        format!("{} is not a file name", self.source.written(value.span())),
                    ));
                }
                Some(name.clone())
            }
            None => None,
        };
        let max_ranges = match &raw.max_ranges {
            Some(value) => self
                .int(value, &format!("{key}.max_ranges"), 0..=1)
                .map_err(|_| {
                    self.source.error_at(
                        value.span(),
                        &format!("{key}.max_ranges"),
                        format!(
                            "{} is not supported: 1 honours one range per request, 0 none \
                         (multipart/byteranges is not built)",
                            self.source.written(value.span())
                        ),
                    )
                })?,
            None => 1,
        };
        let chunk_size = match &raw.chunk_size {
            Some(value) => self.size(value, &format!("{key}.chunk_size"), CHUNK_SIZES, "")?,
            None => FilesConfig::new("").chunk_size,
        };
        let send = match &raw.send {
            Some(value) => match value.get_ref().as_str() {
                "auto" => SendPath::Auto,
                "sendfile" => SendPath::Sendfile,
                "copy" => SendPath::Copy,
                "zerocopy" => SendPath::Zerocopy,
                _ => {
                    return Err(self.one_of(
                        value,
                        &format!("{key}.send"),
                        &["auto", "sendfile", "copy", "zerocopy"],
                    ));
                }
            },
            None => SendPath::default(),
        };
        Ok(RouteKind::Files(Box::new(FilesConfig {
            send,
            index,
            allow_hidden: raw.hidden.as_ref().is_some_and(|v| *v.get_ref()),
            attachment: raw.attachment.as_ref().is_some_and(|v| *v.get_ref()),
            max_ranges,
            chunk_size,
            ..FilesConfig::new(PathBuf::from(root.get_ref()))
        })))
    }

    /// The `upload` kind: `upload_dir` (required), `max_upload_size`, `overwrite`, `fsync`,
    /// `max_uploads_per_client`.
    pub(super) fn upload_kind(&self, key: &str, raw: &RawRoute) -> Result<RouteKind, ConfigError> {
        let Some(dir) = raw.upload_dir.as_ref().filter(|d| !d.get_ref().is_empty()) else {
            return Err(self.source.error_at(
                raw.kind.span(),
                key,
                "an upload route needs a directory (add upload_dir = \"./uploads\")".to_owned(),
            ));
        };
        let mut config = UploadConfig::new(PathBuf::from(dir.get_ref()));
        if let Some(value) = &raw.max_upload_size {
            config.max_upload_size = value.get_ref().0;
        }
        if let Some(value) = &raw.max_uploads_per_client {
            config.max_uploads_per_client =
                self.int(value, &format!("{key}.max_uploads_per_client"), 1..=10_000)?;
        }
        config.overwrite = raw.overwrite.as_ref().is_some_and(|v| *v.get_ref());
        config.fsync = raw.fsync.as_ref().is_some_and(|v| *v.get_ref());
        Ok(RouteKind::Upload(Box::new(config)))
    }
}
