//! Sending one registry request: auth, retries, cancellation, bounded bodies.

use std::time::Duration;

use base64::Engine as _;
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderMap, RETRY_AFTER, WWW_AUTHENTICATE};
use reqwest::{Method, RequestBuilder, Response, StatusCode, Url};

use super::auth::{self, Challenge};
use super::error::{self, RegError};
use super::{Client, TokenEndpoint};
use crate::events::LogLevel;

/// Error bodies are quoted, not stored: read at most this much of them.
const ERROR_BODY_LIMIT: usize = 64 * 1024;
/// Token server answers are small JSON documents.
const TOKEN_BODY_LIMIT: usize = 1024 * 1024;

impl Client {
    /// Sends a request for a resource of repository `full`, authenticating as
    /// the registry asks (Basic, or a Bearer token for the repository's pull
    /// scope, fetched once and cached) and retrying transient failures.
    /// Returns the final answer whatever its status; only transport failures,
    /// exhausted retries and cancellation are errors.
    pub(super) async fn send(
        &self,
        method: Method,
        url: &Url,
        accept: Option<&str>,
        full: &str,
    ) -> Result<Response, RegError> {
        let scope = format!("repository:{full}:pull");
        let mut refreshed = false;
        loop {
            let auth = self.authorization(&scope).await?;
            let resp = self
                .send_with_retries(|| {
                    let mut req = self.http.request(method.clone(), url.clone());
                    if let Some(accept) = accept {
                        req = req.header(ACCEPT, accept);
                    }
                    if let Some(auth) = &auth {
                        req = req.header(AUTHORIZATION, auth);
                    }
                    req
                })
                .await?;
            if resp.status() != StatusCode::UNAUTHORIZED || refreshed {
                return Ok(resp);
            }
            let challenge = auth::best_challenge(
                resp.headers()
                    .get_all(WWW_AUTHENTICATE)
                    .iter()
                    .filter_map(|v| v.to_str().ok()),
            );
            refreshed = true;
            match challenge {
                Some(Challenge::Bearer {
                    realm,
                    service,
                    scope: asked,
                }) => {
                    let realm = self.token_realm(&realm)?;
                    *self.lock_endpoint() = Some(TokenEndpoint { realm, service });
                    // A cached token that was refused is stale: drop it.
                    self.lock_tokens().remove(&scope);
                    self.fetch_token(&scope, asked.as_deref()).await?;
                }
                // Basic credentials, when there are any, were already sent.
                Some(Challenge::Basic) | None => return Ok(resp),
            }
        }
    }

    /// The `Authorization` value for `scope`, fetching a token first when the
    /// registry is known to want one.
    async fn authorization(&self, scope: &str) -> Result<Option<String>, RegError> {
        if let Some(token) = self.lock_tokens().get(scope) {
            return Ok(Some(format!("Bearer {token}")));
        }
        let bearer = self.lock_endpoint().is_some();
        if bearer {
            let token = self.fetch_token(scope, None).await?;
            return Ok(Some(format!("Bearer {token}")));
        }
        Ok(self.basic_authorization())
    }

