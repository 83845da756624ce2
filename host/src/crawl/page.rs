//! One fetched response, turned into a result: a page routed to the plugins whose patterns
//! match it (items built, links gathered, the built-in link follower for pages no plugin
//! claims), or a download stored and described. It must not queue, count or write anything;
//! the scheduler commits what this returns.

use super::outcome::{FailureKind, PluginRun, RunResult, Work};
use super::worker::Shared;
use crate::fetch::Response;
use crate::frontier::Lease;
use crate::normalize::Fingerprint;
use crate::plugin::{LinkKind, PageInput, Plugin, PluginError};
use crate::sink::{Item, PluginRef};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::SystemTime;
use url::Url;

/// Whether any of `plugin`'s URL patterns could match a URL of this crawl: a seed, or a URL
/// on an allowed domain (subdomains included) or origin. A pattern without a scheme and host
/// (`*/shop/*`) could match anything.
pub fn can_match_anything(
    plugin: &Plugin,
    seeds: &[Url],
    scope: &crate::config::ScopeConfig,
) -> bool {
    if seeds.iter().any(|u| plugin.matches(u.as_str())) {
        return true;
    }
    let mut domains: Vec<String> = if scope.allowed_domains.is_empty() {
        seeds
            .iter()
            .filter_map(|u| u.host_str().map(str::to_owned))
            .collect()
    } else {
        scope
            .allowed_domains
            .iter()
            .map(|d| {
                let d = d.trim().trim_start_matches("*.");
                d.rsplit_once(':').map_or(d, |(h, _)| h).to_owned()
            })
            .collect()
    };
    domains.extend(
        scope
            .allowed_origins
            .iter()
            .filter_map(|o| Url::parse(o).ok()?.host_str().map(str::to_owned)),
    );
    plugin.info.patterns.iter().any(|p| {
        let Some((_, rest)) = p.split_once("://") else {
            return true;
        };
        let authority = rest.split('/').next().unwrap_or(rest).to_ascii_lowercase();
        let host = authority
            .rsplit_once(':')
            .map_or(authority.as_str(), |(h, _)| h);
        let glob = globset::GlobBuilder::new(host)
            .literal_separator(false)
            .build()
            .map(|g| g.compile_matcher());
        domains.iter().any(|d| {
            let d = d.to_ascii_lowercase();
            // The pattern's host is the domain or one of its subdomains, or its wildcard
            // matches the domain itself.
            host == d
                || host.ends_with(&format!(".{d}"))
                || glob
                    .as_ref()
                    .is_ok_and(|m| m.is_match(&d) || m.is_match(format!("x.{d}")))
        })
    })
}

/// The fingerprint a page's item ids come from: its lease's, or (after redirects) its final
/// URL's, so every alias of a page gives the same ids.
pub(super) fn page_key(
    shared: &Shared,
    lease: &Lease,
    final_url: &url::Url,
    aliases: &[Fingerprint],
) -> Fingerprint {
    if aliases.is_empty() {
        lease.fp
    } else {
        shared.normalize.fingerprint(final_url)
    }
}

fn item_id(fp: &[u8], plugin: &str, n: usize) -> String {
    let mut h = Sha256::new();
    h.update(fp);
    h.update(plugin.as_bytes());
    h.update((n as u64).to_be_bytes());
    hex::encode(&h.finalize()[..10])
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

pub(super) fn download(
    shared: &Arc<Shared>,
    lease: &Lease,
    resp: Response,
    aliases: Vec<Fingerprint>,
) -> Work {
    let stored = match &resp.file {
        Some(body) => shared
            .files
            .adopt(body, &resp.final_url, resp.header("content-type")),
        // A body the fetcher kept in memory (a 2xx is always streamed; this is the rest).
        None => shared
            .files
            .save(&resp.body, &resp.final_url, resp.header("content-type")),
    };
    let mut resp = resp;
    let stored = match stored {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(url = %resp.final_url, "cannot store download: {e:#}");
            return Work::Failed {
                kind: FailureKind::DownloadStore,
                cause: format!("{e:#}"),
                status: Some(resp.status),
            };
        }
    };
    let proposer = lease.record.proposer.clone().unwrap_or_default();
    let plugin = shared
        .roster
        .current()
        .iter()
        .map(|a| &a.plugin)
        .find(|p| p.info.name == proposer)
        .map(|p| PluginRef {
            name: p.info.name.clone(),
            version: p.info.version.clone(),
            sha256: p.info.sha256.clone(),
        })
        .unwrap_or(PluginRef {
            name: "sandcrawl".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            sha256: String::new(),
        });
    // A struct, not a map: the record's fields come out in this order (a map sorts them).
    #[derive(serde::Serialize)]
    struct FileRecord<'a> {
        sha256: &'a str,
        path: &'a str,
        size: u64,
        content_type: &'a str,
        referrer: Option<&'a str>,
    }
    let fields = FileRecord {
        sha256: &stored.sha256,
        path: &stored.path,
        size: stored.size,
        content_type: resp.header("content-type").unwrap_or(""),
        referrer: lease.record.referrer.as_deref(),
    };
    let item = Item {
        id: item_id(&shared.normalize.fingerprint(&resp.final_url), "file", 0),
        url: resp.final_url.to_string(),
        fetched_at: now_rfc3339(),
        plugin,
        kind: "file".into(),
        fields: match serde_json::value::to_raw_value(&fields) {
            Ok(raw) => raw,
            Err(e) => {
                tracing::error!(url = %resp.final_url, "cannot encode a download record: {e}");
                return Work::Failed {
                    kind: FailureKind::DownloadStore,
                    cause: e.to_string(),
                    status: Some(resp.status),
                };
            }
        },
    };
    // The body now lives at its content-addressed place (the WARC output reads it there).
    if let Some(f) = resp.file.as_mut() {
        f.path = shared.files.path_of(&stored.path);
    }
    Work::Download {
        resp: Box::new(resp),
        item: Some(item),
        new_file: stored.new,
        aliases,
    }
}

