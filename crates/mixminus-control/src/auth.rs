//! `X-Auth-Token` checks.
//!
//! Tokens come from the configuration (each grants a list of accounts, or all) and from the
//! environment variable `MIXMINUS_AUTH_TOKEN` (all accounts). A request without a token, or
//! with one that matches none, gets 401; a token that does not grant the account in the
//! path gets 403. Every configured token is compared, in constant time per token
//! (`subtle`), so timing shows neither which one matched nor how much of one did (a token's
//! length is not hidden). Tokens are never logged nor echoed.
//!
//! With no token configured at all the API is **open** (every request is allowed): the
//! binary only allows that when it listens on loopback.

use subtle::ConstantTimeEq;

use crate::config::{AccountScope, Secret, TokenConfig};
use crate::ApiError;

/// The environment variable whose value, when set and non-empty, is a token for every
/// account.
pub const AUTH_TOKEN_ENV: &str = "MIXMINUS_AUTH_TOKEN";

/// The set of valid tokens.
#[derive(Debug, Clone, Default)]
pub struct Auth {
    tokens: Vec<(Secret, AccountScope)>,
}

impl Auth {
    /// The tokens of a configuration.
    pub fn new(tokens: &[TokenConfig]) -> Self {
        Self { tokens: tokens.iter().map(|t| (t.token.clone(), t.accounts.clone())).collect() }
    }

    /// Adds the token in `MIXMINUS_AUTH_TOKEN`, if set, for all accounts.
    pub fn with_env(mut self) -> Self {
        if let Ok(token) = std::env::var(AUTH_TOKEN_ENV) {
            if !token.is_empty() {
                self.tokens.push((Secret::new(token), AccountScope::All));
            }
        }
        self
    }

    /// Adds one token.
    pub fn with_token(mut self, token: impl Into<String>, scope: AccountScope) -> Self {
        self.tokens.push((Secret::new(token), scope));
        self
    }

    /// Whether no token is configured (the API is open).
    pub fn is_open(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Checks `presented` against the tokens and `account` against its grant.
    pub fn authorize(&self, presented: Option<&str>, account: &str) -> Result<(), ApiError> {
        match self.find(presented)? {
            None => Ok(()),
            Some(scope) if scope.grants(account) => Ok(()),
            Some(_) => Err(ApiError::Forbidden),
        }
    }

    /// Checks `presented` against the tokens, for routes outside any account (`/metrics`).
    pub fn authenticate(&self, presented: Option<&str>) -> Result<(), ApiError> {
        self.find(presented).map(|_| ())
    }

    /// `Ok(None)` when open, `Ok(Some(scope))` for a match.
    fn find(&self, presented: Option<&str>) -> Result<Option<&AccountScope>, ApiError> {
        if self.is_open() {
            return Ok(None);
        }
        let presented = presented.ok_or(ApiError::Unauthorized)?.as_bytes();
        let mut found = None;
        // No early exit: every token is compared whatever matched before.
        for (secret, scope) in &self.tokens {
            if bool::from(secret.expose().as_bytes().ct_eq(presented)) && found.is_none() {
                found = Some(scope);
            }
        }
        found.map(Some).ok_or(ApiError::Unauthorized)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_and_refusals() {
        let auth = Auth::default()
            .with_token("all-token", AccountScope::All)
            .with_token("one-token", AccountScope::Only(vec!["acc1".into()]));
        assert_eq!(auth.authorize(None, "acc1"), Err(ApiError::Unauthorized));
        assert_eq!(auth.authorize(Some("wrong"), "acc1"), Err(ApiError::Unauthorized));
        assert_eq!(auth.authorize(Some(""), "acc1"), Err(ApiError::Unauthorized));
        assert_eq!(auth.authorize(Some("all-token"), "acc9"), Ok(()));
        assert_eq!(auth.authorize(Some("one-token"), "acc1"), Ok(()));
        assert_eq!(auth.authorize(Some("one-token"), "acc2"), Err(ApiError::Forbidden));
        assert_eq!(auth.authenticate(Some("one-token")), Ok(()));
    }

    #[test]
    fn open_without_tokens() {
        assert_eq!(Auth::default().authorize(None, "x"), Ok(()));
    }
}
