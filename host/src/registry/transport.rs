//! Sending one registry request: auth, retries, cancellation, bounded bodies.

use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use reqwest::header::{AUTHORIZATION, HeaderMap, RETRY_AFTER, WWW_AUTHENTICATE};
use reqwest::{Method, RequestBuilder, Response, StatusCode, Url};

use super::auth::{self, Challenge};
use super::error::{self, RegError};
use super::{CachedToken, Client, RetryPolicy, TokenEndpoint};
use crate::events::LogLevel;

/// Error bodies are quoted, not stored: read at most this much of them.
const ERROR_BODY_LIMIT: usize = 64 * 1024;
/// Token server answers are small JSON documents.
const TOKEN_BODY_LIMIT: usize = 1024 * 1024;
/// A token's lifetime when the answer gives none (the distribution spec's
/// default).
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// A token is renewed when this much of its lifetime (at most
/// [`TOKEN_MARGIN_CAP`]) is left, so it never expires in flight.
const TOKEN_MARGIN_DIVISOR: u32 = 5;
const TOKEN_MARGIN_CAP: Duration = Duration::from_secs(30);

/// How one attempt at a request ended badly.
pub(super) enum Failure {
    /// Worth another try: the connection broke or the body was cut short.
    Transient(RegError),
    Final(RegError),
}

/// A small answer read whole: status, headers and body (the start of it
/// for an error).
pub(super) struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    /// The answer as an error, unless it is a success.
    pub fn error_unless_success(&self, what: &str) -> Result<(), RegError> {
        if self.status.is_success() {
            return Ok(());
        }
        Err(error::from_response(
            self.status.as_u16(),
            self.status.canonical_reason().unwrap_or(""),
            &self.body,
            what,
        ))
    }
}

