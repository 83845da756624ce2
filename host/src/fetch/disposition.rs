//! What a response means for the crawl: a page to parse, a request to try again later, or a
//! failure. It owns the HTTP meaning of status codes, `Retry-After`, content types and the
//! truncation marker; it must not queue, count or retry anything itself.

use super::{FetchError, Response};
use std::time::{Duration, SystemTime};

/// Header added to a page handed to plugins when its body was cut at `fetch.max_body_bytes`.
pub const TRUNCATED_HEADER: &str = "x-sandcrawl-truncated";

/// Why a request did not give a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// No usable response: DNS, connect, TLS, timeout, limits, redirects.
    Transport(FetchError),
    /// The server answered with this (non-2xx) status.
    Status(u16),
}

impl Failure {
    /// Stable short name for counters: the transport error's kind, or `http_<status>`.
    pub fn key(&self) -> std::borrow::Cow<'static, str> {
        match self {
            Failure::Transport(e) => e.kind().into(),
            Failure::Status(s) => format!("http_{s}").into(),
        }
    }

    pub fn is_timeout(&self) -> bool {
        matches!(self, Failure::Transport(FetchError::Timeout(_)))
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            Failure::Status(s) => Some(*s),
            Failure::Transport(_) => None,
        }
    }
}

/// The crawl's reading of one fetch.
#[derive(Debug)]
pub enum Disposition {
    /// A 2xx response (possibly truncated; see [`Response::truncated`]).
    Page(Box<Response>),
    /// Worth trying again later: 429, 5xx, or a transport error that may pass. `after` is the
    /// server's `Retry-After`, when it gave one.
    Retry {
        failure: Failure,
        cause: String,
        after: Option<Duration>,
    },
    /// Trying again cannot help: a 4xx (or any other non-2xx status), or a permanent
    /// transport error.
    Fail { failure: Failure, cause: String },
}

impl Disposition {
    /// Classifies a fetch result by type: the status code or the error variant, never text.
    pub fn of(result: Result<Response, FetchError>) -> Self {
        let resp = match result {
            Ok(r) => r,
            Err(e) => {
                let cause = e.to_string();
                let retry = e.retryable();
                let failure = Failure::Transport(e);
                return if retry {
                    Disposition::Retry {
                        failure,
                        cause,
                        after: None,
                    }
                } else {
                    Disposition::Fail { failure, cause }
                };
            }
        };
        let status = resp.status;
        let cause = || format!("{} answered {status}", resp.final_url);
        if status == 429 || (500..600).contains(&status) {
            let after = resp
                .header("retry-after")
                .and_then(|v| parse_retry_after(v, SystemTime::now()));
            return Disposition::Retry {
                failure: Failure::Status(status),
                cause: cause(),
                after,
            };
        }
        if !(200..300).contains(&status) {
            return Disposition::Fail {
                failure: Failure::Status(status),
                cause: cause(),
            };
        }
        Disposition::Page(Box::new(resp))
    }
}

impl Response {
    /// Whether the body is HTML by its Content-Type (no Content-Type: assumed HTML, as
    /// browsers sniff such pages).
    pub fn is_html(&self) -> bool {
        self.header("content-type")
            .is_none_or(|ct| ct.to_ascii_lowercase().contains("html"))
    }

    /// The headers as a plugin sees them: the server's, plus [`TRUNCATED_HEADER`] when the
    /// body was cut.
    pub fn headers_for_plugin(&self) -> Vec<(String, String)> {
        let mut headers = self.headers.clone();
        if self.truncated {
            headers.push((TRUNCATED_HEADER.into(), "1".into()));
        }
        headers
    }
}

/// Parses Retry-After in both forms: delta-seconds or an HTTP-date.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let v = value.trim();
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        // Larger than u64 seconds is still "a very long time", clamped by the caller.
        return Some(v.parse::<u64>().map_or(Duration::MAX, Duration::from_secs));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn errors_are_classified_by_type() {
        let retry = Disposition::of(Err(FetchError::Timeout("read")));
        assert!(matches!(&retry, Disposition::Retry { failure, .. } if failure.is_timeout()));
        let fail = Disposition::of(Err(FetchError::Tls("bad certificate".into())));
        assert!(
            matches!(&fail, Disposition::Fail { failure, .. } if failure.key() == "tls"),
            "{fail:?}"
        );
        assert_eq!(Failure::Status(404).key(), "http_404");
    }
}
