//! The server lifecycle, shared by both planes.
//!
//! Transitions are data: [`TRANSITIONS`] lists every allowed `(from, trigger) -> to`; anything
//! else is a [`LifecycleError`]. Every accepted transition yields a timestamped
//! [`LifecycleEvent`], which the node reports and the panel stores.

use crate::ids::ServerId;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

/// Where a server is in its life.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerState {
    /// Recorded by the panel, nothing done on the node yet.
    Requested,
    /// The install script is running.
    Installing,
    /// The install script failed; the log says why.
    InstallFailed,
    /// Installed and never started since.
    Installed,
    /// The process was started; the egg's `done` line has not been seen yet.
    Starting,
    /// The egg's `done` line was seen.
    Running,
    /// A stop was requested; waiting for the process to exit.
    Stopping,
    /// The process exited after a stop or a kill.
    Stopped,
    /// The process exited without being asked to.
    Crashed,
    /// Blocked by an operator; cannot be started.
    Suspended,
    /// Container and files are being removed.
    Destroying,
    /// Gone. Terminal.
    Destroyed,
}

impl ServerState {
    /// Every state, for tables and tests.
    pub const ALL: [ServerState; 12] = [
        Self::Requested,
        Self::Installing,
        Self::InstallFailed,
        Self::Installed,
        Self::Starting,
        Self::Running,
        Self::Stopping,
        Self::Stopped,
        Self::Crashed,
        Self::Suspended,
        Self::Destroying,
        Self::Destroyed,
    ];

    /// True while a server process may be alive.
    pub fn is_active(&self) -> bool {
        matches!(self, Self::Starting | Self::Running | Self::Stopping)
    }

    /// True once nothing can happen any more.
    pub fn is_terminal(&self) -> bool {
        *self == Self::Destroyed
    }
}

/// What happened to a server.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// An install (or reinstall) began.
    InstallStarted,
    /// The install script exited 0.
    InstallSucceeded,
    /// The install script failed or could not run.
    InstallFailed,
    /// A start was requested (by a user, a schedule or an auto-restart).
    Start,
    /// The egg's `done` line was seen on the console.
    Ready,
    /// A stop was requested.
    Stop,
    /// The process was killed.
    Kill,
    /// The process exited.
    Exited,
    /// An operator suspended the server.
    Suspend,
    /// An operator lifted the suspension.
    Unsuspend,
    /// Removal began.
    Destroy,
    /// Removal finished.
    DestroyCompleted,
}

impl Trigger {
    /// Every trigger, for tables and tests.
    pub const ALL: [Trigger; 12] = [
        Self::InstallStarted,
        Self::InstallSucceeded,
        Self::InstallFailed,
        Self::Start,
        Self::Ready,
        Self::Stop,
        Self::Kill,
        Self::Exited,
        Self::Suspend,
        Self::Unsuspend,
        Self::Destroy,
        Self::DestroyCompleted,
    ];
}

use ServerState as S;
use Trigger as T;

/// Every allowed transition. Order is irrelevant; `(from, trigger)` pairs are unique
/// (checked by a test).
pub const TRANSITIONS: &[(ServerState, Trigger, ServerState)] = &[
    (S::Requested, T::InstallStarted, S::Installing),
    (S::Requested, T::Destroy, S::Destroying),
    (S::Installing, T::InstallSucceeded, S::Installed),
    (S::Installing, T::InstallFailed, S::InstallFailed),
    (S::InstallFailed, T::InstallStarted, S::Installing),
    (S::InstallFailed, T::Suspend, S::Suspended),
    (S::InstallFailed, T::Destroy, S::Destroying),
    (S::Installed, T::Start, S::Starting),
    (S::Installed, T::InstallStarted, S::Installing),
    (S::Installed, T::Suspend, S::Suspended),
    (S::Installed, T::Destroy, S::Destroying),
    (S::Starting, T::Ready, S::Running),
    (S::Starting, T::Stop, S::Stopping),
    (S::Starting, T::Kill, S::Stopped),
    (S::Starting, T::Exited, S::Crashed),
    (S::Running, T::Stop, S::Stopping),
    (S::Running, T::Kill, S::Stopped),
    (S::Running, T::Exited, S::Crashed),
    (S::Stopping, T::Exited, S::Stopped),
    (S::Stopping, T::Kill, S::Stopped),
    (S::Stopped, T::Start, S::Starting),
    (S::Stopped, T::InstallStarted, S::Installing),
    (S::Stopped, T::Suspend, S::Suspended),
    (S::Stopped, T::Destroy, S::Destroying),
    (S::Crashed, T::Start, S::Starting),
    (S::Crashed, T::InstallStarted, S::Installing),
    (S::Crashed, T::Suspend, S::Suspended),
    (S::Crashed, T::Destroy, S::Destroying),
    (S::Suspended, T::Unsuspend, S::Stopped),
    (S::Suspended, T::Destroy, S::Destroying),
    (S::Destroying, T::DestroyCompleted, S::Destroyed),
];

/// The state `trigger` leads to from `from`, if allowed.
pub fn next_state(from: ServerState, trigger: Trigger) -> Option<ServerState> {
    TRANSITIONS.iter().find(|(f, t, _)| *f == from && *t == trigger).map(|(_, _, to)| *to)
}

/// A transition that the table does not allow.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("server {server}: `{trigger:?}` is not allowed while {from:?}")]
#[non_exhaustive]
pub struct LifecycleError {
    /// The server.
    pub server: ServerId,
    /// Its state at the time.
    pub from: ServerState,
    /// The refused trigger.
    pub trigger: Trigger,
}