impl Client {
    /// Sends a request for a resource of repository `full`, authenticating as
    /// the registry asks (Basic, or a Bearer token for the repository's pull
    /// scope, fetched once and cached) and retrying transient failures.
    /// Returns the final answer whatever its status; only transport failures,
    /// exhausted retries and cancellation are errors.
    /// `what` names the request in errors (the image, blob or listing).
    pub(super) async fn send(
        &self,
        method: Method,
        url: &Url,
        headers: &HeaderMap,
        full: &str,
        what: &str,
    ) -> Result<Response, RegError> {
        let scope = format!("repository:{full}:pull");
        let mut refreshed = false;
        loop {
            let auth = self.authorization(&scope).await?;
            let resp = self
                .send_with_retries(what, || {
                    let mut req = self
                        .http
                        .request(method.clone(), url.clone())
                        .headers(headers.clone());
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
        if let Some(token) = self.cached_token(scope) {
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
        if let Some(token) = self.cached_token(scope) {
            return Ok(token);
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
        let asked_at = Instant::now();
        let resp = self
            .send_with_retries(&what, || {
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
        let answer = auth::parse_token_response(&body)
            .ok_or_else(|| RegError::other(format!("{what}: the answer holds no token")))?;
        let lifetime = answer
            .expires_in
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_TOKEN_LIFETIME);
        let margin = (lifetime / TOKEN_MARGIN_DIVISOR).min(TOKEN_MARGIN_CAP);
        self.lock_tokens().insert(
            scope.to_owned(),
            CachedToken {
                token: answer.token.clone(),
                renew_at: asked_at + (lifetime - margin),
            },
        );
        Ok(answer.token)
    }

    /// The cached token for `scope`, unless it is due for renewal.
    fn cached_token(&self, scope: &str) -> Option<String> {
        let tokens = self.lock_tokens();
        let cached = tokens.get(scope)?;
        (Instant::now() < cached.renew_at).then(|| cached.token.clone())
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
    /// 5xx with jittered backoff (`Retry-After` honoured up to the policy's
    /// cap). The final error names `what` and says how many tries it took.
    pub(super) async fn send_with_retries(
        &self,
        what: &str,
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
                    return outcome.map_err(|e| {
                        gave_up(
                            RegError::transport(&e, &format!("{what}: {method} {url}")),
                            attempt,
                        )
                    });
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

    /// Sends a request and reads its answer whole: a success of at most
    /// `limit` bytes (a longer one is an integrity error), else the start of
    /// the error body. A body that breaks off is asked for again, with
    /// backoff, up to the retry policy's count.
    pub(super) async fn fetch_small(
        &self,
        method: Method,
        url: &Url,
        headers: &HeaderMap,
        full: &str,
        what: &str,
        limit: usize,
    ) -> Result<Answer, RegError> {
        let mut attempt = 1;
        loop {
            let resp = self.send(method.clone(), url, headers, full, what).await?;
            let (status, headers) = (resp.status(), resp.headers().clone());
            let body = if status.is_success() {
                self.read_body(resp, limit, what).await
            } else {
                Ok(self.read_error_body(resp).await?)
            };
            match body {
                Ok(body) => {
                    return Ok(Answer {
                        status,
                        headers,
                        body,
                    });
                }
                Err(Failure::Transient(e)) if attempt < self.config.retry.attempts => {
                    self.pause_before_retry(&e, attempt).await?;
                    attempt += 1;
                }
                Err(Failure::Transient(e)) => return Err(gave_up(e, attempt)),
                Err(Failure::Final(e)) => return Err(e),
            }
        }
    }

    /// Waits the backoff after failed try number `attempt`.
    pub(super) async fn pause_before_retry(
        &self,
        cause: &RegError,
        attempt: u32,
    ) -> Result<(), RegError> {
        self.debug(format_args!("retrying: {cause}"));
        self.cancellable(tokio::time::sleep(backoff(&self.config.retry, attempt)))
            .await
    }

    /// Reads a body of at most `limit` bytes; a longer one is an integrity
    /// error, one that breaks off a transient failure.
    async fn read_body(
        &self,
        mut resp: Response,
        limit: usize,
        what: &str,
    ) -> Result<Vec<u8>, Failure> {
        let too_big = || {
            Failure::Final(RegError::integrity(format!(
                "{what}: answer larger than {limit} bytes"
            )))
        };
        if resp.content_length().is_some_and(|len| len > limit as u64) {
            return Err(too_big());
        }
        let mut body = Vec::new();
        loop {
            let chunk = self
                .cancellable(resp.chunk())
                .await
                .map_err(Failure::Final)?;
            match chunk {
                Ok(Some(chunk)) if body.len() + chunk.len() > limit => return Err(too_big()),
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                Ok(None) => return Ok(body),
                Err(e) => {
                    return Err(Failure::Transient(RegError::transport(
                        &e,
                        &format!("{what}: the answer broke off after {} bytes", body.len()),
                    )));
                }
            }
        }
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

    pub(super) fn debug(&self, args: std::fmt::Arguments<'_>) {
        if self.events.enabled(LogLevel::Debug) {
            self.events.log(LogLevel::Debug, &args.to_string());
        }
    }

    fn lock_tokens(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, CachedToken>> {
        self.tokens.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_endpoint(&self) -> std::sync::MutexGuard<'_, Option<TokenEndpoint>> {
        self.endpoint.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// `Retry-After` as seconds or as an HTTP date (a date in the past is no
/// wait at all).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// The wait after failed try number `attempt`: doubling from the base delay
/// up to the cap, then drawn from the upper half of that ("equal jitter"),
/// so transfers that failed together do not all retry at the same instant.
pub(super) fn backoff(policy: &RetryPolicy, attempt: u32) -> Duration {
    let factor = 1u32 << attempt.saturating_sub(1).min(16);
    let full = policy
        .base_delay
        .saturating_mul(factor)
        .min(policy.max_delay);
    let half = full / 2;
    half + (full - half).mul_f64(fastrand::f64())
}

/// `e` after `attempts` tries, saying so when there were several.
pub(super) fn gave_up(mut e: RegError, attempts: u32) -> RegError {
    if attempts > 1 {
        e.message
            .push_str(&format!(" (gave up after {attempts} tries)"));
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter() {
        let p = RetryPolicy {
            attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(350),
        };
        let ms = |d: Duration| d.as_millis();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..50 {
            let (one, two, three) = (backoff(&p, 1), backoff(&p, 2), backoff(&p, 3));
            assert!((50..=100).contains(&ms(one)), "{one:?}");
            assert!((100..=200).contains(&ms(two)), "{two:?}");
            assert!((175..=350).contains(&ms(three)), "{three:?}");
            seen.insert(one);
        }
        assert!(seen.len() > 10, "the delays are not jittered: {seen:?}");
    }

    #[test]
    fn reads_retry_after_seconds_and_dates() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, "3".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        let soon = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(20));
        h.insert(RETRY_AFTER, soon.parse().unwrap());
        let wait = retry_after(&h).unwrap();
        assert!(
            wait > Duration::from_secs(17) && wait <= Duration::from_secs(20),
            "{wait:?}"
        );
        h.insert(
            RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        h.insert(RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn gave_up_counts_tries() {
        let e = gave_up(RegError::other("x: reset"), 4);
        assert_eq!(e.message, "x: reset (gave up after 4 tries)");
        assert_eq!(gave_up(RegError::other("y"), 1).message, "y");
    }
}
