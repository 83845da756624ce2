//! The `<meta>` prescan against html5lib's encoding-sniffing cases (`../shared/testdata/
//! html5lib-encoding`): each `#data` block is a document's first bytes and `#encoding` the
//! label a conforming sniffer returns with no transport charset. Those files give the HTML
//! default, windows-1252, for documents that declare nothing; sandcrawl's prescan returns
//! nothing there (and then detects, or takes UTF-8 for ASCII), so those cases check that the
//! prescan found no declaration.

use sandcrawl_e2e::root;

struct Case {
    file: String,
    data: Vec<u8>,
    encoding: String,
}

fn cases() -> Vec<Case> {
    let dir = root().join("../shared/testdata/html5lib-encoding");
    let mut out = Vec::new();
    for name in ["tests1.dat", "tests2.dat", "test-yahoo-jp.dat"] {
        let raw = std::fs::read(dir.join(name)).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (the team's testdata beside the repo)",
                dir.join(name).display()
            )
        });
        // Blocks: a "#data" line, the document's lines, a "#encoding" line, the label.
        let mut data: Option<Vec<u8>> = None;
        let mut expect_label = false;
        for line in raw.split(|&b| b == b'\n') {
            if line == b"#data" {
                data = Some(Vec::new());
            } else if line == b"#encoding" {
                expect_label = true;
            } else if expect_label {
                expect_label = false;
                if let Some(mut d) = data.take() {
                    d.pop(); // the newline before "#encoding"
                    out.push(Case {
                        file: name.to_owned(),
                        data: d,
                        encoding: String::from_utf8_lossy(line).trim().to_owned(),
                    });
                }
            } else if let Some(d) = data.as_mut() {
                d.extend_from_slice(line);
                d.push(b'\n');
            }
        }
    }
    out
}

#[test]
fn html5lib_encoding_cases_pass_the_prescan() {
    let all = cases();
    assert!(all.len() >= 70, "read {} cases", all.len());
    let mut failures = Vec::new();
    let mut beyond = 0;
    for c in &all {
        let want = encoding_rs::Encoding::for_label(c.encoding.as_bytes())
            .map(|e| e.name())
            .unwrap_or("?");
        let head = &c.data[..c.data.len().min(1024)];
        if c.data.starts_with(b"\xEF\xBB\xBF") {
            // A byte order mark decides before any <meta>.
            let got = sandcrawl::charset::detect(&[], &c.data);
            if got != want {
                failures.push(format!("{}: want {want} (BOM), got {got}", c.file));
            }
            continue;
        }
        let got = sandcrawl::charset::prescan(head).map(|e| e.name());
        let meta_in_head = head.windows(5).any(|w| w.eq_ignore_ascii_case(b"<meta"));
        let ok = match got {
            Some(g) => g == want,
            // The HTML default for an undeclared document.
            None if want == "windows-1252" => true,
            // A declaration after the first 1,024 bytes (behind a long comment or script):
            // html5lib's sniffer reads on, sandcrawl's prescan stops at 1,024 bytes as the
            // standard allows, and detection takes over.
            None => {
                beyond += 1;
                !meta_in_head
            }
        };
        if !ok {
            failures.push(format!(
                "{}: want {want}, prescan {got:?}: {:?}",
                c.file,
                String::from_utf8_lossy(&c.data[..c.data.len().min(200)])
            ));
        }
    }
    eprintln!("{beyond} cases declare their encoding after the first 1,024 bytes");
    assert!(beyond <= 8, "{beyond}");
    assert!(
        failures.is_empty(),
        "{} of {} fail:\n{}",
        failures.len(),
        all.len(),
        failures.join("\n")
    );
}
