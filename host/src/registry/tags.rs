//! `list-tags`: `GET /v2/<repo>/tags/list`, following `Link` pagination.

use std::collections::HashSet;
use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};

use super::Client;
use super::error::RegError;

/// Page size asked for; registries may return fewer and paginate.
const PAGE_SIZE: u32 = 1000;
/// A page of tags is JSON: bounded, generous.
const MAX_PAGE_BYTES: usize = 16 * 1024 * 1024;
/// A registry that paginates forever is broken; stop somewhere.
const MAX_PAGES: usize = 10_000;

impl Client {
    /// All tags of `repo`, in the registry's order, across pages. With a
    /// timeout the whole listing must finish within it.
    pub async fn list_tags(
        &self,
        repo: &str,
        timeout: Option<Duration>,
    ) -> Result<Vec<String>, RegError> {
        let full = self.full_repo(repo)?;
        let listing = self.list_all_pages(&full);
        match timeout {
            None => listing.await,
            Some(limit) => match tokio::time::timeout(limit, listing).await {
                Ok(result) => result,
                Err(_) => Err(RegError::timeout(format!(
                    "listing tags of {}: timed out after {}",
                    self.display_repo(&full),
                    humanize(limit)
                ))),
            },
        }
    }

    async fn list_all_pages(&self, full: &str) -> Result<Vec<String>, RegError> {
        let first = self.url(&format!("{full}/tags/list"))?;
        let mut url = first.clone();
        url.query_pairs_mut()
            .append_pair("n", &PAGE_SIZE.to_string());
        let what = format!("listing tags of {}", self.display_repo(full));
        let mut seen = HashSet::new();
        let mut tags = Vec::new();
        let mut sized_request = true;
        while seen.insert(url.to_string()) {
            if seen.len() > MAX_PAGES {
                return Err(RegError::other(format!(
                    "{what}: more than {MAX_PAGES} pages"
                )));
            }
            let answer = self
                .fetch_small(
                    Method::GET,
                    &url,
                    &HeaderMap::new(),
                    full,
                    &what,
                    MAX_PAGE_BYTES,
                )
                .await?;
            if answer.status == StatusCode::BAD_REQUEST && sized_request {
                // Some registries refuse `n`; ask again with their default size.
                sized_request = false;
                url = first.clone();
                seen.clear();
                continue;
            }
            sized_request = false;
            answer.error_unless_success(&what)?;
            let next = answer
                .headers
                .get_all(reqwest::header::LINK)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .find_map(next_link);
            tags.extend(
                parse_tag_page(&answer.body)
                    .map_err(|e| RegError::other(format!("{what}: {e}")))?,
            );
            match next {
                None => break,
                Some(link) => {
                    let next_url = url.join(&link).map_err(|e| {
                        RegError::other(format!("{what}: bad Link header {link:?}: {e}"))
                    })?;
                    if next_url.origin() != url.origin() {
                        return Err(RegError::other(format!(
                            "{what}: the next page is on another server ({}), which is not followed",
                            next_url.origin().ascii_serialization()
                        )));
                    }
                    url = next_url;
                }
            }
        }
        Ok(tags)
    }
}

/// The tags of one `tags/list` page; `"tags": null` means none.
pub fn parse_tag_page(body: &[u8]) -> Result<Vec<String>, String> {
    #[derive(serde::Deserialize)]
    struct Page {
        tags: Option<Vec<String>>,
    }
    serde_json::from_slice::<Page>(body)
        .map(|p| p.tags.unwrap_or_default())
        .map_err(|e| format!("unexpected tag list: {e}"))
}

/// The target of the `rel="next"` link in a `Link` header value, as written
/// (relative or absolute). Several links may share one header.
pub fn next_link(header: &str) -> Option<String> {
    let mut rest = header;
    while let Some(open) = rest.find('<') {
        let after = &rest[open + 1..];
        let close = after.find('>')?;
        let target = &after[..close];
        let params_end = after[close + 1..]
            .find('<')
            .map_or(after.len(), |i| close + 1 + i);
        let params = &after[close + 1..params_end];
        let is_next = params.split(';').any(|p| {
            let Some((key, value)) = p.split_once('=') else {
                return false;
            };
            key.trim().eq_ignore_ascii_case("rel")
                && value
                    .trim()
                    .trim_end_matches(',')
                    .trim()
                    .trim_matches('"')
                    .split_ascii_whitespace()
                    .any(|r| r.eq_ignore_ascii_case("next"))
        });
        if is_next {
            return Some(target.to_owned());
        }
        rest = &after[params_end..];
    }
    None
}

fn humanize(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::Url;

    #[test]
    fn finds_the_next_link() {
        assert_eq!(
            next_link(r#"</v2/a/tags/list?last=x&n=1000>; rel="next""#),
            Some("/v2/a/tags/list?last=x&n=1000".into())
        );
        assert_eq!(
            next_link(r#"<https://r.example/v2/a/tags/list?last=x>; rel=next"#),
            Some("https://r.example/v2/a/tags/list?last=x".into())
        );
        assert_eq!(
            next_link(r#"</p1>; rel="prev", </p3>; rel="next""#),
            Some("/p3".into())
        );
        assert_eq!(
            next_link(r#"</p>; title="x"; REL="Next""#),
            Some("/p".into())
        );
        assert_eq!(next_link(r#"</p1>; rel="prev""#), None);
        assert_eq!(next_link(""), None);
        assert_eq!(next_link("<broken"), None);
    }

    #[test]
    fn relative_links_resolve_against_the_page() {
        let page = Url::parse("http://127.0.0.1:5000/v2/root/packages/tags/list?n=1000").unwrap();
        let next = next_link(r#"</v2/root/packages/tags/list?last=b&n=1000>; rel="next""#).unwrap();
        assert_eq!(
            page.join(&next).unwrap().as_str(),
            "http://127.0.0.1:5000/v2/root/packages/tags/list?last=b&n=1000"
        );
    }

    #[test]
    fn tag_pages() {
        assert_eq!(
            parse_tag_page(br#"{"name":"a","tags":["v1","v2"]}"#),
            Ok(vec!["v1".into(), "v2".into()])
        );
        assert_eq!(parse_tag_page(br#"{"name":"a","tags":null}"#), Ok(vec![]));
        assert!(parse_tag_page(b"<html>").is_err());
    }
}
