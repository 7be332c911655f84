//! WebSocket close codes and what a client should do about each one
//! (`docs/protocol.md` §2.10). The server closes with these; SDKs decide from them whether
//! to resume, re-authenticate first, or stop.

/// Server restarting or shutting down, or a resume read failed: reconnect with
/// `lastEventId`.
pub const SERVICE_RESTART: u16 = 1012;
/// Authentication failed or is missing (seed 000's `close(1008, 'Token inválido')`).
pub const POLICY: u16 = 1008;
/// The access token expired: refresh it, then reconnect.
pub const TOKEN_EXPIRED: u16 = 4001;
/// A newer connection of the same user and device took over.
pub const REPLACED: u16 = 4002;
/// The connection fell too far behind: reconnect with `lastEventId` to resync.
pub const RESYNC: u16 = 4000;
/// A message above the hard size cap.
pub const TOO_BIG: u16 = 1009;
/// Protocol violation, or no answer to the server's ping.
pub const PROTOCOL: u16 = 1002;
/// A text message that is not valid UTF-8 (RFC 6455: invalid frame payload data).
pub const INVALID_PAYLOAD: u16 = 1007;
/// The credential could not be checked (the database is unavailable): retry later.
pub const TRY_AGAIN_LATER: u16 = 1013;

/// What a client does after the server closed with a code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseAction {
    /// Reconnect (with backoff) and resume from the last event id.
    Reconnect,
    /// Get a fresh credential (refresh the access token), then reconnect and resume.
    Reauthenticate,
    /// Do not reconnect: the same attempt would fail again or fight another connection.
    GiveUp,
}

/// The action for a close code; `None` (no close frame: the connection broke) reconnects.
pub fn action(code: Option<u16>) -> CloseAction {
    match code {
        Some(TOKEN_EXPIRED) | Some(POLICY) => CloseAction::Reauthenticate,
        Some(REPLACED) | Some(TOO_BIG) => CloseAction::GiveUp,
        _ => CloseAction::Reconnect,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_code_has_its_action() {
        for code in [
            SERVICE_RESTART,
            RESYNC,
            PROTOCOL,
            INVALID_PAYLOAD,
            TRY_AGAIN_LATER,
            1000,
            1006,
        ] {
            assert_eq!(action(Some(code)), CloseAction::Reconnect, "{code}");
        }
        assert_eq!(action(None), CloseAction::Reconnect);
        assert_eq!(action(Some(TOKEN_EXPIRED)), CloseAction::Reauthenticate);
        assert_eq!(action(Some(POLICY)), CloseAction::Reauthenticate);
        assert_eq!(action(Some(REPLACED)), CloseAction::GiveUp);
        assert_eq!(action(Some(TOO_BIG)), CloseAction::GiveUp);
    }
}
