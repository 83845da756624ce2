//! One connection to Redis that survives a Redis restart: a call that fails because the
//! server went away waits with back-off, reconnects and tries again (one warn line when
//! Redis is lost, one when it is back), for at most `max_wait`. It owns the connection and
//! its error wording; it must not know the crawl's keys or scripts.

use anyhow::{Result, anyhow, bail};
use redis::{ErrorKind, RedisError, ServerErrorKind};
use std::time::{Duration, Instant};

/// How long connecting, and each reply, may take before the server counts as gone.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) struct Conn {
    client: redis::Client,
    con: Option<redis::Connection>,
    /// The URL without its password, for messages.
    shown: String,
    max_wait: Duration,
}

impl Conn {
    /// Connects and checks the server answers: an unreachable server, a wrong password or a
    /// missing one is one line naming the URL and the fix.
    pub(crate) fn open(url: &str, max_wait: Duration) -> Result<Conn> {
        let shown = crate::sink::target::mask(url);
        let client = redis::Client::open(url).map_err(|e| {
            anyhow!(
                "--frontier {shown}: not a Redis URL ({e}); use redis://[:PASSWORD@]HOST:PORT/DB"
            )
        })?;
        let mut conn = Conn {
            client,
            con: None,
            shown,
            max_wait,
        };
        let mut con = conn.connect().map_err(|e| conn.explain(&e))?;
        // A server that wants a password only says so at the first command.
        let pong: String = redis::cmd("PING")
            .query(&mut con)
            .map_err(|e| conn.explain(&e))?;
        if pong != "PONG" {
            bail!(
                "{} answered PING with {pong:?}: is it a Redis server?",
                conn.shown
            );
        }
        // The scripts use Redis 7's function flags (`#!lua`).
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query(&mut con)
            .map_err(|e| conn.explain(&e))?;
        let version = info
            .lines()
            .find_map(|l| l.strip_prefix("redis_version:"))
            .unwrap_or("")
            .trim()
            .to_owned();
        let major: u32 = version
            .split('.')
            .next()
            .and_then(|m| m.parse().ok())
            .unwrap_or(0);
        if major < 7 {
            bail!(
                "{} is Redis {}; a shared crawl needs Redis 7 or newer",
                conn.shown,
                if version.is_empty() {
                    "of an unknown version"
                } else {
                    &version
                }
            );
        }
        conn.con = Some(con);
        Ok(conn)
    }

    pub(crate) fn shown(&self) -> &str {
        &self.shown
    }

    fn connect(&self) -> redis::RedisResult<redis::Connection> {
        let con = self.client.get_connection_with_timeout(IO_TIMEOUT)?;
        con.set_read_timeout(Some(IO_TIMEOUT))?;
        con.set_write_timeout(Some(IO_TIMEOUT))?;
        Ok(con)
    }

    /// The one line for an error met while connecting.
    fn explain(&self, e: &RedisError) -> anyhow::Error {
        let text = e.to_string();
        let s = &self.shown;
        if text.contains("WRONGPASS") || e.kind() == ErrorKind::AuthenticationFailed {
            anyhow!(
                "Redis at {s} refused the password: put the right one in the URL (redis://:PASSWORD@HOST:PORT/DB, or redis://USER:PASSWORD@… with an ACL user)"
            )
        } else if text.contains("NOAUTH") {
            anyhow!(
                "Redis at {s} needs a password: pass it in the URL (redis://:PASSWORD@HOST:PORT/DB)"
            )
        } else if gone(e) {
            anyhow!(
                "cannot reach Redis at {s} ({}): start it, or fix the host and port in --frontier",
                crate::escape::escape(&text)
            )
        } else {
            anyhow!("Redis at {s}: {}", crate::escape::escape(&text))
        }
    }

    /// Runs `f` on the connection; while Redis is unreachable (restarting, loading its AOF),
    /// waits and retries for up to `max_wait`. Other errors are returned as they are.
    pub(crate) fn call<T>(
        &mut self,
        mut f: impl FnMut(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T> {
        let mut down_since: Option<Instant> = None;
        let mut pause = Duration::from_millis(100);
        loop {
            let attempt = match self.con.as_mut() {
                Some(c) => f(c),
                None => match self.connect() {
                    Ok(c) => {
                        self.con = Some(c);
                        continue;
                    }
                    Err(e) => Err(e),
                },
            };
            match attempt {
                Ok(v) => {
                    if let Some(t) = down_since {
                        tracing::warn!(
                            redis = %self.shown,
                            "Redis is back after {:.1} s; the crawl goes on",
                            t.elapsed().as_secs_f64()
                        );
                    }
                    return Ok(v);
                }
                Err(e) if gone(&e) => {
                    self.con = None;
                    let since = *down_since.get_or_insert_with(|| {
                        tracing::warn!(
                            redis = %self.shown,
                            "lost Redis ({}); reconnecting with back-off for up to {} s",
                            crate::escape::escape(&e.to_string()),
                            self.max_wait.as_secs()
                        );
                        Instant::now()
                    });
                    if since.elapsed() >= self.max_wait {
                        bail!(
                            "Redis at {} was unreachable for {} s (redis_wait_s); the crawl stops, and running again on the same --crawl-id resumes it",
                            self.shown,
                            self.max_wait.as_secs()
                        );
                    }
                    blocking_sleep(pause);
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
                Err(e) => bail!(
                    "Redis at {}: {}",
                    self.shown,
                    crate::escape::escape(&e.to_string())
                ),
            }
        }
    }
}

/// Whether the error means the server is not there (now): worth waiting for.
fn gone(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || matches!(
            e.kind(),
            ErrorKind::Server(ServerErrorKind::BusyLoading | ServerErrorKind::TryAgain)
        )
}

/// Sleeps without stalling the async runtime's other tasks.
fn blocking_sleep(d: Duration) {
    super::blocking(|| std::thread::sleep(d));
}
