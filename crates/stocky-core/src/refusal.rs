//! The one shape of a refused request in the retail domains (sales, catalog, orders,
//! customers, transfers): a stable machine `code` naming the problem and a message for
//! people. The gateway maps it to `400` (or `422`/`409` where the writer refuses).

/// A request that is not what it claims to be, or that a rule refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    pub code: &'static str,
    pub message: String,
}

/// `Err(Refusal { code, message })`.
pub fn refuse<T>(code: &'static str, message: impl Into<String>) -> Result<T, Refusal> {
    Err(Refusal {
        code,
        message: message.into(),
    })
}
