//! The on-disk key layout of the fjall frontier: typed keys and values, encoded and decoded
//! in one place. It owns byte layout only; it must not open the store or decide anything
//! about the crawl.
//!
//! All integers are big-endian, so the store's byte order is the crawl order:
//! - `u` fp(16)                             -> [`UrlMark`] (one byte)
//! - `q` host(8) prio(4) depth(4) seq(8)    -> [`QueueEntry`]: fp(16) + [`UrlRecord`] JSON
//! - `h` host(8)                            -> host name
//! - `c` host(8)                            -> pages fetched from that host (u64)
//! - `r` seq(8)                             -> [`RecentEntry`]: counted(1) + queue key(25) +
//!   fp(16) + [`UrlRecord`] JSON, for pages completed since the last checkpoint
//! - `m` name                               -> metadata ([`Meta`])

use super::UrlRecord;
use crate::normalize::Fingerprint;
use anyhow::{Context as _, Result, anyhow, bail};
use sha2::{Digest, Sha256};

/// A host's 8-byte id in keys: a prefix of SHA-256 of its name (host plus explicit port).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HostId([u8; 8]);

impl HostId {
    pub fn of(host: &str) -> Self {
        let d = Sha256::digest(host.as_bytes());
        let mut h = [0u8; 8];
        h.copy_from_slice(&d[..8]);
        HostId(h)
    }

    fn decode(raw: &[u8]) -> Result<Self> {
        Ok(HostId(raw.try_into().map_err(|_| {
            anyhow!("frontier: corrupt host id ({} bytes)", raw.len())
        })?))
    }
}

/// What the store knows of one URL (the `u` value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UrlMark {
    Queued = 0,
    Done = 1,
    Failed = 2,
    /// Reached by another URL's redirect and done with it.
    Alias = 3,
}

impl UrlMark {
    pub fn byte(self) -> [u8; 1] {
        [self as u8]
    }

    pub fn decode(raw: &[u8]) -> Result<Self> {
        Ok(match raw {
            [0] => UrlMark::Queued,
            [1] => UrlMark::Done,
            [2] => UrlMark::Failed,
            [3] => UrlMark::Alias,
            _ => bail!("frontier: corrupt URL state {raw:?}"),
        })
    }
}

/// Metadata names under `m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Meta {
    Format,
    Counters,
    Seq,
    /// The sink's token at the last completion.
    Sink,
    /// The sink's token at the last checkpoint (fsynced).
    Synced,
}

impl Meta {
    fn name(self) -> &'static [u8] {
        match self {
            Meta::Format => b"format",
            Meta::Counters => b"counters",
            Meta::Seq => b"seq",
            Meta::Sink => b"sink",
            Meta::Synced => b"synced",
        }
    }
}

/// A key of the frontier's keyspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Url(Fingerprint),
    Host(HostId),
    HostPages(HostId),
    Recent(u64),
    Meta(Meta),
}

impl Key {
    pub fn encode(self) -> Vec<u8> {
        let mut k = Vec::with_capacity(17);
        match self {
            Key::Url(fp) => {
                k.push(b'u');
                k.extend_from_slice(&fp);
            }
            Key::Host(h) => {
                k.push(b'h');
                k.extend_from_slice(&h.0);
            }
            Key::HostPages(h) => {
                k.push(b'c');
                k.extend_from_slice(&h.0);
            }
            Key::Recent(seq) => {
                k.push(b'r');
                k.extend_from_slice(&seq.to_be_bytes());
            }
            Key::Meta(m) => {
                k.push(b'm');
                k.extend_from_slice(m.name());
            }
        }
        k
    }

    /// The prefix of every host name entry.
    pub const HOSTS: [u8; 1] = [b'h'];

    /// Decodes the host id of a `h` key.
    pub fn host_of(raw: &[u8]) -> Result<HostId> {
        match raw.split_first() {
            Some((b'h', rest)) => HostId::decode(rest),
            _ => bail!("frontier: {raw:?} is not a host key"),
        }
    }

    /// The first key after every `r` entry.
    pub fn recent_end() -> Vec<u8> {
        vec![b's']
    }
}

/// A place in a host's queue: higher priority first, then lower depth, then discovery order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct QueueKey {
    pub host: HostId,
    pub priority: i32,
    pub depth: u32,
    pub seq: u64,
}

pub const QUEUE_KEY_LEN: usize = 25;

impl QueueKey {
    pub fn encode(&self) -> [u8; QUEUE_KEY_LEN] {
        let mut k = [0u8; QUEUE_KEY_LEN];
        k[0] = b'q';
        k[1..9].copy_from_slice(&self.host.0);
        // Higher priority first: invert, and flip the sign bit so negatives sort after positives.
        let p = !((self.priority as u32) ^ 0x8000_0000);
        k[9..13].copy_from_slice(&p.to_be_bytes());
        k[13..17].copy_from_slice(&self.depth.to_be_bytes());
        k[17..25].copy_from_slice(&self.seq.to_be_bytes());
        k
    }

    pub fn decode(raw: &[u8]) -> Result<Self> {
        let k: &[u8; QUEUE_KEY_LEN] = raw
            .try_into()
            .map_err(|_| anyhow!("frontier: corrupt queue key ({} bytes)", raw.len()))?;
        if k[0] != b'q' {
            bail!("frontier: {raw:?} is not a queue key");
        }
        let be4 = |r: &[u8]| u32::from_be_bytes([r[0], r[1], r[2], r[3]]);
        let p = !be4(&k[9..13]) ^ 0x8000_0000;
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&k[17..25]);
        Ok(QueueKey {
            host: HostId::decode(&k[1..9])?,
            priority: p as i32,
            depth: be4(&k[13..17]),
            seq: u64::from_be_bytes(seq),
        })
    }

    /// The prefix every queue key of `host` starts with.
    pub fn prefix(host: HostId) -> [u8; 9] {
        let mut k = [0u8; 9];
        k[0] = b'q';
        k[1..].copy_from_slice(&host.0);
        k
    }
}

