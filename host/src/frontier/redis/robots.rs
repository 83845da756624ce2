//! robots.txt answers shared by the workers of one crawl: `robots:{scheme://host}` holds the
//! status and body one worker fetched, expiring with the answer's validity, so the others
//! read it instead of fetching it again. It has its own connection (fetch tasks ask it, not
//! the scheduler) and must not touch the queues.

use super::conn::Conn;
use super::{blocking, prefix};
use crate::robots::RobotsStore;
use std::sync::Mutex;
use std::time::Duration;

pub(crate) struct RedisRobots {
    conn: Mutex<Conn>,
    prefix: String,
}

/// How long a fetch task waits for an unreachable Redis before it fetches robots.txt itself.
const WAIT: Duration = Duration::from_secs(5);

impl RedisRobots {
    pub(crate) fn open(url: &str, crawl_id: &str) -> anyhow::Result<Self> {
        Ok(RedisRobots {
            conn: Mutex::new(blocking(|| Conn::open(url, WAIT))?),
            prefix: prefix(crawl_id),
        })
    }

    fn key(&self, origin: &str) -> String {
        format!("{}robots:{origin}", self.prefix)
    }
}

impl RobotsStore for RedisRobots {
    fn get(&self, origin: &str) -> Option<(u16, Vec<u8>, Duration)> {
        let key = self.key(origin);
        let mut conn = self.conn.lock().ok()?;
        let got: anyhow::Result<(Option<Vec<u8>>, i64)> = blocking(|| {
            conn.call(|c| {
                redis::pipe()
                    .cmd("GET")
                    .arg(&key)
                    .cmd("PTTL")
                    .arg(&key)
                    .query(c)
            })
        });
        match got {
            Ok((Some(raw), ttl)) if raw.len() >= 2 && ttl > 0 => {
                let status = u16::from_be_bytes([raw[0], raw[1]]);
                Some((status, raw[2..].to_vec(), Duration::from_millis(ttl as u64)))
            }
            Ok(_) => None,
            Err(e) => {
                tracing::debug!(origin, "shared robots.txt: {e:#}");
                None
            }
        }
    }

    fn claim(&self, origin: &str) -> bool {
        let key = format!("{}robots-claim:{origin}", self.prefix);
        let Ok(mut conn) = self.conn.lock() else {
            return true;
        };
        let ms = crate::robots::CLAIM_WAIT.as_millis() as u64;
        let got: anyhow::Result<Option<String>> = blocking(|| {
            conn.call(|c| {
                redis::cmd("SET")
                    .arg(&key)
                    .arg(1)
                    .arg("NX")
                    .arg("PX")
                    .arg(ms)
                    .query(c)
            })
        });
        // Redis unreachable: fetch it here rather than wait.
        got.map_or(true, |ok| ok.is_some())
    }

    fn put(&self, origin: &str, status: u16, body: &[u8], valid_for: Duration) {
        let key = self.key(origin);
        let mut value = status.to_be_bytes().to_vec();
        value.extend_from_slice(body);
        let ms = valid_for.as_millis().max(1) as u64;
        let Ok(mut conn) = self.conn.lock() else {
            return;
        };
        let put: anyhow::Result<()> = blocking(|| {
            conn.call(|c| {
                redis::cmd("SET")
                    .arg(&key)
                    .arg(value.as_slice())
                    .arg("PX")
                    .arg(ms)
                    .query(c)
            })
        });
        if let Err(e) = put {
            tracing::debug!(origin, "sharing robots.txt: {e:#}");
        }
    }
}
