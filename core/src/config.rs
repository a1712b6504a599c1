//! Config value types shared by components, each validating itself while it is parsed so
//! that a mistake is reported with its key path (`exporters.otlp.endpoint: expected
//! host:port, got 'tempo'`).

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A listen or connect address written `host:port` (`127.0.0.1:4317`, `[::1]:4317`,
/// `localhost:4317`, `0.0.0.0:4317`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    /// Host name or IP literal, without brackets.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl HostPort {
    /// `host:port` from parts.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Self {
            host: host.into(),
            port,
        }
    }

    /// Parses `host:port`; the error says what was expected and what was given.
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = || format!("expected host:port, got '{s}'");
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (h, p) = rest.split_once("]:").ok_or_else(bad)?;
            (h, p)
        } else {
            let (h, p) = s.rsplit_once(':').ok_or_else(bad)?;
            if h.contains(':') {
                return Err(format!(
                    "expected host:port, got '{s}' (write IPv6 addresses as [addr]:port)"
                ));
            }
            (h, p)
        };
        if host.is_empty() || host.contains('/') || host.chars().any(char::is_whitespace) {
            return Err(bad());
        }
        let port = port
            .parse::<u16>()
            .map_err(|_| format!("expected host:port with a port 0-65535, got '{s}'"))?;
        Ok(Self::new(host, port))
    }

    /// Whether the host is a loopback name or address.
    pub fn is_loopback(&self) -> bool {
        self.host == "localhost"
            || self
                .host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl Serialize for HostPort {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HostPort {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        HostPort::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A secret string (token, header value). Printed and serialized as `[redacted]`, so
/// `hpcotel print-config` and logs never show it.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The secret itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether an `Authorization` header value is `Bearer <this secret>` (scheme
    /// case-insensitive). Compares in constant time: the running time depends on the lengths
    /// only, not on where the bytes differ.
    pub fn is_bearer(&self, authorization: &[u8]) -> bool {
        let value = authorization.trim_ascii();
        let Some((scheme, rest)) = value.split_at_checked(6) else {
            return false;
        };
        if !scheme.eq_ignore_ascii_case(b"bearer")
            || !rest.first().is_some_and(u8::is_ascii_whitespace)
        {
            return false;
        }
        let token = rest.trim_ascii();
        let want = self.0.as_bytes();
        !token.is_empty()
            && token.len() == want.len()
            && token
                .iter()
                .zip(want)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

/// Whether a request's `Authorization` header satisfies `expected`: always when no token is
/// configured, else only `Bearer <token>` (see [`Secret::is_bearer`]).
pub fn bearer_authorized(expected: Option<&Secret>, authorization: Option<&[u8]>) -> bool {
    match (expected, authorization) {
        (None, _) => true,
        (Some(e), Some(v)) => e.is_bearer(v),
        (Some(_), None) => false,
    }
}

/// Deserializes a humantime duration (`10s`) that must be greater than zero.
pub fn positive_duration<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<std::time::Duration, D::Error> {
    let d: std::time::Duration = humantime_serde::deserialize(d)?;
    if d.is_zero() {
        return Err(serde::de::Error::custom(
            "expected a duration greater than 0 (e.g. '10s'), got 0",
        ));
    }
    Ok(d)
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("[redacted]")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

/// TLS for a server (a receiver). Both files are PEM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsServerConfig {
    /// Server certificate chain (PEM). Required.
    pub cert_file: PathBuf,
    /// Server private key (PEM). Required.
    pub key_file: PathBuf,
    /// CA bundle (PEM) that client certificates must chain to; when set, clients must present
    /// one (mutual TLS). Default: unset, no client certificate asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ca_file: Option<PathBuf>,
}

/// TLS for a client (an exporter). All files are PEM.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsClientConfig {
    /// Connect in plaintext (no TLS). Default: false, unless the endpoint says `http://`.
    pub insecure: bool,
    /// Accept any server certificate. For tests only. Default: false.
    pub insecure_skip_verify: bool,
    /// CA bundle to verify the server with, instead of the bundled web roots. Default: unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Client certificate for mutual TLS. Default: unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    /// Client private key for mutual TLS. Default: unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// Server name to verify instead of the endpoint's host. Default: the endpoint's host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
}

/// Bearer-token authentication a receiver demands of its clients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BearerAuthConfig {
    /// The token clients must send as `Authorization: Bearer <token>`. Usually
    /// `${env:NAME}`. Required.
    pub token: Secret,
}

/// Serde helper for optional sub-sections written the Collector's way: a key that is present
/// turns the section on, even with no value (`grpc:`), taking its defaults; an absent key
/// leaves it off. Use with `#[serde(default, deserialize_with = "present_means_enabled")]`.
pub fn present_means_enabled<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Some(Option::<T>::deserialize(d)?.unwrap_or_default()))
}

/// Serde helper for counts that must be at least 1 (sizes, capacities, numbers of workers),
/// for unsigned integer fields: `#[serde(deserialize_with = "hpcotel_core::config::at_least_one")]`.
/// The error reads `expected at least 1, got 0`.
pub fn at_least_one<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + PartialEq + Default,
{
    let n = T::deserialize(d)?;
    if n == T::default() {
        return Err(serde::de::Error::custom("expected at least 1, got 0"));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_parses_and_explains() {
        assert_eq!(HostPort::parse("127.0.0.1:4317").unwrap().port, 4317);
        assert_eq!(HostPort::parse("[::1]:4318").unwrap().host, "::1");
        assert_eq!(
            HostPort::parse("[::1]:4318").unwrap().to_string(),
            "[::1]:4318"
        );
        assert!(HostPort::parse("localhost:1").unwrap().is_loopback());
        assert!(!HostPort::parse("0.0.0.0:1").unwrap().is_loopback());
        assert_eq!(
            HostPort::parse("tempo").unwrap_err(),
            "expected host:port, got 'tempo'"
        );
        assert!(HostPort::parse("tempo:99999").is_err());
        assert!(HostPort::parse("::1:80").is_err());
    }

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "[redacted]");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"[redacted]\"");
    }
}
