//! HTML text: escaping, and the page around the report's parts.
//!
//! Job names, host names, paths and error messages end up in the page;
//! every one of them goes through [`escape`], so that no configuration or
//! backup content can inject markup into a page an operator opens.

/// `text` with the five characters that matter in HTML text and attribute
/// values replaced by entities.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The style sheet: plain, printable, and the red and green of the
/// recovery point status.
const STYLE: &str = "body{font-family:sans-serif;margin:2em;color:#222;background:#fff}\
h1{font-size:1.5em}table{border-collapse:collapse;margin-bottom:2em}\
th,td{border:1px solid #bbb;padding:.3em .6em;text-align:left}\
td.ok{background:#2e7d32;color:#fff}td.missed{background:#c62828;color:#fff;font-weight:bold}\
.charts{display:flex;flex-wrap:wrap;gap:1.5em}figure.chart{margin:0}\
figcaption{font-weight:bold;margin-bottom:.3em}\
ul.legend{list-style:none;padding:0;margin:.3em 0}ul.legend li{display:inline-block;margin-right:1em}\
ul.legend span{display:inline-block;width:.8em;height:.8em;margin-right:.3em}\
p.empty{color:#777}p.note{color:#555;font-size:.9em}";

/// A whole page titled `title` around `body` (already HTML).
pub fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style></head><body>\n{body}\n</body></html>\n",
        escape(title)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_is_escaped() {
        assert_eq!(
            escape("<script>alert('x') & \"y\"</script>"),
            "&lt;script&gt;alert(&#39;x&#39;) &amp; &quot;y&quot;&lt;/script&gt;"
        );
        assert_eq!(escape("web-01"), "web-01");
        assert!(page("a<b", "<p>x</p>").contains("<title>a&lt;b</title>"));
    }
}
