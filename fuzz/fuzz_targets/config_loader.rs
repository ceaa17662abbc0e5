//! The configuration loader on any text: it never panics, and whatever it refuses it refuses
//! with an error that names the file and, where it gives one, a line of the text (the key and
//! what is wrong follow). An accepted configuration has at least one route and can be
//! summarised.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringstream::config::{parse, summary};

const NAME: &str = "fuzz.toml";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse(text, NAME) {
        Ok(config) => {
            assert!(
                !config.routes.is_empty(),
                "a config without routes: {text:?}"
            );
            assert!(!summary(&config).is_empty());
        }
        Err(error) => {
            let message = error.to_string();
            let rest = message
                .strip_prefix(NAME)
                .unwrap_or_else(|| panic!("the error does not name the file: {message:?}"));
            let rest = rest
                .strip_prefix(':')
                .unwrap_or_else(|| panic!("no ':' after the file name: {message:?}"));
            // `FILE:LINE: ...` or `FILE: ...`.
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            if !digits.is_empty() {
                let line: usize = digits.parse().expect("a line number");
                let lines = text.lines().count().max(1);
                assert!(
                    (1..=lines + 1).contains(&line),
                    "line {line} of a {lines}-line text: {message:?}"
                );
            }
            assert!(
                message.len() > NAME.len() + 2,
                "an empty message: {message:?}"
            );
        }
    }
});
