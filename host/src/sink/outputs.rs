//! Several outputs at once (`--out items.jsonl --out postgres://…`): every page's items go to
//! each, and a page counts as durable once every output has it. It owns the combined commit
//! token, one entry per output under the output's key (a path, or a URL with its password
//! masked), so resume is exact for each. One output keeps its own token unchanged, so a
//! state written before several outputs existed still resumes. It must not know formats.

use super::{Item, Sink};
use anyhow::{Context as _, Result};
use serde_json::value::RawValue;
use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::pin::Pin;

pub struct Outputs {
    outs: Vec<(String, Box<dyn Sink>)>,
    /// Pages written and not yet durable everywhere: (our ticket, each output's ticket).
    waiting: VecDeque<(u64, Vec<u64>)>,
    sent: u64,
    durable: u64,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Combined<'a> {
    #[serde(borrow)]
    outputs: BTreeMap<String, &'a RawValue>,
}

impl Outputs {
    pub fn new(outs: Vec<(String, Box<dyn Sink>)>) -> Self {
        Outputs {
            outs,
            waiting: VecDeque::new(),
            sent: 0,
            durable: 0,
        }
    }

    /// Splits a stored token into each output's part, by key. A token from a single output
    /// (or from before several outputs existed) belongs to the first output.
    pub fn split(keys: &[String], token: Option<&[u8]>) -> Result<Vec<Option<Vec<u8>>>> {
        let Some(raw) = token else {
            return Ok(vec![None; keys.len()]);
        };
        if keys.len() > 1
            && let Ok(c) = serde_json::from_slice::<Combined<'_>>(raw)
        {
            return Ok(keys
                .iter()
                .map(|k| c.outputs.get(k).map(|v| v.get().as_bytes().to_vec()))
                .collect());
        }
        let mut parts = vec![None; keys.len()];
        if let Some(first) = parts.first_mut() {
            *first = Some(raw.to_vec());
        }
        Ok(parts)
    }

    /// Joins each output's token into one (the inverse of [`Outputs::split`]).
    pub fn join(parts: &[(String, Vec<u8>)]) -> Vec<u8> {
        if let [(_, only)] = parts {
            return only.clone();
        }
        let mut outputs = BTreeMap::new();
        for (k, t) in parts {
            let v =
                serde_json::from_slice::<serde_json::Value>(t).unwrap_or(serde_json::Value::Null);
            outputs.insert(k.clone(), v);
        }
        serde_json::to_vec(&serde_json::json!({ "outputs": outputs })).unwrap_or_default()
    }
}

impl Sink for Outputs {
    fn write_page(&mut self, items: &[Item]) -> Result<u64> {
        let mut tickets = Vec::with_capacity(self.outs.len());
        for (_, s) in &mut self.outs {
            tickets.push(s.write_page(items)?);
        }
        self.sent += 1;
        self.waiting.push_back((self.sent, tickets));
        Ok(self.sent)
    }

    fn durable(&mut self) -> Result<u64> {
        let mut marks = Vec::with_capacity(self.outs.len());
        for (_, s) in &mut self.outs {
            marks.push(s.durable()?);
        }
        while let Some((t, tickets)) = self.waiting.front() {
            if tickets.iter().zip(&marks).all(|(want, have)| want <= have) {
                self.durable = *t;
                self.waiting.pop_front();
            } else {
                break;
            }
        }
        Ok(self.durable)
    }

    fn changed(&mut self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        let futs: Vec<_> = self.outs.iter_mut().map(|(_, s)| s.changed()).collect();
        Box::pin(async move {
            futures_util::future::select_all(futs).await;
        })
    }

    fn write_response(&mut self, capture: &crate::warc::Capture<'_>) -> Result<()> {
        for (_, s) in &mut self.outs {
            s.write_response(capture)?;
        }
        Ok(())
    }

    fn backlog(&self) -> usize {
        self.outs
            .iter()
            .map(|(_, s)| s.backlog())
            .max()
            .unwrap_or(0)
    }

    fn commit_token(&self) -> Vec<u8> {
        let parts: Vec<(String, Vec<u8>)> = self
            .outs
            .iter()
            .map(|(k, s)| (k.clone(), s.commit_token()))
            .collect();
        Outputs::join(&parts)
    }

    fn sync(&mut self) -> Result<()> {
        for (k, s) in &mut self.outs {
            s.sync().with_context(|| format!("syncing output {k}"))?;
        }
        Ok(())
    }

    /// The first output's count: every output gets the same items.
    fn items_written(&self) -> u64 {
        self.outs.first().map_or(0, |(_, s)| s.items_written())
    }

    fn describe(&self) -> String {
        self.outs
            .iter()
            .map(|(_, s)| s.describe())
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn rejected(&self) -> BTreeMap<String, u64> {
        // Each output refuses on its own (one may take what another's table cannot).
        let mut all = BTreeMap::new();
        for (_, s) in &self.outs {
            for (k, v) in s.rejected() {
                *all.entry(format!("{k} in {}", s.describe())).or_default() += v;
            }
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_split_and_join_by_key() {
        let keys = vec!["a.jsonl".to_owned(), "postgres://h/db".to_owned()];
        let joined = Outputs::join(&[
            (keys[0].clone(), br#"{"len":5,"items":1}"#.to_vec()),
            (keys[1].clone(), br#"{"sql":{"items":1}}"#.to_vec()),
        ]);
        let parts = Outputs::split(&keys, Some(&joined)).unwrap();
        let json = |b: &Option<Vec<u8>>| -> serde_json::Value {
            serde_json::from_slice(b.as_deref().unwrap_or(b"null")).unwrap()
        };
        assert_eq!(json(&parts[0]), serde_json::json!({"len": 5, "items": 1}));
        assert_eq!(json(&parts[1]), serde_json::json!({"sql": {"items": 1}}));
        // One output: its token as it always was; an older single token goes to the first.
        let one = Outputs::join(&[(keys[0].clone(), b"{\"len\":1,\"items\":1}".to_vec())]);
        assert_eq!(one, b"{\"len\":1,\"items\":1}");
        let parts = Outputs::split(&keys, Some(&one)).unwrap();
        assert_eq!(parts[0].as_deref(), Some(&one[..]));
        assert_eq!(parts[1], None);
    }
}
