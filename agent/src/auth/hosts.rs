//! Host names that the API accepts in `Host` and `Origin` headers.
//!
//! A web page can make a browser send requests to 127.0.0.1 through a DNS
//! name it controls that resolves to 127.0.0.1 (DNS rebinding). The browser
//! then sends that name in `Host`, so accepting only known names keeps
//! such pages out even though they reach the port.

use std::net::{IpAddr, SocketAddr};

/// Names accepted on every appliance, with any port.
pub const DEFAULT_HOSTS: [&str; 3] = ["127.0.0.1", "localhost", "[::1]"];

/// Host names accepted by the API, lowercase, IPv6 addresses in brackets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowedHosts {
    names: Vec<String>,
}

impl AllowedHosts {
    /// Builds the list from the defaults, the configured extra names and the
    /// addresses the API listens on. Wildcard listen addresses add nothing,
    /// because they do not name the machine.
    pub fn new(extra: &[String], listen: &[SocketAddr]) -> Self {
        let mut names: Vec<String> = DEFAULT_HOSTS.iter().map(|name| name.to_string()).collect();
        for name in extra {
            names.push(normalize(name));
        }
        for address in listen {
            if !address.ip().is_unspecified() {
                names.push(ip_name(address.ip()));
            }
        }
        names.sort();
        names.dedup();
        Self { names }
    }

    /// Returns the accepted names.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Returns true when a `Host` header value, `name` or `name:port`, is
    /// accepted.
    pub fn allows_host_header(&self, value: &str) -> bool {
        split_host_port(value).is_some_and(|host| self.names.contains(&host))
    }

    /// Returns true when an `Origin` header value names an accepted host
    /// over http or https. The opaque origin `null` is never accepted.
    pub fn allows_origin(&self, value: &str) -> bool {
        let Some((scheme, authority)) = value.split_once("://") else {
            return false;
        };
        let scheme_ok = scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https");
        scheme_ok && !authority.contains('/') && self.allows_host_header(authority)
    }
}

/// Validates a configured host name, returning the reason it is invalid.
pub fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the name is empty".to_owned());
    }
    if name.contains(':') && !(name.starts_with('[') && name.ends_with(']')) {
        return Err(
            "write a name without a port, and an IPv6 address in brackets, such as [fd00::1]"
                .to_owned(),
        );
    }
    if name
        .chars()
        .any(|c| c.is_whitespace() || c == '/' || c == '@')
    {
        return Err("the name contains a space, / or @".to_owned());
    }
    Ok(())
}

fn normalize(name: &str) -> String {
    name.trim().to_ascii_lowercase()
}

fn ip_name(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// Splits `host[:port]` and returns the lowercase host, or `None` when the
/// value is malformed (an empty host, or a port that is not a number).
fn split_host_port(value: &str) -> Option<String> {
    let (host, port) = if value.starts_with('[') {
        let end = value.find(']')?;
        let (host, rest) = value.split_at(end + 1);
        let port = match rest {
            "" => None,
            rest => Some(rest.strip_prefix(':')?),
        };
        (host, port)
    } else {
        match value.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (value, None),
        }
    };
    if host.is_empty() {
        return None;
    }
    if let Some(port) = port {
        if port.is_empty() || !port.bytes().all(|byte| byte.is_ascii_digit()) {
            return None;
        }
    }
    Some(host.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> AllowedHosts {
        AllowedHosts::new(&[], &[])
    }

    #[test]
    fn default_names_with_and_without_port() {
        let hosts = defaults();
        for value in [
            "127.0.0.1",
            "127.0.0.1:8480",
            "localhost",
            "LOCALHOST:8480",
            "[::1]",
            "[::1]:8480",
        ] {
            assert!(hosts.allows_host_header(value), "{value}");
        }
    }

    #[test]
    fn other_names_rejected() {
        let hosts = defaults();
        for value in [
            "",
            "evil.example",
            "evil.example:8480",
            "localhost.evil.example",
            "127.0.0.1.nip.io",
            "127.0.0.2:8480",
            "localhost:",
            "localhost:port",
            "[::1",
            "[::1]x",
            ":8480",
            "::1",
        ] {
            assert!(!hosts.allows_host_header(value), "{value:?}");
        }
    }

    #[test]
    fn listen_and_configured_names_added() {
        let listen: Vec<SocketAddr> = vec![
            "127.0.0.2:8480".parse().expect("address"),
            "[fd00::5]:8480".parse().expect("address"),
            "0.0.0.0:8480".parse().expect("address"),
        ];
        let hosts = AllowedHosts::new(&["Appliance.Local".to_owned()], &listen);

        assert!(hosts.allows_host_header("127.0.0.2:8480"));
        assert!(hosts.allows_host_header("[fd00::5]:8480"));
        assert!(hosts.allows_host_header("appliance.local"));
        assert!(!hosts.allows_host_header("0.0.0.0:8480"));
    }

    #[test]
    fn origins_checked_by_host() {
        let hosts = defaults();

        assert!(hosts.allows_origin("http://127.0.0.1:8480"));
        assert!(hosts.allows_origin("https://localhost"));
        assert!(hosts.allows_origin("http://[::1]:8480"));
        for value in [
            "null",
            "http://evil.example",
            "ftp://localhost",
            "localhost",
            "http://localhost/path",
            "http://user@localhost",
        ] {
            assert!(!hosts.allows_origin(value), "{value}");
        }
    }

    #[test]
    fn configured_names_validated() {
        assert!(validate_name("appliance.local").is_ok());
        assert!(validate_name("[fd00::1]").is_ok());
        assert!(validate_name("").is_err());
        assert!(validate_name("appliance.local:8480").is_err());
        assert!(validate_name("fd00::1").is_err());
        assert!(validate_name("a b").is_err());
    }
}
