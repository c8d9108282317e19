//! One error type: a sentence for the person at the terminal.

use std::fmt;

/// What went wrong, said the way the user can act on it.
#[derive(Debug)]
pub struct Error(String);

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn msg(text: impl Into<String>) -> Self {
        Error(text.into())
    }

    /// A refusal or failure of the API server while doing `what`.
    pub fn api(what: &str, err: kube::Error) -> Self {
        match &err {
            kube::Error::Api(status) if status.code == 403 => Error(format!(
                "{what}: refused by the API server: {}",
                status.message
            )),
            kube::Error::Api(status) if status.code == 404 => {
                Error(format!("{what}: not found ({})", status.message))
            }
            kube::Error::Api(status) => Error(format!("{what}: {}", status.message)),
            other => Error(format!("{what}: {other}")),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether `err` is the API server's 404.
pub fn is_not_found(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(s) if s.code == 404)
}

/// Whether `err` is the API server's 403.
pub fn is_forbidden(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(s) if s.code == 403)
}
