//! Just enough HTTP/1.1 (std only) to probe moto: one form POST per connection.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};

/// `host:port` of an `http://host:port[/…]` URL.
pub fn authority(endpoint: &str) -> Result<&str> {
    let rest = endpoint
        .strip_prefix("http://")
        .ok_or_else(|| anyhow!("{endpoint}: only http:// endpoints are supported"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    if authority
        .rsplit_once(':')
        .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
    {
        bail!("{endpoint}: expected http://host:port");
    }
    Ok(authority)
}

/// Status code of a raw HTTP response (`HTTP/1.1 200 OK…`).
pub fn status_code(response: &str) -> Option<u16> {
    let line = response.lines().next()?;
    let mut parts = line.split_whitespace();
    parts.next().filter(|v| v.starts_with("HTTP/"))?;
    parts.next()?.parse().ok()
}

/// POSTs an AWS Query `body` (e.g. `Action=DescribeAvailabilityZones&Version=2016-11-15`) for
/// `service` and returns the status and body. moto routes requests by the credential scope of
/// the `Authorization` header and does not check signatures, so a fake one is enough.
pub fn post_query(
    endpoint: &str,
    service: &str,
    body: &str,
    timeout: Duration,
) -> Result<(u16, String)> {
    let authority = authority(endpoint)?;
    let addr = authority
        .to_socket_addrs()
        .with_context(|| format!("resolving {authority}"))?
        .next()
        .ok_or_else(|| anyhow!("{authority} resolves to nothing"))?;
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("connecting to {endpoint}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let request = format!(
        "POST / HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\
         Content-Type: application/x-www-form-urlencoded; charset=utf-8\r\n\
         Authorization: AWS4-HMAC-SHA256 Credential=test/20250101/us-east-1/{service}/aws4_request, \
         SignedHeaders=host, Signature=0\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes())?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .with_context(|| format!("reading the answer of {endpoint}"))?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = status_code(&text).ok_or_else(|| anyhow!("{endpoint}: not an HTTP answer"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authority_of_endpoints() {
        assert_eq!(
            authority("http://127.0.0.1:4566").unwrap(),
            "127.0.0.1:4566"
        );
        assert_eq!(authority("http://localhost:80/x").unwrap(), "localhost:80");
        assert!(authority("https://127.0.0.1:1").is_err());
        assert!(authority("http://127.0.0.1").is_err());
        assert!(authority("http://:80").is_err());
    }

    #[test]
    fn status_line_parsing() {
        assert_eq!(status_code("HTTP/1.1 200 OK\r\n\r\n"), Some(200));
        assert_eq!(
            status_code("HTTP/1.0 503 Service Unavailable\r\n"),
            Some(503)
        );
        assert_eq!(status_code("garbage"), None);
        assert_eq!(status_code(""), None);
    }
}