    fn basic_authorization(&self) -> Option<String> {
        self.config.credentials.as_ref().map(|c| {
            let raw = format!("{}:{}", c.username, c.password);
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(raw)
            )
        })
    }

    /// Gets a token for `scope` from the learned endpoint (with the user's
    /// credentials when there are any) and caches it.
    async fn fetch_token(&self, scope: &str, asked: Option<&str>) -> Result<String, RegError> {
        // One fetch at a time, so a batch of requests shares the token.
        let _guard = self.token_fetch.lock().await;
        if let Some(token) = self.lock_tokens().get(scope) {
            return Ok(token.clone());
        }
        let Some(endpoint) = self.lock_endpoint().clone() else {
            return Err(RegError::other(
                "registry asked for a token without saying where",
            ));
        };
        let mut url = endpoint.realm.clone();
        {
            let mut q = url.query_pairs_mut();
            if let Some(service) = &endpoint.service {
                q.append_pair("service", service);
            }
            q.append_pair("scope", asked.unwrap_or(scope));
        }
        let what = format!("getting a token from {}", endpoint.realm);
        let basic = self.basic_authorization();
        let resp = self
            .send_with_retries(|| {
                let req = self.http.get(url.clone());
                match &basic {
                    Some(b) => req.header(AUTHORIZATION, b),
                    None => req,
                }
            })
            .await?;
        let status = resp.status();
        let body = self.read_error_body(resp).await?;
        if !status.is_success() {
            return Err(error::from_response(
                status.as_u16(),
                status.canonical_reason().unwrap_or(""),
                &body[..body.len().min(TOKEN_BODY_LIMIT)],
                &what,
            ));
        }
        let token = auth::parse_token_response(&body)
            .ok_or_else(|| RegError::other(format!("{what}: the answer holds no token")))?;
        self.lock_tokens().insert(scope.to_owned(), token.clone());
        Ok(token)
    }

    /// The token realm as a URL; refused when it would send credentials in the
    /// clear from an HTTPS source.
    fn token_realm(&self, realm: &str) -> Result<Url, RegError> {
        let url = Url::parse(realm).map_err(|e| {
            RegError::other(format!(
                "registry gave an invalid token realm {realm:?}: {e}"
            ))
        })?;
        match url.scheme() {
            "https" => Ok(url),
            "http" if self.config.insecure => Ok(url),
            _ => Err(RegError::other(format!(
                "registry gave a token realm {realm:?} that is not HTTPS; refusing to send credentials there"
            ))),
        }
    }

    /// Sends the request `build` makes, retrying connection errors, 429 and
    /// 5xx with backoff (`Retry-After` honoured up to the policy's cap).
    pub(super) async fn send_with_retries(
        &self,
        build: impl Fn() -> RequestBuilder,
    ) -> Result<Response, RegError> {
        let policy = self.config.retry;
        let mut attempt = 1;
        loop {
            let request = build().build().map_err(|e| {
                RegError::other(format!(
                    "cannot build request: {}",
                    error::describe_transport(&e)
                ))
            })?;
            let (method, url) = (request.method().clone(), request.url().clone());
            let outcome = self.cancellable(self.http.execute(request)).await?;
            let delay = match &outcome {
                Ok(resp) => {
                    self.debug(format_args!("{method} {url} -> {}", resp.status()));
                    let status = resp.status();
                    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
                        Some(
                            retry_after(resp.headers())
                                .unwrap_or_else(|| backoff(&policy, attempt)),
                        )
                    } else {
                        None
                    }
                }
                Err(e) if e.is_builder() || e.is_redirect() => None,
                Err(e) => {
                    self.debug(format_args!(
                        "{method} {url} failed: {}",
                        error::describe_transport(e)
                    ));
                    Some(backoff(&policy, attempt))
                }
            };
            match delay {
                Some(delay) if attempt < policy.attempts => {
                    let delay = delay.min(policy.max_delay);
                    self.cancellable(tokio::time::sleep(delay)).await?;
                    attempt += 1;
                }
                _ => {
                    return outcome
                        .map_err(|e| RegError::transport(&e, &format!("{method} {url}")));
                }
            }
        }
    }

    /// Runs `future` unless the run is cancelled first.
    pub(super) async fn cancellable<F: Future>(&self, future: F) -> Result<F::Output, RegError> {
        tokio::select! {
            biased;
            _ = self.cancel.cancelled() => Err(RegError::cancelled()),
            out = future => Ok(out),
        }
    }

    /// Reads a body of at most `limit` bytes; a longer one is an integrity error.
    pub(super) async fn read_body(
        &self,
        mut resp: Response,
        limit: usize,
        what: &str,
    ) -> Result<Vec<u8>, RegError> {
        let too_big = || RegError::integrity(format!("{what}: answer larger than {limit} bytes"));
        if resp.content_length().is_some_and(|len| len > limit as u64) {
            return Err(too_big());
        }
        let mut body = Vec::new();
        while let Some(chunk) = self
            .cancellable(resp.chunk())
            .await?
            .map_err(|e| RegError::transport(&e, what))?
        {
            if body.len() + chunk.len() > limit {
                return Err(too_big());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// Reads the start of an error body, for quoting; never fails on size.
    pub(super) async fn read_error_body(&self, mut resp: Response) -> Result<Vec<u8>, RegError> {
        let mut body = Vec::new();
        while body.len() < ERROR_BODY_LIMIT {
            match self.cancellable(resp.chunk()).await? {
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                Ok(None) | Err(_) => break,
            }
        }
        Ok(body)
    }

    /// Turns a non-success answer into an error, quoting its body.
    pub(super) async fn failure(&self, resp: Response, what: &str) -> RegError {
        let status = resp.status();
        match self.read_error_body(resp).await {
            Ok(body) => error::from_response(
                status.as_u16(),
                status.canonical_reason().unwrap_or(""),
                &body,
                what,
            ),
            Err(e) => e,
        }
    }

    /// A page of JSON (tag lists): bounded, generous.
    pub(super) async fn read_small_body(
        &self,
        resp: Response,
        what: &str,
    ) -> Result<Vec<u8>, RegError> {
        if resp.status().is_success() {
            self.read_body(resp, 16 * 1024 * 1024, what).await
        } else {
            self.read_error_body(resp).await
        }
    }

    pub(super) fn debug(&self, args: std::fmt::Arguments<'_>) {
        if self.events.enabled(LogLevel::Debug) {
            self.events.log(LogLevel::Debug, &args.to_string());
        }
    }

    fn lock_tokens(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, String>> {
        self.tokens.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_endpoint(&self) -> std::sync::MutexGuard<'_, Option<TokenEndpoint>> {
        self.endpoint.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// `Retry-After` in seconds (the HTTP-date form is rare from registries and
/// falls back to our own backoff).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    value.parse::<u64>().ok().map(Duration::from_secs)
}

fn backoff(policy: &super::RetryPolicy, attempt: u32) -> Duration {
    let factor = 1u32 << (attempt - 1).min(16);
    policy
        .base_delay
        .saturating_mul(factor)
        .min(policy.max_delay)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = super::super::RetryPolicy {
            attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(350),
        };
        assert_eq!(backoff(&p, 1), Duration::from_millis(100));
        assert_eq!(backoff(&p, 2), Duration::from_millis(200));
        assert_eq!(backoff(&p, 3), Duration::from_millis(350));
    }

    #[test]
    fn reads_retry_after_seconds() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, "3".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        h.insert(
            RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), None);
    }
}
