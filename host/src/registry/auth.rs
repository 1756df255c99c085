//! Credentials and the registry token flow (parsing `WWW-Authenticate`).

use std::collections::HashMap;

/// A login and password for the source registry. `Debug` hides the password so
/// that credentials cannot leak through a stray `{:?}`.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// What a registry asked for in a `401` answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

/// Parses one `WWW-Authenticate` value: a scheme followed by comma-separated
/// `key=value` or `key="quoted value"` parameters. Unknown schemes → `None`.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header
        .split_once(|c: char| c.is_ascii_whitespace())
        .unwrap_or((header, ""));
    let params = parse_params(rest);
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => Some(Challenge::Basic),
        "bearer" => Some(Challenge::Bearer {
            realm: params.get("realm")?.clone(),
            service: params.get("service").cloned(),
            scope: params.get("scope").cloned(),
        }),
        _ => None,
    }
}

/// Picks the most useful challenge among several headers: Bearer over Basic.
pub fn best_challenge<'a>(headers: impl Iterator<Item = &'a str>) -> Option<Challenge> {
    let mut found: Option<Challenge> = None;
    for h in headers {
        match parse_challenge(h) {
            Some(c @ Challenge::Bearer { .. }) => return Some(c),
            Some(c) => found = found.or(Some(c)),
            None => {}
        }
    }
    found
}

fn parse_params(text: &str) -> HashMap<String, String> {
    let mut params = HashMap::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars
            .peek()
            .is_some_and(|c| c.is_ascii_whitespace() || *c == ',')
        {
            chars.next();
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c == ',' {
                break;
            }
            key.push(c);
            chars.next();
        }
        if key.is_empty() && chars.peek().is_none() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'=') {
            chars.next();
            while chars.peek().is_some_and(|c| c.is_ascii_whitespace()) {
                chars.next();
            }
            if chars.peek() == Some(&'"') {
                chars.next();
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => value.extend(chars.next()),
                        '"' => break,
                        c => value.push(c),
                    }
                }
            } else {
                while let Some(&c) = chars.peek() {
                    if c == ',' {
                        break;
                    }
                    value.push(c);
                    chars.next();
                }
            }
        }
        let key = key.trim().to_ascii_lowercase();
        if !key.is_empty() {
            params.insert(key, value.trim().to_owned());
        }
        if chars.peek().is_none() {
            break;
        }
    }
    params
}

/// What a token server handed out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenAnswer {
    pub token: String,
    /// Seconds the token stays valid, when the server says.
    pub expires_in: Option<u64>,
}

/// The token from a token server's JSON answer (`token` or `access_token`)
/// and its `expires_in`.
pub fn parse_token_response(body: &[u8]) -> Option<TokenAnswer> {
    #[derive(serde::Deserialize)]
    struct Answer {
        token: Option<String>,
        access_token: Option<String>,
        expires_in: Option<u64>,
    }
    let answer: Answer = serde_json::from_slice(body).ok()?;
    let token = answer
        .token
        .filter(|t| !t.is_empty())
        .or(answer.access_token.filter(|t| !t.is_empty()))?;
    Some(TokenAnswer {
        token,
        expires_in: answer.expires_in.filter(|s| *s > 0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_challenges() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:a/b:pull,push""#,
        );
        assert_eq!(
            c,
            Some(Challenge::Bearer {
                realm: "https://auth.example.com/token".into(),
                service: Some("registry.example.com".into()),
                scope: Some("repository:a/b:pull,push".into()),
            })
        );
        let c = parse_challenge(r#"bearer realm=http://127.0.0.1:1/t , service = "s\"x""#);
        assert_eq!(
            c,
            Some(Challenge::Bearer {
                realm: "http://127.0.0.1:1/t".into(),
                service: Some("s\"x".into()),
                scope: None,
            })
        );
    }

    #[test]
    fn parses_basic_and_rejects_unknown() {
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(parse_challenge("Basic"), Some(Challenge::Basic));
        assert_eq!(parse_challenge("Negotiate abc"), None);
        assert_eq!(
            parse_challenge("Bearer service=\"x\""),
            None,
            "realm is required"
        );
        assert_eq!(parse_challenge(""), None);
    }

    #[test]
    fn prefers_bearer() {
        let c = best_challenge(["Basic realm=x", "Bearer realm=\"https://a/t\""].into_iter());
        assert!(matches!(c, Some(Challenge::Bearer { .. })));
    }

    #[test]
    fn token_answers() {
        let answer = |token: &str, expires_in: Option<u64>| {
            Some(TokenAnswer {
                token: token.into(),
                expires_in,
            })
        };
        assert_eq!(
            parse_token_response(br#"{"token":"t1","expires_in":60}"#),
            answer("t1", Some(60))
        );
        assert_eq!(
            parse_token_response(br#"{"access_token":"t2"}"#),
            answer("t2", None)
        );
        assert_eq!(
            parse_token_response(br#"{"token":"","access_token":"t3","expires_in":0}"#),
            answer("t3", None)
        );
        assert_eq!(parse_token_response(b"nope"), None);
    }

    #[test]
    fn debug_hides_the_password() {
        let c = Credentials {
            username: "u".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
