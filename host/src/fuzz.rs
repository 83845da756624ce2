//! Property tests run in CI with a fixed budget (proptest's default 256 cases per property,
//! or `PROPTEST_CASES`): the parsers that take outside input must never panic, and the ones
//! with an invariant keep it. A failing case proptest finds becomes a plain regression test
//! in the module it concerns.

use proptest::prelude::*;

/// URL-ish text: mostly real URL shapes with hostile pieces mixed in.
fn urlish() -> impl Strategy<Value = String> {
    let part = prop_oneof![
        "[a-zA-Z0-9._~-]{0,12}",
        Just("%".to_owned()),
        Just("%zz".to_owned()),
        Just("..".to_owned()),
        Just("utm_source=x".to_owned()),
        "[\\PC]{0,4}",
        "[\\x00-\\x1f]{0,2}",
    ];
    (
        prop_oneof![
            Just("http://"),
            Just("https://"),
            Just("HTTP://"),
            Just(""),
            Just("ftp://")
        ],
        "[a-z0-9.-]{0,12}",
        prop_oneof![Just(""), Just(":8080"), Just(":0"), Just(":99999")],
        proptest::collection::vec(part.clone(), 0..6),
        proptest::collection::vec((part.clone(), part), 0..4),
        prop_oneof![Just(""), Just("#frag")],
    )
        .prop_map(|(scheme, host, port, path, query, frag)| {
            let q: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!(
                "{scheme}{host}{port}/{}{}{}{frag}",
                path.join("/"),
                if q.is_empty() { "" } else { "?" },
                q.join("&")
            )
        })
}

proptest! {
    #[test]
    fn normalization_never_panics_and_is_idempotent(raw in urlish()) {
        let norm = crate::normalize::NormalizeConfig::default();
        if let Some(u) = norm.normalize(&raw) {
            let again = norm.normalize(u.as_str());
            prop_assert_eq!(again.as_ref().map(url::Url::as_str), Some(u.as_str()));
            prop_assert_eq!(crate::normalize::fingerprint(&u), crate::normalize::fingerprint(&u));
            let _ = crate::normalize::host_key(&u);
        }
    }

    #[test]
    fn robots_parsing_never_panics(body in proptest::collection::vec(any::<u8>(), 0..2048), path in urlish()) {
        let r = crate::robots::Robots::parse("sandcrawl", &body);
        let _ = r.allowed_str(&path);
        prop_assert!(r.allowed_str("http://a.test/robots.txt"));
    }

    #[test]
    fn robots_text_with_rules_never_panics(lines in proptest::collection::vec(
        prop_oneof![
            Just("User-agent: *".to_owned()),
            Just("User-agent: sandcrawl".to_owned()),
            "Disallow: [\\PC]{0,16}",
            "Allow: [\\PC]{0,16}",
            "Crawl-delay: [0-9.e+-]{0,8}",
            "[\\PC]{0,24}",
        ], 0..20), path in urlish()) {
        let r = crate::robots::Robots::parse("sandcrawl", lines.join("\n").as_bytes());
        let _ = r.allowed_str(&path);
        if let Some(d) = r.crawl_delay {
            prop_assert!(d <= std::time::Duration::from_secs(3600));
        }
    }

    #[test]
    fn set_parsing_never_panics(key in "[a-z_.]{0,24}", value in "[\\PC]{0,24}") {
        if let Ok(kv) = crate::config::parse_set(&format!("{key}={value}")) {
            let _ = crate::config::CrawlConfig::load(None, &[kv]);
        }
        let _ = crate::config::parse_set(&value);
    }

    #[test]
    fn item_validation_never_panics_and_keeps_one_line_objects(json in prop_oneof![
        "[\\PC\\n\\r]{0,64}",
        "\\{(\"[a-z]{0,4}\":[ \\n]?(-?[0-9]{1,30}(\\.[0-9]{1,30})?|\"[\\PC]{0,8}\"|true|null|\\[\\]),?){0,4}\\}",
    ]) {
        let item = crate::plugin::validate_item_for_fuzzing(json);
        if let Ok(i) = item {
            prop_assert!(!i.json.get().contains('\n'));
            let v: serde_json::Value = serde_json::from_str(i.json.get()).expect("kept JSON parses");
            prop_assert!(v.is_object());
        }
    }

    #[test]
    fn escaped_text_has_no_control_characters(text in "[\\PC\\x00-\\x1f\\x7f\\u{80}-\\u{9f}\\u{202a}-\\u{202e}]{0,64}") {
        let e = crate::escape::escape(&text);
        prop_assert!(!crate::escape::has_control(&e));
    }
}
