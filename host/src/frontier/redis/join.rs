//! Joining a shared crawl: the first worker creates it with a description of its config; a
//! later one is compared with that description part by part and refused, in one line naming
//! the first difference, when it would crawl differently (another scope, plugin set,
//! politeness or URL normalization). It owns that comparison and the checks made before a
//! worker starts (crawl finished, worker name in use); it must not change the queues.

use super::{CrawlCounters, RedisFrontier, RedisTarget, bytes, now_ms};
use crate::frontier::Counters;
use anyhow::{Result, bail};
use std::collections::{BTreeSet, HashMap};

/// What must be equal between the workers of one crawl, and the seeds this one was given.
#[derive(Debug, Clone, Default)]
pub struct Description {
    /// (part name, JSON text): "scope", "plugins", "politeness", "normalize".
    pub parts: Vec<(&'static str, String)>,
    pub seeds: Vec<String>,
}

pub enum Joined {
    /// This worker is part of the crawl now.
    Running {
        frontier: Box<RedisFrontier>,
        /// The crawl's seeds (for a worker started without any: the scope comes from them).
        seeds: Vec<String>,
    },
    /// Nothing is queued or in flight any more: the crawl is over. With the sink token this
    /// worker stored last (its output is cut back to it: a worker killed while completing a
    /// page may have written that page's items, which another worker wrote again).
    Finished(Counters, Option<Vec<u8>>),
}

pub(super) fn join(
    mut frontier: RedisFrontier,
    target: &RedisTarget,
    me: &Description,
) -> Result<Joined> {
    let mut args: Vec<(String, String)> = me
        .parts
        .iter()
        .map(|(k, v)| (format!("cfg:{k}"), v.clone()))
        .collect();
    if !me.seeds.is_empty() {
        args.push(("seeds".into(), serde_json::to_string(&me.seeds)?));
    }
    let prefix = frontier.prefix.clone();
    let script = &frontier.scripts.join;
    let flat: Vec<redis::Value> = frontier.call(|c| {
        let mut inv = script.prepare_invoke();
        inv.arg(&prefix).arg(now_ms());
        for (k, v) in &args {
            inv.arg(k).arg(v);
        }
        inv.invoke(c)
    })?;
    let meta: HashMap<String, String> = flat
        .chunks(2)
        .filter_map(|p| match p {
            [k, v] => Some((
                String::from_utf8_lossy(&bytes(k)?).into_owned(),
                String::from_utf8_lossy(&bytes(v)?).into_owned(),
            )),
            _ => None,
        })
        .collect();
    let id = &target.crawl_id;
    let at = frontier.conn.borrow().shown().to_owned();
    if meta.is_empty() {
        bail!(
            "crawl id {id} does not exist on {at} yet, and this worker has no seed URLs: start the first worker with seeds (later ones may join without)"
        );
    }
    for (name, mine) in &me.parts {
        let Some(theirs) = meta.get(&format!("cfg:{name}")) else {
            bail!(
                "crawl id {id} on {at} was created by another sandcrawl version (it has no {name} description): use a new --crawl-id"
            );
        };
        if theirs != mine {
            bail!(
                "crawl id {id} on {at} runs with a different {}: run every worker with the same config, plugins and seeds, or use another --crawl-id",
                difference(name, mine, theirs)
            );
        }
    }
    let stored: Vec<String> = meta
        .get("seeds")
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_default();
    if !me.seeds.is_empty() && !stored.is_empty() {
        let a: BTreeSet<&String> = me.seeds.iter().collect();
        let b: BTreeSet<&String> = stored.iter().collect();
        if a != b {
            let extra = a.difference(&b).next().map(|s| s.as_str()).unwrap_or("");
            let missing = b.difference(&a).next().map(|s| s.as_str()).unwrap_or("");
            bail!(
                "crawl id {id} on {at} was seeded differently (here {}, in the crawl {}): seeds decide the default scope, so give every worker the same seeds (or none, to join with the crawl's), or use another --crawl-id",
                if extra.is_empty() {
                    "(none extra)"
                } else {
                    extra
                },
                if missing.is_empty() {
                    "(none extra)"
                } else {
                    missing
                }
            );
        }
    }
    let ckey = format!("{prefix}counters");
    let cflat: Vec<redis::Value> = frontier.call(|c| redis::cmd("HGETALL").arg(&ckey).query(c))?;
    let all = CrawlCounters::from_flat(&cflat);
    let counters = all.counters;
    let wkey = format!("{prefix}workers");
    let whash = format!("{prefix}w:{}", target.worker);
    let worker = target.worker.clone();
    let (beat, stopped, token): (Option<f64>, Option<f64>, Option<Vec<u8>>) =
        frontier.call(|c| {
            redis::pipe()
                .cmd("ZSCORE")
                .arg(&wkey)
                .arg(&worker)
                .cmd("HGET")
                .arg(&whash)
                .arg("stopped")
                .cmd("HGET")
                .arg(&whash)
                .arg("token")
                .query(c)
        })?;
    if all.finished() {
        return Ok(Joined::Finished(counters, token));
    }
    if let Some(beat) = beat {
        let age = now_ms().saturating_sub(beat as u64);
        let alive = stopped.is_none_or(|s| s < beat) && age < target.lease_ttl.as_millis() as u64;
        if alive {
            bail!(
                "worker name {} is in use in crawl {id} (its last heartbeat was {:.1} s ago): give this process another --worker name, or wait {} s if that process died",
                target.worker,
                age as f64 / 1000.0,
                target.lease_ttl.as_secs()
            );
        }
    }
    frontier.token = token;
    frontier.counters = counters;
    let _: i64 = frontier.call(|c| redis::cmd("HDEL").arg(&whash).arg("stopped").query(c))?;
    frontier.beat(true)?;
    Ok(Joined::Running {
        frontier: Box::new(frontier),
        seeds: if me.seeds.is_empty() {
            stored
        } else {
            me.seeds.clone()
        },
    })
}

/// "scope.max_depth (here 3, in the crawl 5)": the first key whose value differs, when both
/// are JSON objects; otherwise both values, shortened.
fn difference(name: &str, mine: &str, theirs: &str) -> String {
    let clip = |v: &serde_json::Value| {
        let s = v.to_string();
        if s.chars().count() > 120 {
            format!("{}…", s.chars().take(120).collect::<String>())
        } else {
            s
        }
    };
    let (a, b) = match (
        serde_json::from_str::<serde_json::Value>(mine),
        serde_json::from_str::<serde_json::Value>(theirs),
    ) {
        (Ok(a), Ok(b)) => (a, b),
        _ => return name.to_owned(),
    };
    if let (Some(ma), Some(mb)) = (a.as_object(), b.as_object()) {
        let keys: BTreeSet<&String> = ma.keys().chain(mb.keys()).collect();
        for k in keys {
            let (x, y) = (ma.get(k), mb.get(k));
            if x != y {
                let null = serde_json::Value::Null;
                return format!(
                    "{name}.{k} (here {}, in the crawl {})",
                    clip(x.unwrap_or(&null)),
                    clip(y.unwrap_or(&null))
                );
            }
        }
    }
    format!("{name} (here {}, in the crawl {})", clip(&a), clip(&b))
}

#[cfg(test)]
mod tests {
    use super::difference;

    #[test]
    fn the_first_differing_key_is_named() {
        assert_eq!(
            difference(
                "scope",
                r#"{"max_depth":3,"a":1}"#,
                r#"{"max_depth":5,"a":1}"#
            ),
            "scope.max_depth (here 3, in the crawl 5)"
        );
        assert_eq!(
            difference("plugins", r#"["quotes@0.1.0"]"#, r#"["products@0.1.0"]"#),
            r#"plugins (here ["quotes@0.1.0"], in the crawl ["products@0.1.0"])"#
        );
    }
}