pub(super) async fn parse_page(
    shared: &Arc<Shared>,
    lease: &Lease,
    resp: Response,
    aliases: Vec<Fingerprint>,
) -> Work {
    let page_fp = page_key(shared, lease, &resp.final_url, &aliases);
    let url_str = resp.final_url.as_str();
    // The builds current now parse this page, even if `--watch` swaps one meanwhile.
    let roster = shared.roster.current();
    let matching: Vec<&super::roster::Active> = roster
        .iter()
        .filter(|a| a.enabled && a.plugin.matches(url_str))
        .map(|a| a.as_ref())
        .collect();
    let headers = resp.headers_for_plugin();
    let input = Arc::new(PageInput {
        url: url_str.to_owned(),
        status: resp.status,
        headers,
        body: resp.body.clone(),
        encoding: resp.encoding.to_owned(),
        depth: lease.record.depth,
        referrer: lease.record.referrer.clone(),
        metadata: lease.record.metadata.clone(),
        method: resp.method,
    });
    let fetched_at = now_rfc3339();
    let mut items = Vec::new();
    let mut links = Vec::new();
    let mut runs: Vec<PluginRun> = Vec::new();
    let mut claimed = false;
    let mut disabled_only: Option<String> = None;
    let matched = !matching.is_empty();
    for active in matching {
        let info = &active.plugin.info;
        let name = Arc::clone(&active.name);
        // Checked again once the call has its slot: pages waiting for one when the plugin is
        // disabled must not start a call.
        let call = match active.health.disabled() {
            Some(_) => None,
            None => {
                active
                    .plugin
                    .parse_timed_if(&input, || active.health.disabled().is_none())
                    .await
            }
        };
        let Some((result, took)) = call else {
            let why = active.health.disabled().unwrap_or_default();
            runs.push((name, RunResult::Disabled, std::time::Duration::ZERO));
            disabled_only.get_or_insert_with(|| format!("plugin {} is disabled: {why}", info.name));
            continue;
        };
        if let Some(why) = active.health.record(&result) {
            tracing::warn!(plugin = %info.name, "disabled for the rest of the crawl: {why}");
        }
        match result {
            Ok(out) => {
                claimed = true;
                let (ni, nl) = (out.items.len() as u64, out.links.len() as u64);
                for (n, it) in out.items.into_iter().enumerate() {
                    items.push(Item {
                        id: item_id(&page_fp, &info.name, n),
                        url: url_str.to_owned(),
                        fetched_at: fetched_at.clone(),
                        plugin: PluginRef {
                            name: info.name.clone(),
                            version: info.version.clone(),
                            sha256: info.sha256.clone(),
                        },
                        kind: it.kind,
                        fields: it.json,
                    });
                }
                links.extend(out.links.into_iter().map(|l| (l, Some(info.name.clone()))));
                runs.push((
                    name,
                    RunResult::Parsed {
                        items: ni,
                        links: nl,
                    },
                    took,
                ));
            }
            Err(PluginError::NotMine) => {
                runs.push((name, RunResult::Failed(PluginError::NotMine), took))
            }
            Err(e) => {
                claimed = true;
                tracing::warn!(plugin = %info.name, url = %url_str, "plugin error: {e}");
                runs.push((name, RunResult::Failed(e), took));
            }
        }
    }
    // Every plugin that claims this page is disabled: the page fails with that reason,
    // rather than passing for a page nobody wanted (the link follower does not read it).
    let all_disabled = matched
        && runs
            .iter()
            .all(|(_, r, _)| matches!(r, RunResult::Disabled));
    if all_disabled && let Some(cause) = disabled_only {
        return Work::Failed {
            kind: FailureKind::PluginDisabled,
            cause,
            status: Some(resp.status),
        };
    }
    let mut links_dropped = 0;
    if !claimed && shared.follow_unclaimed && resp.is_html() {
        let found = crate::extract::extract(
            &resp.final_url,
            &resp.body,
            resp.encoding,
            shared.follow_max_links,
        );
        links_dropped = found.dropped;
        if found.dropped > 0 {
            tracing::info!(url = %resp.final_url, kept = found.links.len(), dropped = found.dropped, "more links than follow_max_links on one page; the rest are skipped");
        }
        for u in found.links {
            links.push((
                crate::plugin::LinkOut {
                    url: u.to_string(),
                    priority: 0,
                    kind: LinkKind::Follow,
                    metadata: None,
                    request: None,
                },
                None,
            ));
        }
    }
    Work::Page {
        resp: Box::new(resp),
        items,
        links,
        links_dropped,
        plugin_runs: runs,
        aliases,
    }
}
