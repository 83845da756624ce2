//! Google's robots.txt compliance cases (../shared/testdata/robotstxt-spec-test), read from
//! the files at test time: every STANDARD expectation must pass through sandcrawl's robots
//! module. GOOGLE_SPECIFIC ones are Google-crawler behaviour beyond RFC 9309 and are only
//! counted.

use sandcrawl::robots::Robots;
use std::path::PathBuf;

#[derive(Debug, PartialEq)]
enum Tok {
    Ident(String),
    Str(Vec<u8>),
    Punct(char),
}

fn tokenize(src: &str) -> Vec<Tok> {
    let b = src.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    while i < b.len() {
        let c = b[i];
        if c == b'#' {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if c.is_ascii_whitespace() {
            i += 1;
        } else if c == b'"' {
            i += 1;
            let mut s = Vec::new();
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' && i + 1 < b.len() {
                    i += 1;
                    match b[i] {
                        b'n' => s.push(b'\n'),
                        b'r' => s.push(b'\r'),
                        b't' => s.push(b'\t'),
                        b'x' => {
                            let hex = std::str::from_utf8(&b[i + 1..i + 3]).expect("hex escape");
                            s.push(u8::from_str_radix(hex, 16).expect("hex"));
                            i += 2;
                        }
                        d @ b'0'..=b'7' => {
                            let mut v = u32::from(d - b'0');
                            let mut k = 0;
                            while k < 2 && i + 1 < b.len() && (b'0'..=b'7').contains(&b[i + 1]) {
                                i += 1;
                                v = v * 8 + u32::from(b[i] - b'0');
                                k += 1;
                            }
                            s.push(v as u8);
                        }
                        other => s.push(other),
                    }
                } else {
                    s.push(b[i]);
                }
                i += 1;
            }
            i += 1;
            // Adjacent literals concatenate, as in C.
            if let Some(Tok::Str(prev)) = out.last_mut() {
                prev.extend(s);
            } else {
                out.push(Tok::Str(s));
            }
        } else if c.is_ascii_alphanumeric() || c == b'_' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            out.push(Tok::Ident(src[start..i].to_owned()));
        } else {
            out.push(Tok::Punct(c as char));
            i += 1;
        }
    }
    out
}

struct Case {
    file: String,
    robots: Vec<u8>,
    url: String,
    agent: String,
    allowed: bool,
    standard: bool,
}

fn cases() -> Vec<Case> {
    let dir = std::env::var_os("SANDCRAWL_TESTDATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| sandcrawl_e2e::root().join("../shared/testdata"))
        .join("robotstxt-spec-test/correctness");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e} (the shared test data must sit beside the repo)",
                dir.display()
            )
        })
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "textproto"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).expect("read textproto");
        let toks = tokenize(&text);
        let (mut robots, mut url, mut agent, mut outcome, mut ty) =
            (Vec::new(), None, None, None, None);
        let mut i = 0;
        while i < toks.len() {
            match &toks[i] {
                Tok::Ident(k) if matches!(toks.get(i + 1), Some(Tok::Punct(':'))) => {
                    let v = toks.get(i + 2);
                    match (k.as_str(), v) {
                        ("robotstxt", Some(Tok::Str(s))) => robots = s.clone(),
                        ("testurl", Some(Tok::Str(s))) => {
                            url = Some(String::from_utf8_lossy(s).into_owned())
                        }
                        ("useragent", Some(Tok::Str(s))) => {
                            agent = Some(String::from_utf8_lossy(s).into_owned())
                        }
                        ("expected_outcome", Some(Tok::Ident(s))) => outcome = Some(s == "ALLOWED"),
                        ("test_type", Some(Tok::Ident(s))) => ty = Some(s.clone()),
                        _ => {}
                    }
                    i += 3;
                }
                Tok::Punct('}') => {
                    if let (Some(u), Some(a), Some(o)) = (url.take(), agent.take(), outcome.take())
                    {
                        out.push(Case {
                            file: f
                                .file_name()
                                .map(|n| n.to_string_lossy().into_owned())
                                .unwrap_or_default(),
                            robots: robots.clone(),
                            url: u,
                            agent: a,
                            allowed: o,
                            standard: ty.take().is_none_or(|t| t == "STANDARD"),
                        });
                    }
                    ty = None;
                    i += 1;
                }
                _ => i += 1,
            }
        }
    }
    out
}

#[test]
fn google_compliance_cases_standard_all_pass() {
    let all = cases();
    assert_eq!(all.len(), 146, "the data set has 146 expectations");
    let mut failures = Vec::new();
    let mut google_specific = (0, 0);
    for c in &all {
        let robots = Robots::parse(&c.agent, &c.robots);
        let got = robots.allowed_str(&c.url);
        if c.standard {
            if got != c.allowed {
                failures.push(format!(
                    "{}: agent {:?} url {} expected {} got {} robots {:?}",
                    c.file,
                    c.agent,
                    c.url,
                    if c.allowed { "ALLOWED" } else { "DISALLOWED" },
                    if got { "ALLOWED" } else { "DISALLOWED" },
                    String::from_utf8_lossy(&c.robots)
                ));
            }
        } else {
            google_specific.0 += 1;
            if got == c.allowed {
                google_specific.1 += 1;
            }
        }
    }
    eprintln!(
        "GOOGLE_SPECIFIC: {}/{} match Google's crawler",
        google_specific.1, google_specific.0
    );
    assert!(
        failures.is_empty(),
        "{} STANDARD cases fail:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
