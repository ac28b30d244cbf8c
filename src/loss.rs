//! Is the instance still there, and if not, was it a spot reclaim?
//!
//! The classification is today's, done before anything is terminated: the spot request's
//! status code first, then the instance's `StateReason.Code`, then a shutting-down or
//! terminated instance whose `StateTransitionReason` says the service initiated it.

/// What EC2 says about an instance (and its spot request, where it has one).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstanceFacts {
    /// `None` when EC2 no longer knows the instance.
    pub state: Option<String>,
    pub state_reason_code: Option<String>,
    pub state_transition_reason: Option<String>,
    pub spot_status_code: Option<String>,
}

/// How long after our launch an instance EC2 does not know counts as "not visible
/// yet" rather than gone: EC2 is eventually consistent and documents
/// `InvalidInstanceID.NotFound` right after a launch.
pub const NOT_VISIBLE_GRACE_SECONDS: i64 = 300;

/// The instance's fate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    /// Pending or running: usable.
    Alive,
    /// EC2 does not show the instance yet, moments after we launched it: presumed alive.
    NotVisibleYet,
    /// Gone (or going): `reclaim` tells a spot reclaim from anything else.
    Gone { reclaim: bool, detail: String },
}

const RECLAIM_SPOT_CODES: [&str; 7] = [
    "instance-terminated-no-capacity",
    "instance-terminated-by-price",
    "instance-terminated-capacity-oversubscribed",
    "instance-stopped-no-capacity",
    "instance-stopped-by-price",
    "instance-stopped-capacity-oversubscribed",
    "marked-for-termination",
];

/// The state reasons of an instance EC2 itself took back.
pub const RECLAIM_REASON_CODES: [&str; 2] = [
    "Server.SpotInstanceTermination",
    "Server.InsufficientInstanceCapacity",
];

/// Classifies an instance we launched `seconds_since_launch` ago (`None`: unknown, so an
/// instance EC2 does not know is gone).
pub fn fate_since_launch(facts: &InstanceFacts, seconds_since_launch: Option<i64>) -> Fate {
    let fresh = seconds_since_launch.is_some_and(|age| age < NOT_VISIBLE_GRACE_SECONDS);
    if facts.state.is_none() && fresh {
        return Fate::NotVisibleYet;
    }
    fate(facts)
}

/// Classifies an instance.
pub fn fate(facts: &InstanceFacts) -> Fate {
    let Some(state) = facts.state.as_deref() else {
        return Fate::Gone {
            reclaim: false,
            detail: "EC2 no longer knows the instance".into(),
        };
    };
    let marked = facts
        .spot_status_code
        .as_deref()
        .is_some_and(|c| c == "marked-for-termination");
    if matches!(state, "pending" | "running") && !marked {
        return Fate::Alive;
    }
    let reclaim_by_spot = facts
        .spot_status_code
        .as_deref()
        .filter(|c| RECLAIM_SPOT_CODES.contains(c));
    let reclaim_by_reason = facts
        .state_reason_code
        .as_deref()
        .filter(|c| RECLAIM_REASON_CODES.contains(c));
    let service_initiated = matches!(state, "shutting-down" | "terminated")
        && facts
            .state_transition_reason
            .as_deref()
            .is_some_and(|r| r.contains("Service initiated"));
    let reclaim = reclaim_by_spot.is_some() || reclaim_by_reason.is_some() || service_initiated;
    let why = reclaim_by_spot
        .map(|c| format!("spot request status {c}"))
        .or_else(|| {
            facts
                .state_reason_code
                .as_ref()
                .map(|c| format!("state reason {c}"))
        })
        .or_else(|| {
            facts
                .state_transition_reason
                .clone()
                .filter(|r| !r.is_empty())
        })
        .unwrap_or_else(|| "no reason given".into());
    Fate::Gone {
        reclaim,
        detail: format!("the instance is {state} ({why})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(
        state: Option<&str>,
        reason: Option<&str>,
        transition: Option<&str>,
        spot: Option<&str>,
    ) -> InstanceFacts {
        InstanceFacts {
            state: state.map(Into::into),
            state_reason_code: reason.map(Into::into),
            state_transition_reason: transition.map(Into::into),
            spot_status_code: spot.map(Into::into),
        }
    }

    fn reclaim(f: &InstanceFacts) -> Option<bool> {
        match fate(f) {
            Fate::Alive | Fate::NotVisibleYet => None,
            Fate::Gone { reclaim, .. } => Some(reclaim),
        }
    }

    #[test]
    fn unknown_right_after_launch_is_not_visible_yet() {
        let unknown = InstanceFacts::default();
        let table = [
            (Some(0), Fate::NotVisibleYet),
            (Some(NOT_VISIBLE_GRACE_SECONDS - 1), Fate::NotVisibleYet),
            (Some(NOT_VISIBLE_GRACE_SECONDS), fate(&unknown)),
            (None, fate(&unknown)),
        ];
        for (age, expected) in table {
            assert_eq!(fate_since_launch(&unknown, age), expected, "{age:?}");
        }
        assert!(matches!(fate(&unknown), Fate::Gone { reclaim: false, .. }));
        let running = facts(Some("running"), None, None, None);
        assert_eq!(fate_since_launch(&running, Some(1)), Fate::Alive);
    }

    #[test]
    fn alive_states() {
        assert_eq!(
            fate(&facts(Some("running"), None, None, Some("fulfilled"))),
            Fate::Alive
        );
        assert_eq!(fate(&facts(Some("pending"), None, None, None)), Fate::Alive);
    }

    #[test]
    fn every_spot_reclaim_code() {
        for code in RECLAIM_SPOT_CODES {
            assert_eq!(
                reclaim(&facts(Some("terminated"), None, None, Some(code))),
                Some(true),
                "{code}"
            );
        }
        assert_eq!(
            reclaim(&facts(
                Some("running"),
                None,
                None,
                Some("marked-for-termination")
            )),
            Some(true)
        );
    }

    #[test]
    fn state_reasons_and_transitions() {
        assert_eq!(
            reclaim(&facts(
                Some("terminated"),
                Some("Server.SpotInstanceTermination"),
                None,
                None
            )),
            Some(true)
        );
        assert_eq!(
            reclaim(&facts(
                Some("shutting-down"),
                Some("Server.InsufficientInstanceCapacity"),
                None,
                None
            )),
            Some(true)
        );
        assert_eq!(
            reclaim(&facts(
                Some("terminated"),
                None,
                Some("Service initiated (2026-11-28 10:00:00 GMT)"),
                None
            )),
            Some(true)
        );
        assert_eq!(
            reclaim(&facts(
                Some("terminated"),
                Some("Client.UserInitiatedShutdown"),
                Some("User initiated"),
                None
            )),
            Some(false)
        );
        assert_eq!(
            reclaim(&facts(
                Some("stopped"),
                Some("Client.InstanceInitiatedShutdown"),
                None,
                None
            )),
            Some(false)
        );
        assert_eq!(reclaim(&facts(None, None, None, None)), Some(false));
    }

    #[test]
    fn detail_names_the_evidence() {
        let Fate::Gone { detail, .. } = fate(&facts(
            Some("terminated"),
            Some("Server.SpotInstanceTermination"),
            None,
            None,
        )) else {
            panic!()
        };
        assert_eq!(
            detail,
            "the instance is terminated (state reason Server.SpotInstanceTermination)"
        );
    }
}
