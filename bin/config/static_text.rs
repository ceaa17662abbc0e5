//! Checking the `static_text` route: its body and a content type safe to put in a response
//! head.

use ringstream_engine::config::RouteKind;
use toml::Spanned;

use super::checker::Checker;
use super::error::ConfigError;
use super::raw::RawRoute;

/// `content_type` of a `static_text` route when the file does not say.
const DEFAULT_CONTENT_TYPE: &str = "text/plain; charset=utf-8";

impl Checker<'_, '_> {
    /// The `static_text` kind: its body and content type.
    pub(super) fn static_text_kind(
        &self,
        key: &str,
        raw: &RawRoute,
    ) -> Result<RouteKind, ConfigError> {
        let Some(body) = &raw.body else {
            return Err(self.source.error_at(
                raw.kind.span(),
                key,
                "a static_text route needs a body (add body = \"...\")".to_owned(),
            ));
        };
        let content_type = match &raw.content_type {
            Some(value) => self.content_type(value, &format!("{key}.content_type"))?,
            None => DEFAULT_CONTENT_TYPE.to_owned(),
        };
        Ok(RouteKind::StaticText {
            body: body.get_ref().clone(),
            content_type,
        })
    }

    /// A header value: visible ASCII and spaces only, so that it cannot split the response head.
    fn content_type(&self, value: &Spanned<String>, key: &str) -> Result<String, ConfigError> {
        let text = value.get_ref();
        if !text.is_empty()
            && text
                .bytes()
                .all(|b| b == b' ' || b == b'\t' || b.is_ascii_graphic())
        {
            return Ok(text.clone());
        }
        Err(self.source.error_at(
            value.span(),
            key,
            format!(
                "{} is not a valid header value (printable ASCII, e.g. \"text/plain; charset=utf-8\")",
                self.source.written(value.span())
            ),
        ))
    }
}
