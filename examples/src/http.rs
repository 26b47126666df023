// SPDX-License-Identifier: MIT OR Apache-2.0
//! Small HTTP helpers of the programs that serve pages (`viewer`) over `tiny_http`: query
//! parameters, HTML escaping, responses that are never cached.

/// The value of `name` in the URL's query string, percent-decoded.
pub fn query_param(url: &str, name: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(key) == name).then(|| percent_decode(value))
    })
}

/// Decodes `%XX` escapes and `+` (a space in a query string); a malformed escape stays as
/// it is, invalid UTF-8 becomes U+FFFD.
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'+', _) => out.push(b' '),
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 2;
            }
            (b, _) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `s` safe inside HTML text and attribute values.
pub fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Answers `request` with `body`, never cached. A client that went away is no concern of
/// ours: the error is dropped.
pub fn respond(request: tiny_http::Request, status: u16, content_type: &str, body: Vec<u8>) {
    let header = |name: &str, value: &str| {
        tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes())
            .expect("constant header names and values are valid")
    };
    let response = tiny_http::Response::from_data(body)
        .with_status_code(status)
        .with_header(header("Content-Type", content_type))
        .with_header(header("Cache-Control", "no-store"));
    let _ = request.respond(response);
}

/// Answers with plain UTF-8 text.
pub fn respond_text(request: tiny_http::Request, status: u16, text: &str) {
    respond(
        request,
        status,
        "text/plain; charset=utf-8",
        text.as_bytes().to_vec(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_are_found_and_decoded() {
        let url = "/stream?x=1&camera=cam%201+b&bad=%zz";
        assert_eq!(query_param(url, "camera").as_deref(), Some("cam 1 b"));
        assert_eq!(query_param(url, "bad").as_deref(), Some("%zz"));
        assert_eq!(query_param(url, "none"), None);
        assert_eq!(query_param("/stream", "camera"), None);
        assert_eq!(query_param("/?flag", "flag").as_deref(), Some(""));
        assert_eq!(percent_decode("%e2%82%ac%"), "€%");
    }

    #[test]
    fn html_special_characters_are_escaped() {
        assert_eq!(
            html_escape(r#"<a href="x">&</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&lt;/a&gt;"
        );
    }
}
