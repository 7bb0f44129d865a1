//! The errors of the crate: start-up errors, and the API errors that become HTTP error bodies.

use std::fmt;
use std::io;

/// A configuration value that is missing or invalid; names the key so the operator can fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            key: key.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Why an instance could not start.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// Fix the named configuration key and start again.
    Config(ConfigError),
    /// A socket, file or thread could not be set up; `context` says which.
    Io { context: String, source: io::Error },
}

impl Error {
    pub fn io(context: impl Into<String>, source: io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config(e) => write!(f, "configuration: {e}"),
            Error::Io { context, source } => write!(f, "{context}: {source}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Config(e) => Some(e),
            Error::Io { source, .. } => Some(source),
        }
    }
}

impl From<ConfigError> for Error {
    fn from(e: ConfigError) -> Error {
        Error::Config(e)
    }
}

/// What went wrong with one API request; [`ApiError::status`] maps each to its HTTP status.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ApiError {
    /// The request is malformed (bad JSON, bad id, missing parameter): fix it and retry.
    BadRequest(String),
    /// The thing asked for does not exist here (or anywhere, for a search).
    NotFound(String),
    /// The request must carry a valid signature under the cluster key, and does not.
    Unauthorized(String),
    /// The client may not ask this (a registration for a location not its own).
    Forbidden(String),
    /// The request is within the body limit but over a quota (a node's resources).
    OverQuota(String),
    /// The server holds as much as it may (the index is full): retry later, or elsewhere.
    Full(String),
    /// The client asked more of the group than its share per second: retry in a second.
    TooManyRequests(String),
    /// The path exists but not with this method.
    MethodNotAllowed,
    /// The request head or body did not arrive within its deadline; the connection is closed.
    RequestTimeout(String),
    /// The body is larger than the limit, in bytes.
    PayloadTooLarge(u64),
    /// The request line is longer than its limit.
    UriTooLong(String),
    /// The header section is larger than its limit, or has too many fields.
    HeaderTooLarge(String),
    /// The request uses a feature of HTTP this server does not implement.
    NotImplemented(String),
    /// A node was asked a supernode path, or the other way round.
    WrongRole,
    /// A download asked for bytes outside the file.
    RangeNotSatisfiable(String),
    /// A service this answer depends on (the node's supernodes) cannot be reached: retry later.
    Unavailable(String),
    /// The servers this answer was fetched from (a file's holders) failed to give it.
    BadGateway(String),
    /// A bug: the handler panicked. The worker lives on.
    Internal,
}

impl ApiError {
    pub fn status(&self) -> u16 {
        match self {
            ApiError::BadRequest(_) => 400,
            ApiError::Unauthorized(_) => 401,
            ApiError::Forbidden(_) => 403,
            ApiError::NotFound(_) => 404,
            ApiError::OverQuota(_) => 413,
            ApiError::Full(_) | ApiError::TooManyRequests(_) => 429,
            ApiError::MethodNotAllowed => 405,
            ApiError::RequestTimeout(_) => 408,
            ApiError::PayloadTooLarge(_) => 413,
            ApiError::UriTooLong(_) => 414,
            ApiError::WrongRole => 418,
            ApiError::RangeNotSatisfiable(_) => 416,
            ApiError::HeaderTooLarge(_) => 431,
            ApiError::Internal => 500,
            ApiError::NotImplemented(_) => 501,
            ApiError::BadGateway(_) => 502,
            ApiError::Unavailable(_) => 503,
        }
    }

    pub fn description(&self) -> String {
        match self {
            ApiError::BadRequest(what)
            | ApiError::NotFound(what)
            | ApiError::Unauthorized(what)
            | ApiError::Forbidden(what)
            | ApiError::OverQuota(what)
            | ApiError::Full(what)
            | ApiError::TooManyRequests(what)
            | ApiError::Unavailable(what)
            | ApiError::BadGateway(what)
            | ApiError::RequestTimeout(what)
            | ApiError::UriTooLong(what)
            | ApiError::HeaderTooLarge(what)
            | ApiError::RangeNotSatisfiable(what)
            | ApiError::NotImplemented(what) => what.clone(),
            ApiError::MethodNotAllowed => "method not allowed on this path".into(),
            ApiError::PayloadTooLarge(limit) => format!("request body over {limit} bytes"),
            ApiError::WrongRole => "I'm not your guy".into(),
            ApiError::Internal => "internal error; the server logged it".into(),
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status(), self.description())
    }
}

impl std::error::Error for ApiError {}
