//! Who may call the API: the panel with the node token, browsers with short-lived signed
//! tokens. The tokens themselves (format, minting, verification) are the panel↔node
//! protocol's, in [`nexus_wire::token`].

use nexus_core::ids::ServerId;
use nexus_core::model::Permission;
pub use nexus_wire::token::{NodeToken, TokenClaims, TokenError, TokenSigner, unix_now};

/// Who made a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// The panel (node token): everything is allowed.
    Node,
    /// A browser with a verified token.
    Browser(TokenClaims),
}

impl Caller {
    /// Whether this caller may do `permission` on `server`.
    pub fn may(&self, server: ServerId, permission: Permission) -> bool {
        match self {
            Self::Node => true,
            Self::Browser(claims) => claims.server == server && claims.allows(permission),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_browser_caller_may_only_what_its_token_grants_on_its_server() {
        let signer = TokenSigner::new(b"0123456789abcdef0123456789abcdef", Duration::from_secs(900)).unwrap();
        let server = ServerId::new();
        let claims = signer.verify(&signer.mint(server, &[Permission::ConsoleRead], Duration::from_secs(60))).unwrap();
        let caller = Caller::Browser(claims);
        assert!(caller.may(server, Permission::ConsoleRead));
        assert!(!caller.may(server, Permission::ConsoleWrite));
        assert!(!caller.may(ServerId::new(), Permission::ConsoleRead));
    }

    #[test]
    fn node_caller_may_everything() {
        assert!(Caller::Node.may(ServerId::new(), Permission::Settings));
    }
}
