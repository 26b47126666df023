// SPDX-License-Identifier: MIT OR Apache-2.0
//! The `config` property: librdkafka settings passed through as `key=value,key=value`.
//!
//! A comma inside a value is written `\,` (e.g. `ssl.cipher.suites=A\,B`). Values of keys
//! that hold secrets are never shown back: [`ClientConfig::redacted`] masks them, and it is
//! what the elements log and return when the property is read.
//!
//! A value written `${NAME}` is read from the environment variable `NAME` when the element
//! starts (e.g. `sasl.password=${KAFKA_PASSWORD}`), so a secret need not appear in a
//! gst-launch line, which GStreamer itself logs at debug level and `ps` shows.

use std::fmt;

/// librdkafka settings in the order given.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientConfig {
    entries: Vec<(String, String)>,
}

/// Why a `config` string could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError(String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// Parts of key names whose values are secrets.
const SECRET_KEY_PARTS: [&str; 5] = ["password", "secret", ".pem", "jaas", "oauthbearer.config"];

pub fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SECRET_KEY_PARTS.iter().any(|part| key.contains(part))
}

impl ClientConfig {
    /// Parses `linger.ms=5,acks=all`. Empty entries are skipped; an entry without `=` or
    /// with an empty key is an error naming it.
    pub fn parse(text: &str) -> Result<ClientConfig, ConfigError> {
        let mut entries: Vec<(String, String)> = Vec::new();
        for entry in split_unescaped_commas(text) {
            let entry = entry.trim();
            if entry.is_empty() {
                continue;
            }
            // A malformed entry right after a secret is most likely the rest of that
            // secret, cut at an unescaped comma: never echo it.
            let shown = match entries.last() {
                Some((key, _)) if is_secret_key(key) => {
                    format!("after '{key}' (a comma inside a value is written \\,)")
                }
                _ => format!("'{}'", shown_entry(entry)),
            };
            let Some((key, value)) = entry.split_once('=') else {
                return Err(ConfigError(format!(
                    "config entry {shown} is not of the form key=value (e.g. linger.ms=5)"
                )));
            };
            let key = key.trim();
            if key.is_empty() {
                return Err(ConfigError(format!(
                    "config entry {shown} has an empty key"
                )));
            }
            entries.push((key.to_string(), value.trim().to_string()));
        }
        Ok(ClientConfig { entries })
    }