impl LifecycleError {
    /// `trigger` is not allowed for `server` in state `from`.
    pub fn new(server: ServerId, from: ServerState, trigger: Trigger) -> Self {
        Self { server, from, trigger }
    }
}

/// One accepted transition.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LifecycleEvent {
    /// The server.
    pub server: ServerId,
    /// State before.
    pub from: ServerState,
    /// State after.
    pub to: ServerState,
    /// What caused it.
    pub trigger: Trigger,
    /// When it happened.
    pub at: DateTime<Utc>,
}

/// A crash within this window of the previous one disables auto-restart.
pub const CRASH_LOOP_WINDOW: Duration = Duration::seconds(60);

/// The lifecycle of one server: its state and what the crash policy needs to remember.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lifecycle {
    server: ServerId,
    state: ServerState,
    last_crash: Option<DateTime<Utc>>,
}

impl Lifecycle {
    /// A lifecycle in `state` (a new server starts in [`ServerState::Requested`]).
    pub fn new(server: ServerId, state: ServerState) -> Self {
        Self { server, state, last_crash: None }
    }

    /// Current state.
    pub fn state(&self) -> ServerState {
        self.state
    }

    /// The server.
    pub fn server(&self) -> ServerId {
        self.server
    }

    /// Time of the most recent crash.
    pub fn last_crash(&self) -> Option<DateTime<Utc>> {
        self.last_crash
    }

    /// Applies `trigger` at time `at`. On error nothing changes.
    pub fn apply(&mut self, trigger: Trigger, at: DateTime<Utc>) -> Result<LifecycleEvent, LifecycleError> {
        let from = self.state;
        let to = next_state(from, trigger).ok_or(LifecycleError { server: self.server, from, trigger })?;
        self.state = to;
        Ok(LifecycleEvent { server: self.server, from, to, trigger, at })
    }

    /// Records a crash at `at` and says whether the server should be restarted automatically:
    /// yes, unless the previous crash was less than [`CRASH_LOOP_WINDOW`] earlier.
    pub fn record_crash(&mut self, at: DateTime<Utc>) -> bool {
        let restart = match self.last_crash {
            Some(previous) => at - previous >= CRASH_LOOP_WINDOW,
            None => true,
        };
        self.last_crash = Some(at);
        restart
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    #[test]
    fn table_has_unique_pairs_and_no_exit_from_destroyed() {
        let mut seen = HashSet::new();
        for (from, trigger, _) in TRANSITIONS {
            assert!(seen.insert((*from, *trigger)), "duplicate {from:?} {trigger:?}");
            assert_ne!(*from, ServerState::Destroyed);
        }
    }

    #[test]
    fn every_state_is_reachable_from_requested() {
        let mut reached = HashSet::from([ServerState::Requested]);
        loop {
            let before = reached.len();
            for (from, _, to) in TRANSITIONS {
                if reached.contains(from) {
                    reached.insert(*to);
                }
            }
            if reached.len() == before {
                break;
            }
        }
        assert_eq!(reached.len(), ServerState::ALL.len());
    }

    #[test]
    fn crash_loop_disables_auto_restart() {
        let mut lc = Lifecycle::new(ServerId::new(), ServerState::Running);
        let t0 = Utc::now();
        assert!(lc.record_crash(t0));
        assert!(!lc.record_crash(t0 + Duration::seconds(59)));
        assert!(lc.record_crash(t0 + Duration::seconds(59 + 60)));
    }

    #[test]
    fn invalid_transition_is_a_typed_error() {
        let mut lc = Lifecycle::new(ServerId::new(), ServerState::Stopped);
        let err = lc.apply(Trigger::Ready, Utc::now()).unwrap_err();
        assert_eq!(err.from, ServerState::Stopped);
        assert_eq!(err.trigger, Trigger::Ready);
        assert_eq!(lc.state(), ServerState::Stopped);
    }

    fn trigger() -> impl Strategy<Value = Trigger> {
        (0..Trigger::ALL.len()).prop_map(|i| Trigger::ALL[i])
    }

    proptest! {
        #[test]
        fn random_sequences_follow_the_table(triggers in proptest::collection::vec((trigger(), 0i64..10_000), 0..200)) {
            let mut lc = Lifecycle::new(ServerId::new(), ServerState::Requested);
            let mut clock = Utc::now();
            let mut events: Vec<LifecycleEvent> = Vec::new();
            for (trigger, step_ms) in triggers {
                clock += Duration::milliseconds(step_ms);
                let before = lc.state();
                match lc.apply(trigger, clock) {
                    Ok(event) => {
                        prop_assert_eq!(Some(event.to), next_state(before, trigger));
                        prop_assert_eq!(event.from, before);
                        prop_assert_eq!(event.at, clock);
                        prop_assert_eq!(lc.state(), event.to);
                        if event.to == ServerState::Running {
                            prop_assert_eq!(before, ServerState::Starting);
                            prop_assert_eq!(trigger, Trigger::Ready);
                        }
                        events.push(event);
                    }
                    Err(err) => {
                        prop_assert_eq!(next_state(before, trigger), None);
                        prop_assert_eq!(err.from, before);
                        prop_assert_eq!(lc.state(), before);
                    }
                }
            }
            // Events chain: each starts where the previous ended, in time order.
            for pair in events.windows(2) {
                prop_assert_eq!(pair[0].to, pair[1].from);
                prop_assert!(pair[0].at <= pair[1].at);
            }
            if events.iter().any(|e| e.to == ServerState::Destroyed) {
                prop_assert_eq!(lc.state(), ServerState::Destroyed);
            }
        }
    }
}