/// The value of a queue entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueEntry {
    pub fp: Fingerprint,
    pub record: UrlRecord,
}

impl QueueEntry {
    pub fn encode(&self) -> Result<Vec<u8>> {
        let mut v = self.fp.to_vec();
        serde_json::to_writer(&mut v, &self.record)?;
        Ok(v)
    }

    pub fn decode(raw: &[u8]) -> Result<Self> {
        let (fp, json) = split_fp(raw).context("frontier: corrupt queue entry")?;
        let record = serde_json::from_slice(json).context("frontier: corrupt queue record")?;
        Ok(QueueEntry { fp, record })
    }

    /// Only the fingerprint, without decoding the record.
    pub fn fp_of(raw: &[u8]) -> Option<Fingerprint> {
        raw.get(..16)?.try_into().ok()
    }
}

fn split_fp(raw: &[u8]) -> Result<(Fingerprint, &[u8])> {
    if raw.len() < 16 {
        bail!("{} bytes, expected at least 16", raw.len());
    }
    let (fp, rest) = raw.split_at(16);
    Ok((
        fp.try_into().map_err(|_| anyhow!("short fingerprint"))?,
        rest,
    ))
}

/// A page completed since the last checkpoint: what it takes to put it back in its queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecentEntry {
    /// Whether it counted against `max_pages`.
    pub counted: bool,
    pub queue: QueueKey,
    pub entry: QueueEntry,
}

impl RecentEntry {
    pub fn encode(&self) -> Result<Vec<u8>> {
        let mut v = Vec::with_capacity(1 + QUEUE_KEY_LEN + 16 + 256);
        v.push(u8::from(self.counted));
        v.extend_from_slice(&self.queue.encode());
        v.extend_from_slice(&self.entry.encode()?);
        Ok(v)
    }

    pub fn decode(raw: &[u8]) -> Result<Self> {
        let corrupt = "frontier: corrupt record of a recent completion";
        let (&counted, rest) = raw.split_first().ok_or_else(|| anyhow!(corrupt))?;
        if rest.len() < QUEUE_KEY_LEN {
            bail!(corrupt);
        }
        let (qk, entry) = rest.split_at(QUEUE_KEY_LEN);
        Ok(RecentEntry {
            counted: counted == 1,
            queue: QueueKey::decode(qk).context(corrupt)?,
            entry: QueueEntry::decode(entry).context(corrupt)?,
        })
    }
}

/// A big-endian u64 value (`c` and `m seq`).
pub fn decode_u64(raw: &[u8]) -> Result<u64> {
    let b: [u8; 8] = raw
        .try_into()
        .map_err(|_| anyhow!("frontier: corrupt number ({} bytes)", raw.len()))?;
    Ok(u64::from_be_bytes(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frontier::UrlKind;

    #[test]
    fn queue_keys_round_trip_and_sort_in_crawl_order() {
        let host = HostId::of("a.test");
        let k = |priority, depth, seq| QueueKey {
            host,
            priority,
            depth,
            seq,
        };
        let order = [
            k(i32::MAX, 9, 9),
            k(5, 0, 1),
            k(0, 0, 7),
            k(0, 1, 2),
            k(0, 1, 3),
            k(-1, 0, 0),
            k(i32::MIN, 0, 0),
        ];
        for pair in order.windows(2) {
            assert!(pair[0].encode() < pair[1].encode(), "{pair:?}");
        }
        for q in order {
            assert_eq!(QueueKey::decode(&q.encode()).unwrap(), q);
            assert!(q.encode().starts_with(&QueueKey::prefix(host)));
        }
        assert!(QueueKey::decode(b"q-short").is_err());
        assert!(QueueKey::decode(&[b'x'; QUEUE_KEY_LEN]).is_err());
    }

    #[test]
    fn entries_round_trip_and_corruption_is_an_error() {
        let entry = QueueEntry {
            fp: [7; 16],
            record: UrlRecord {
                request: None,
                url: "http://a.test/?flag".into(),
                host: "a.test".into(),
                depth: 2,
                priority: -1,
                kind: UrlKind::Page,
                referrer: None,
                metadata: Some("m".into()),
                proposer: None,
                attempts: 1,
                aliases: Vec::new(),
            },
        };
        let recent = RecentEntry {
            counted: true,
            queue: QueueKey {
                host: HostId::of("a.test"),
                priority: -1,
                depth: 2,
                seq: 42,
            },
            entry: entry.clone(),
        };
        assert_eq!(
            RecentEntry::decode(&recent.encode().unwrap()).unwrap(),
            recent
        );
        assert_eq!(QueueEntry::fp_of(&entry.encode().unwrap()), Some(entry.fp));
        assert!(RecentEntry::decode(&[1, 2, 3]).is_err());
        assert!(QueueEntry::decode(&[0; 20]).is_err());
        assert!(UrlMark::decode(&[9]).is_err());
        assert_eq!(
            UrlMark::decode(&UrlMark::Alias.byte()).unwrap(),
            UrlMark::Alias
        );
        assert_eq!(
            Key::host_of(&Key::Host(HostId::of("x")).encode()).unwrap(),
            HostId::of("x")
        );
    }
}