    /// Parses a client properties file as Kafka's tools read one (`client.properties`):
    /// one `key=value` per line, blank lines and lines starting with `#` or `!` skipped.
    /// Commas need no escaping here. The error names the line, never a secret's value.
    pub fn parse_properties(text: &str) -> Result<ClientConfig, ConfigError> {
        let mut entries = Vec::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
                continue;
            }
            let shown = format!("line {} ('{}')", number + 1, shown_entry(line));
            let Some((key, value)) = line.split_once('=') else {
                return Err(ConfigError(format!(
                    "{shown} is not of the form key=value (e.g. security.protocol=SASL_SSL)"
                )));
            };
            let key = key.trim();
            if key.is_empty() {
                return Err(ConfigError(format!("{shown} has an empty key")));
            }
            entries.push((key.to_string(), value.trim().to_string()));
        }
        Ok(ClientConfig { entries })
    }

    /// These settings followed by `later`'s, which win where both set a key.
    pub fn followed_by(&self, later: &ClientConfig) -> ClientConfig {
        let mut entries = self.entries.clone();
        entries.extend(later.entries.iter().cloned());
        ClientConfig { entries }
    }

    /// The settings as a `config` property value (`key=value,...`, commas escaped) that
    /// [`ClientConfig::parse`] reads back to the same entries. Secrets are kept: this is
    /// for handing to an element, never for showing.
    pub fn to_property(&self) -> String {
        self.entries
            .iter()
            .map(|(k, v)| format!("{}={}", k.replace(',', "\\,"), v.replace(',', "\\,")))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn entries(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The settings with every `${NAME}` value replaced by the environment variable `NAME`;
    /// the error names the variable and the key (never a value).
    pub fn with_environment(&self) -> Result<ClientConfig, ConfigError> {
        self.with_variables(|name| std::env::var(name).ok())
    }

    fn with_variables(
        &self,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<ClientConfig, ConfigError> {
        let entries = self
            .entries
            .iter()
            .map(|(key, value)| {
                let Some(name) = value
                    .strip_prefix("${")
                    .and_then(|rest| rest.strip_suffix('}'))
                else {
                    return Ok((key.clone(), value.clone()));
                };
                lookup(name).map(|v| (key.clone(), v)).ok_or_else(|| {
                    ConfigError(format!(
                        "environment variable {name} (for {key}) is not set"
                    ))
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(ClientConfig { entries })
    }

    /// The settings as `key=value,...` with secret values replaced by `***`.
    pub fn redacted(&self) -> String {
        self.entries
            .iter()
            .map(|(k, v)| {
                let value = if is_secret_key(k) {
                    "***".to_string()
                } else {
                    v.replace(',', "\\,")
                };
                // Keys too: a key with a comma must read back as one entry.
                format!("{}={value}", k.replace(',', "\\,"))
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// An entry as it may appear in an error message: secret values masked.
fn shown_entry(entry: &str) -> String {
    if is_secret_key(entry) {
        "<entry with a secret>".to_string()
    } else {
        entry.to_string()
    }
}

fn split_unescaped_commas(text: &str) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&',') => {
                parts.last_mut().unwrap().push(',');
                chars.next();
            }
            ',' => parts.push(String::new()),
            _ => parts.last_mut().unwrap().push(c),
        }
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_files_read_like_kafkas_and_go_to_an_element_unchanged() {
        let file = "# client.properties\n\nsecurity.protocol = SASL_SSL\n! also a comment\n\
                    sasl.password=a,b=c\nssl.cipher.suites=A,B\n";
        let config = ClientConfig::parse_properties(file).unwrap();
        let entries: Vec<_> = config.entries().collect();
        assert_eq!(
            entries,
            vec![
                ("security.protocol", "SASL_SSL"),
                ("sasl.password", "a,b=c"),
                ("ssl.cipher.suites", "A,B"),
            ]
        );
        assert_eq!(ClientConfig::parse(&config.to_property()).unwrap(), config);
        let later = ClientConfig::parse("security.protocol=SSL,linger.ms=5").unwrap();
        let both = config.followed_by(&later);
        assert_eq!(both.get("security.protocol"), Some("SSL"));
        assert_eq!(both.get("sasl.password"), Some("a,b=c"));
        assert_eq!(both.get("linger.ms"), Some("5"));

        let err = ClientConfig::parse_properties("acks=all\nsasl.password hunter2\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("line 2 ("), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        let err = ClientConfig::parse_properties(" = x")
            .unwrap_err()
            .to_string();
        assert!(err.contains("empty key"), "{err}");
    }

    #[test]
    fn values_from_the_environment() {
        let config = ClientConfig::parse("sasl.password=${KV_SECRET},linger.ms=5").unwrap();
        let lookup = |name: &str| (name == "KV_SECRET").then(|| "s3cr3t".to_string());
        let resolved = config.with_variables(lookup).unwrap();
        assert_eq!(resolved.get("sasl.password"), Some("s3cr3t"));
        assert_eq!(resolved.get("linger.ms"), Some("5"));
        assert_eq!(config.redacted(), "sasl.password=***,linger.ms=5");
        let missing = ClientConfig::parse("sasl.password=${KV_NOPE}").unwrap();
        assert_eq!(
            missing.with_variables(lookup).unwrap_err().to_string(),
            "environment variable KV_NOPE (for sasl.password) is not set"
        );
    }

    #[test]
    fn parses_entries_in_order_with_escaped_commas() {
        let config =
            ClientConfig::parse(" linger.ms=5, acks = all ,ssl.cipher.suites=A\\,B,").unwrap();
        let entries: Vec<_> = config.entries().collect();
        assert_eq!(
            entries,
            vec![
                ("linger.ms", "5"),
                ("acks", "all"),
                ("ssl.cipher.suites", "A,B")
            ]
        );
        assert_eq!(config.get("acks"), Some("all"));
    }

    #[test]
    fn malformed_entries_are_named() {
        let err = ClientConfig::parse("linger.ms=5,bogus").unwrap_err();
        assert!(err.to_string().contains("'bogus'"), "{err}");
        assert!(ClientConfig::parse("=5").is_err());
        assert_eq!(ClientConfig::parse("").unwrap(), ClientConfig::default());
    }

    #[test]
    fn secrets_are_masked() {
        let config = ClientConfig::parse(
            "security.protocol=SASL_SSL,sasl.username=bob,sasl.password=hunter2,ssl.key.pem=-----BEGIN",
        )
        .unwrap();
        let shown = config.redacted();
        assert!(
            !shown.contains("hunter2") && !shown.contains("BEGIN"),
            "{shown}"
        );
        assert!(shown.contains("sasl.username=bob"));
        let err = ClientConfig::parse("sasl.password").unwrap_err();
        assert!(!err.to_string().contains("sasl.password"));
        // Found by tests/fuzz_decoders.rs: an unescaped comma cut the secret in two and the
        // error showed the second half.
        for text in ["sasl.password=hunter,2tail", "sasl.password=hunter,=2tail"] {
            let err = ClientConfig::parse(text).unwrap_err().to_string();
            assert!(
                !err.contains("2tail") && err.contains("after 'sasl.password'"),
                "{err}"
            );
        }
    }
}
